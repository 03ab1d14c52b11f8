package rotation

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
)

// Store is where the rotation state lives: rotation.json (FileStore, the
// default) or, with state_backend = etcd, one key every node shares.
type Store interface {
	// Load is the state (nil: no rotation yet, or unreadable and logged as
	// rotation-state-corrupt) and the revision Replace compares.
	Load(log zerolog.Logger) (s *State, rev int64, err error)
	// Replace stores s, and the identity that goes with it unless id is
	// nil, if the state is still at rev; ErrChanged if not.
	Replace(rev int64, s *State, id *Identity) error
	// Exclusive runs fn while no other rotation step on this store runs:
	// the flock on rotation.lock (this host), and for a shared store also
	// its cluster-wide mutex (every node).
	Exclusive(fn func() error) error
	// Shareable is nil when a new identity may be made: checked before a
	// rotation touches anything (files: always).
	Shareable() error
	// Resync, under Exclusive, makes caDir's pair the one the store holds
	// (after a lost Replace: the winner's); false when it holds none
	// (files: always).
	Resync(caDir string) (bool, error)
	// DropPrevious forgets the previous pair kept beside the current
	// certificate certPEM, once no agent needs it (files: nothing to do).
	DropPrevious(certPEM []byte) error
}

// ErrChanged is Replace's refusal: the state changed since it was loaded.
var ErrChanged = errors.New("the rotation state changed meanwhile (another control host rotated); see serial-status")

// FileStore is rotation.json at Path, under flock on rotation.lock beside
// it, as Perl 0.8.4 keeps it.
type FileStore struct{ Path string }

// Load reads the file (LoadState); rev is always 0.
func (f FileStore) Load(log zerolog.Logger) (*State, int64, error) {
	s, err := LoadState(f.Path, log)
	return s, 0, err
}

// Replace writes the file whole. Exclusive's flock is the only guard the
// file needs, and the identity is already in this host's files.
func (f FileStore) Replace(_ int64, s *State, _ *Identity) error { return WriteState(f.Path, s) }

// Exclusive runs fn under flock on rotation.lock beside rotation.json, so a
// rotation, a broadcast and a clean-up in one process or several
// (pairing-mode, the API, rotate-cert) never interleave.
func (f FileStore) Exclusive(fn func() error) error {
	dir := filepath.Dir(f.Path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "rotation.lock")
	lf, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open rotation lock %s: %w", path, err)
	}
	lf.Close()
	return atomicfile.WithLock(path, fn)
}

// Shareable: the files never leave this host.
func (FileStore) Shareable() error { return nil }

// Resync has nothing to take: this host's files are the identity.
func (FileStore) Resync(string) (bool, error) { return false, nil }

// DropPrevious has nothing to do: CleanupPrev removed the files.
func (FileStore) DropPrevious([]byte) error { return nil }
