//go:build !noetcd

package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

// node is one control host on the shared etcd: its own /etc/ctrl-exec
// (dir, with a copy of the CA) and rotation.json place.
type node struct {
	dir string
	b   *Backend
}

func newNode(t *testing.T, endpoints []string, caFrom string) *node {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"ca.key", "ca.crt", "ca.serial"} {
		data, err := os.ReadFile(filepath.Join(caFrom, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: endpoints, Prefix: "/t/"})
	if err != nil {
		t.Fatal(err)
	}
	b := Etcd(c, time.Now, dir, filepath.Join(dir, "lib", "rotation.json"))
	t.Cleanup(func() { b.Close() })
	return &node{dir: dir, b: b}
}

// caDir is a CA with a ctrl-exec pair issued by it (serial n).
func caDir(t *testing.T, keyIndex int) (string, *pkitest.CA) {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, pkitest.Key(t, 2048, keyIndex))
	ca.Issue(t, pkitest.Key(t, 2048, 5), "ctrl-exec", filepath.Join(dir, "ctrl-exec.crt"), filepath.Join(dir, "ctrl-exec.key"), 825)
	return dir, ca
}

func rawIdentity(t *testing.T, n *node) []byte {
	t.Helper()
	data, _, err := n.b.rotation.(*etcdRotation).r.Identity()
	if err != nil || data == nil {
		t.Fatalf("identity in etcd: %q %v", data, err)
	}
	return data
}

func putRaw(t *testing.T, n *node, data []byte) {
	t.Helper()
	r := n.b.rotation.(*etcdRotation).r
	if _, err := r.C.Raw().Put(context.Background(), r.IdentityKey(), string(data)); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// The identity in etcd is sealed: no private key text or bytes, and a
// node with the same CA installs it; a flipped byte, a pair sealed by
// another CA, and another CA's pair sealed with ours are all refused and
// nothing is written.
func TestEtcdIdentitySealed(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	src, _ := caDir(t, 0)
	a := publishingNode(t, cl.Endpoints(), src)
	val := rawIdentity(t, a)
	keyPEM, _ := os.ReadFile(filepath.Join(a.dir, "ctrl-exec.key"))
	blk, _ := pem.Decode(keyPEM)
	for _, leak := range [][]byte{[]byte("PRIVATE KEY"), blk.Bytes[20:52], []byte(base64.StdEncoding.EncodeToString(blk.Bytes[30:90])[:40])} {
		if bytes.Contains(val, leak) {
			t.Fatalf("etcd value holds key material %q", leak)
		}
	}

	b := newNode(t, cl.Endpoints(), src)
	serial, err := b.b.SyncIdentity(b.dir)
	if err != nil || serial == "" {
		t.Fatalf("sync on a node with the same CA: %q %v", serial, err)
	}
	if got, _ := os.ReadFile(filepath.Join(b.dir, "ctrl-exec.key")); !bytes.Equal(got, keyPEM) {
		t.Fatal("synced key differs")
	}

	refused := func(what string, data []byte) {
		t.Helper()
		putRaw(t, a, data)
		c := newNode(t, cl.Endpoints(), src)
		serial, err := c.b.SyncIdentity(c.dir)
		if err == nil || serial != "" {
			t.Errorf("%s: sync %q %v, want refused", what, serial, err)
		}
		if exists(filepath.Join(c.dir, "ctrl-exec.key")) || exists(filepath.Join(c.dir, "ctrl-exec.crt")) {
			t.Errorf("%s: files written", what)
		}
	}

	var s map[string]any
	if err := json.Unmarshal(val, &s); err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(s["data"].(string))
	ct[len(ct)/2] ^= 1
	s["data"] = ct
	flipped, _ := json.Marshal(s)
	refused("flipped byte", flipped)

	other, _ := caDir(t, 1)
	otherID, err := rotation.ReadIdentity(other)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := newNode(t, cl.Endpoints(), other).b.rotation.(*etcdRotation)
	oca, err := otherCA.ca()
	if err != nil {
		t.Fatal(err)
	}
	sealedByOther, _ := otherID.Seal(oca.Key, otherCA.r.IdentityKey())
	refused("sealed by another CA", sealedByOther)

	aca, _ := a.b.rotation.(*etcdRotation).ca()
	otherPairOurSeal, _ := otherID.Seal(aca.Key, otherCA.r.IdentityKey())
	refused("another CA's pair", otherPairOurSeal)

	// Our own pair, but older than the rotation state's current serial.
	_, rev, err := a.b.rotation.Load(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.b.rotation.Replace(rev, &rotation.State{CurrentSerial: "7fffffff"}, nil); err != nil {
		t.Fatal(err)
	}
	refused("older than current_serial", val)
}

// Rotation steps on two nodes never overlap: the second waits for the
// cluster-wide mutex while the first holds it.
func TestEtcdRotationExclusiveAcrossNodes(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	src, _ := caDir(t, 0)
	a, b := newNode(t, cl.Endpoints(), src), newNode(t, cl.Endpoints(), src)
	release, held := make(chan struct{}), make(chan struct{})
	var bIn atomic.Bool
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() {
		aDone <- a.b.RotationStore(filepath.Join(a.dir, "lib", "rotation.json")).Exclusive(func() error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	go func() {
		bDone <- b.b.RotationStore(filepath.Join(b.dir, "lib", "rotation.json")).Exclusive(func() error {
			bIn.Store(true)
			return nil
		})
	}()
	// b is waiting once its mutex key sits behind a's.
	raw := a.b.rotation.(*etcdRotation).r.C.Raw()
	waitFor(t, "b queued on the rotation mutex", func() bool {
		if bIn.Load() {
			t.Fatal("node b ran a rotation step while node a held the rotation lock")
		}
		resp, err := raw.Get(context.Background(), "/t/rotation/lock", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
	if bIn.Load() {
		t.Fatal("node b ran a rotation step while node a held the rotation lock")
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil || !bIn.Load() {
		t.Fatalf("b after a released: %v %v", err, bIn.Load())
	}
}

// A sync waits for a rotation step on this host (same process: the flock
// on rotation.lock), so it never lands between a key and a cert write.
func TestEtcdSyncWaitsForRotationLock(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	src, _ := caDir(t, 0)
	a := publishingNode(t, cl.Endpoints(), src)
	os.Remove(filepath.Join(a.dir, "ctrl-exec.key"))
	os.Remove(filepath.Join(a.dir, "ctrl-exec.crt"))
	file := filepath.Join(a.dir, "lib", "rotation.json")
	release, held := make(chan struct{}), make(chan struct{})
	lockDone := make(chan error, 1)
	go func() {
		lockDone <- a.b.RotationStore(file).Exclusive(func() error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	syncDone := make(chan error, 1)
	go func() {
		_, err := a.b.SyncIdentity(a.dir)
		syncDone <- err
	}()
	waitFor(t, "the sync blocked on rotation.lock", func() bool {
		select {
		case err := <-syncDone:
			t.Fatalf("sync ran while the rotation lock was held (err %v)", err)
		default:
		}
		return flockWaiter(t, filepath.Join(a.dir, "lib", "rotation.lock"))
	})
	if exists(filepath.Join(a.dir, "ctrl-exec.key")) {
		t.Fatal("sync wrote the key while the rotation lock was held")
	}
	close(release)
	if err := <-lockDone; err != nil {
		t.Fatal(err)
	}
	if err := <-syncDone; err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(a.dir, "ctrl-exec.key")) {
		t.Fatal("sync did not write the key once the lock was free")
	}
}

// flockWaiter: /proc/locks lists a blocked FLOCK request ("->") on path.
func flockWaiter(t *testing.T, path string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skip("no /proc/locks")
	}
	want := fmt.Sprintf(":%s ", strconv.FormatUint(st.Ino, 10))
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "->") && strings.Contains(line, "FLOCK") && strings.Contains(line+" ", want) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishingNode is a node on src's CA holding src's ctrl-exec pair, which
// it has published as the shared identity.
func publishingNode(t *testing.T, endpoints []string, src string) *node {
	t.Helper()
	a := newNode(t, endpoints, src)
	for _, f := range []string{"ctrl-exec.crt", "ctrl-exec.key"} {
		data, _ := os.ReadFile(filepath.Join(src, f))
		os.WriteFile(filepath.Join(a.dir, f), data, 0o600)
	}
	if err := a.b.PublishIdentity(a.dir); err != nil {
		t.Fatal(err)
	}
	return a
}
