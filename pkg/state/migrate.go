package state

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// SerialRecord is where the last issued CA serial is kept: ca.serial or
// the etcd counter.
type SerialRecord interface {
	Last() (n *big.Int, ok bool, err error)
	// Raise records n unless n or more is recorded already.
	Raise(n *big.Int) (changed bool, err error)
}

// Side is one end of `ctrl-exec state export|import`.
type Side struct {
	Registry *registry.Registry
	Serial   SerialRecord
	Rotation rotation.Store
}

// FileSide is the files of a single host: the registry directory,
// ca.serial and rotation.json.
func FileSide(registryDir, caSerial, rotationFile string) Side {
	return Side{Registry: registry.New(registryDir), Serial: fileSerial(caSerial), Rotation: rotation.FileStore{Path: rotationFile}}
}

// Side is the backend's shared state; only etcd has one (files keep the
// serial in ca.serial, so their Serials is nil).
func (b *Backend) Side() (Side, error) {
	s, ok := b.Serials.(SerialRecord)
	if !ok {
		return Side{}, errors.New("state_backend is files: set state_backend = etcd and etcd_endpoints to import or export")
	}
	return Side{Registry: b.Registry, Serial: s, Rotation: b.rotation}, nil
}

type fileSerial string

func (f fileSerial) Last() (*big.Int, bool, error)  { return pki.LastSerial(string(f)) }
func (f fileSerial) Raise(n *big.Int) (bool, error) { return pki.RaiseSerial(string(f), n) }

// Change is one thing Copy changed (or, in a dry run, would change).
type Change struct {
	Key    string // "agents/<hostname>", "ca/serial" or "rotation"
	Action string // "add", "update", "raise to <hex>" or "kept (why)"
	Kept   bool   // nothing changes: the destination's is kept, and why
}

func (c Change) String() string { return c.Key + ": " + c.Action }

// Copy makes to hold everything from holds: every registry record that
// differs or is missing is written whole, the serial record is raised to
// from's, and from's rotation state replaces to's when it is more recent (the
// state alone: each node keeps its own key files). Records only in to are
// kept, so running it again changes nothing (idempotent). With dryRun it
// only says what it would change.
func Copy(from, to Side, dryRun bool) ([]Change, error) {
	recs, skipped, err := from.Registry.List()
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		return nil, fmt.Errorf("%s: %v; fix or remove it first", skipped[0].Path, skipped[0].Err)
	}
	var changes []Change
	for _, rec := range recs {
		host := rec.Hostname()
		action := "add"
		old, err := to.Registry.Get(host)
		switch {
		case err == nil && normal(old) == normal(rec):
			continue
		case err == nil:
			action = "update"
		case !errors.Is(err, registry.ErrNotFound):
			return changes, err
		}
		if !dryRun {
			if err := to.Registry.Put(rec); err != nil {
				return changes, err
			}
		}
		changes = append(changes, Change{Key: "agents/" + host, Action: action})
	}
	if ch, err := copyRotation(from.Rotation, to.Rotation, dryRun); err != nil || ch != nil {
		if ch != nil {
			changes = append(changes, *ch)
		}
		if err != nil {
			return changes, err
		}
	}
	n, ok, err := from.Serial.Last()
	if err != nil || !ok {
		return changes, err
	}
	cur, curOK, err := to.Serial.Last()
	if err != nil {
		return changes, err
	}
	if curOK && cur.Cmp(n) >= 0 {
		return changes, nil
	}
	if !dryRun {
		if _, err := to.Serial.Raise(n); err != nil {
			return changes, err
		}
	}
	return append(changes, Change{Key: "ca/serial", Action: fmt.Sprintf("raise to %X", n)}), nil
}

// normal is a record as its JSON says it, whichever side decoded it.
func normal(r registry.Record) string {
	b, _ := wire.Marshal(r)
	return string(b)
}

// copyRotation makes to's rotation state from's, unless from has none,
// they are the same, or to's was rotated no earlier than from's (then the
// Change says it was kept). A state that does not parse stops the copy.
func copyRotation(from, to rotation.Store, dryRun bool) (*Change, error) {
	if from == nil || to == nil {
		return nil, nil
	}
	var ch *Change
	err := to.Exclusive(func() error {
		src, _, err := loadRotation(from)
		if err != nil || src == nil {
			return err
		}
		dst, rev, err := loadRotation(to)
		if err != nil {
			return err
		}
		action := "add"
		if dst != nil {
			if string(dst.Marshal()) == string(src.Marshal()) {
				return nil
			}
			if !newer(src.RotatedAt, dst.RotatedAt) {
				// An older state would roll back the cluster's rotation:
				// agents would be told a serial no node holds any more.
				ch = &Change{Key: "rotation", Kept: true, Action: fmt.Sprintf("kept (destination rotated_at %q is not older than the source's %q)", dst.RotatedAt, src.RotatedAt)}
				return nil
			}
			action = "update"
		}
		if !dryRun {
			if err := to.Replace(rev, src, nil); err != nil {
				return err
			}
		}
		ch = &Change{Key: "rotation", Action: action}
		return nil
	})
	return ch, err
}

// newer reports whether ISO time a is after b; an unreadable time is never
// newer, so a state is only replaced by one provably more recent.
func newer(a, b string) bool {
	ta, err := pki.ParseISOTime(a)
	if err != nil {
		return false
	}
	tb, err := pki.ParseISOTime(b)
	return err != nil || ta.After(tb)
}

// loadRotation is Store.Load, with a state that does not parse an error
// (Load logs it and reads it as absent, which a copy must not).
func loadRotation(s rotation.Store) (*rotation.State, int64, error) {
	var corrupt bytes.Buffer
	st, rev, err := s.Load(zerolog.New(&corrupt))
	if err == nil && corrupt.Len() > 0 {
		err = fmt.Errorf("rotation state unreadable: %s; fix or remove it first", bytes.TrimSpace(corrupt.Bytes()))
	}
	return st, rev, err
}
