package etcdstate_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// A record written through one node is read, listed, updated and deleted
// through another; concurrent updates from both keep every field.
func TestRegistryAcrossNodes(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a := registry.NewStore(etcdstate.Registry{C: open(t, cl.Endpoints())})
	b := registry.NewStore(etcdstate.Registry{C: open(t, cl.Endpoints())})

	rec := registry.Record{"hostname": "web-01", "ip": "127.0.0.1", "port": "7443", "paired": "2026-01-01T00:00:00Z"}
	if err := a.Put(rec); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("read on B (-want +got):\n%s", diff)
	}
	if _, err := b.Get("web-02"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("absent record: %v, want ErrNotFound", err)
	}

	var wg sync.WaitGroup
	const per = 20
	for n, g := range []*registry.Registry{a, b} {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				if _, err := g.Merge("web-01", map[string]any{fmt.Sprintf("f%d_%d", n, i): "x"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	recs, skipped, err := a.List()
	if err != nil || len(skipped) > 0 {
		t.Fatalf("list: %v %v", err, skipped)
	}
	if len(recs) != 1 || len(recs[0]) != len(rec)+2*per {
		t.Fatalf("after concurrent merges: %d records, %v; want one with %d fields", len(recs), recs, len(rec)+2*per)
	}

	if _, err := b.Delete("web-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get("web-01"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("after delete on B, A reads: %v", err)
	}
	if _, err := a.Delete("web-01"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

// Two nodes with copies of one CA (each its own ca.serial, as the docs say
// to copy it) sign at the same time: with the etcd counter no serial is
// issued twice, and the counter starts from ca.serial.
func TestSerialsUniqueAcrossNodes(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	key := pkitest.Key(t, 2048, 0)
	dirA := t.TempDir()
	pkitest.NewCA(t, dirA, key)
	if err := os.WriteFile(filepath.Join(dirA, "ca.serial"), []byte("0A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	for _, f := range []string{"ca.key", "ca.crt", "ca.serial"} {
		data, err := os.ReadFile(filepath.Join(dirA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	csr, err := pki.CreateCSR(key, "agent")
	if err != nil {
		t.Fatal(err)
	}
	const per = 15
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, dir := range []string{dirA, dirB} {
		ca, err := pki.LoadCA(pki.CAFilesIn(dir))
		if err != nil {
			t.Fatal(err)
		}
		ca.Serials = etcdstate.Serials{C: open(t, cl.Endpoints())}
		wg.Go(func() {
			for i := 0; i < per; i++ {
				cert, err := ca.SignCSR(csr, 1, time.Now(), pki.SignOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[pki.SerialHex(cert)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var want []string
	for i := 0x0B; i < 0x0B+2*per; i++ {
		want = append(want, pki.SerialHex(certWithSerial(i)))
	}
	var got []string
	for i := 0x0B; i < 0x0B+2*per; i++ {
		s := pki.SerialHex(certWithSerial(i))
		if seen[s] == 1 {
			got = append(got, s)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || len(seen) != 2*per {
		t.Errorf("serials issued once each, from 0B (-want +got):\n%s\nall: %v", diff, seen)
	}
}

func certWithSerial(n int) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(int64(n))}
}

// Two nodes campaign for one role: exactly one leads; when it stops, the
// other takes over.
func TestElectionOneLeaderThenTakeover(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a := open(t, cl.Endpoints()).Elect("rotation")
	defer a.Stop()
	b := open(t, cl.Endpoints()).Elect("rotation")
	defer b.Stop()
	waitFor(t, "a leader", func() bool { return a.Leading() || b.Leading() })
	if a.Leading() && b.Leading() {
		t.Fatal("both nodes lead")
	}
	leader, other := a, b
	if b.Leading() {
		leader, other = b, a
	}
	leader.Stop()
	waitFor(t, "the other node to take over", other.Leading)
	if leader.Leading() {
		t.Error("the stopped node still leads")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
