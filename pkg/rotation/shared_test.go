package rotation

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

// sharedStore is a shared store as rotation sees it: Replace lost to
// another node (lose), the winner's identity (winner) for Resync, and a
// connection that may not carry the key (refuse).
type sharedStore struct {
	FileStore
	lose   bool
	winner *Identity
	refuse error
	synced bool
}

func (s *sharedStore) Replace(rev int64, st *State, id *Identity) error {
	if s.lose {
		return ErrChanged
	}
	return s.FileStore.Replace(rev, st, id)
}

func (s *sharedStore) Shareable() error { return s.refuse }

func (s *sharedStore) Resync(caDir string) (bool, error) {
	if s.winner == nil {
		return false, nil
	}
	s.synced = true
	_, err := WriteIdentity(caDir, s.winner)
	return true, err
}

// A rotation that loses the compare-and-swap to another node takes the
// winner's identity, not the pair it saved before rotating: that one is
// no longer what the agents are being told.
func TestRotationLostReplaceTakesWinner(t *testing.T) {
	c := newControl(t)
	before, err := ReadIdentity(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	// The winner: another pair from the same CA, with the old one as .prev.
	wcert, wkey := anotherPair(t, c)
	winner := &Identity{Cert: wcert, Key: wkey, PrevCert: before.Cert, PrevKey: before.Key}
	s := &sharedStore{FileStore: FileStore{Path: c.r.StateFile}, lose: true, winner: winner}
	c.r.Store = s

	if _, err := c.r.Rotate(context.Background(), false); !errors.Is(err, ErrChanged) {
		t.Fatalf("Rotate: %v, want ErrChanged", err)
	}
	got, err := ReadIdentity(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.synced || !bytes.Equal(got.Cert, wcert) || !bytes.Equal(got.Key, wkey) || !bytes.Equal(got.PrevCert, before.Cert) {
		t.Errorf("after a lost rotation the files hold serial %q (winner's: %q, before: %q)", got.Serial(), winner.Serial(), before.Serial())
	}
}

// A store that may not carry the key: the rotation (here the check loop's,
// near expiry) is refused before any serial is used or file written.
func TestRotationNotShareableChangesNothing(t *testing.T) {
	c := newControl(t)
	c.r.RenewalDays = 10000 // due now
	before, err := ReadIdentity(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	serialFile := c.ca.Files.Serial
	serialBefore, _ := os.ReadFile(serialFile)
	c.r.Store = &sharedStore{FileStore: FileStore{Path: c.r.StateFile}, refuse: errors.New("may not carry the key")}

	res, err := c.r.CheckAndRotate(context.Background())
	var w *Warning
	if err == nil || errors.As(err, &w) || res.Rotated {
		t.Fatalf("CheckAndRotate: %+v %v, want a plain error (cert-check-error)", res, err)
	}
	after, _ := ReadIdentity(c.dir)
	serialAfter, _ := os.ReadFile(serialFile)
	if !bytes.Equal(after.Cert, before.Cert) || !bytes.Equal(after.Key, before.Key) || after.PrevCert != nil || !bytes.Equal(serialAfter, serialBefore) {
		t.Error("a refused rotation changed the key files or used a serial")
	}
	if _, err := os.Stat(c.r.StateFile); err == nil {
		t.Error("a refused rotation wrote rotation state")
	}
}

// A sync whose certificate cannot be moved in puts the key back: the pair
// on disk is never the new key with the old certificate.
func TestRotationWriteIdentityAllOrNothing(t *testing.T) {
	c := newControl(t)
	before, err := ReadIdentity(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	wcert, wkey := anotherPair(t, c)
	renameFile = func(from, to string) error {
		if strings.HasSuffix(to, "ctrl-exec.crt") {
			return errors.New("disk full")
		}
		return os.Rename(from, to)
	}
	defer func() { renameFile = os.Rename }()
	if _, err := WriteIdentity(c.dir, &Identity{Cert: wcert, Key: wkey}); err == nil {
		t.Fatal("WriteIdentity succeeded with the certificate unwritable")
	}
	after, err := ReadIdentity(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Key, before.Key) || !bytes.Equal(after.Cert, before.Cert) {
		t.Error("a failed WriteIdentity left the key and certificate from different pairs")
	}
	if m, _ := filepath.Glob(filepath.Join(c.dir, "*.sync-tmp")); len(m) > 0 {
		t.Errorf("temp files left: %v", m)
	}
}

// anotherPair is a second ctrl-exec certificate and key from c's CA (PEM).
func anotherPair(t *testing.T, c *control) (cert, key []byte) {
	t.Helper()
	dir := t.TempDir()
	c.ca.Issue(t, pkitest.Key(t, 2048, 1), "ctrl-exec", dir+"/c.crt", dir+"/c.key", 825)
	cert, _ = os.ReadFile(dir + "/c.crt")
	key, _ = os.ReadFile(dir + "/c.key")
	return cert, key
}
