package state

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
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
}

// FileSide is the files of a single host: the registry directory and
// ca.serial.
func FileSide(registryDir, caSerial string) Side {
	return Side{Registry: registry.New(registryDir), Serial: fileSerial(caSerial)}
}

// Side is the backend's shared state; only etcd has one (files keep the
// serial in ca.serial, so their Serials is nil).
func (b *Backend) Side() (Side, error) {
	s, ok := b.Serials.(SerialRecord)
	if !ok {
		return Side{}, errors.New("state_backend is files: set state_backend = etcd and etcd_endpoints to import or export")
	}
	return Side{Registry: b.Registry, Serial: s}, nil
}

type fileSerial string

func (f fileSerial) Last() (*big.Int, bool, error)  { return pki.LastSerial(string(f)) }
func (f fileSerial) Raise(n *big.Int) (bool, error) { return pki.RaiseSerial(string(f), n) }

// Change is one thing Copy changed (or, in a dry run, would change).
type Change struct {
	Key    string // "agents/<hostname>" or "ca/serial"
	Action string // "add", "update" or "raise to <hex>"
}

func (c Change) String() string { return c.Key + ": " + c.Action }

// Copy makes to hold everything from holds: every registry record that
// differs or is missing is written whole, and the serial record is raised
// to from's. Records only in to are kept, so running it again changes
// nothing (idempotent). With dryRun it only says what it would change.
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
