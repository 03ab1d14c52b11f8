// Package registry is the control host's list of paired agents (SPEC §7.5):
// one JSON file per agent, /var/lib/ctrl-exec/agents/{hostname}.json.
//
// Records are kept as JSON objects, not structs, so fields this version does
// not know (written by a newer Go or by Perl) survive every update. Files are
// written whole (temp file, chmod 0644, rename). Go writers serialise their
// read-modify-write updates with flock on the registry directory, so two Go
// processes updating one record never lose each other's fields; Perl writers
// do not take that lock, as before.
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Field names of a record. The first nine are upstream's; Port,
// AgentSerial and CertDelivery are Go additions that Perl readers ignore.
const (
	FieldHostname         = "hostname"
	FieldIP               = "ip"
	FieldPaired           = "paired"
	FieldExpiry           = "expiry"
	FieldReqID            = "reqid"
	FieldDispatcherSerial = "dispatcher_serial"
	FieldSerialStatus     = "serial_status"
	FieldSerialBroadcast  = "serial_broadcast"
	FieldSerialConfirmed  = "serial_confirmed"
	FieldPort             = "port"         // the agent's serve port, as a decimal string
	FieldAgentSerial      = "agent_serial" // the agent cert's serial, canonical hex
	// FieldCertDelivery is DeliveryPending from approval until a Go pairing
	// server has handed the certificate to the agent, when it is removed.
	FieldCertDelivery = "cert_delivery"
)

// DeliveryPending is FieldCertDelivery's value while delivery is unconfirmed.
const DeliveryPending = "pending"

// serial_status values (§7.5).
const (
	StatusCurrent = "current"
	StatusPending = "pending"
	StatusStale   = "stale"
	StatusUnknown = "unknown"
)

// ErrNotFound: no registry file for that hostname.
var ErrNotFound = errors.New("no registry entry")

// Record is one agent's registry entry as a JSON object. Values are strings
// when ctrl-exec wrote them; other JSON values are kept as read (numbers as
// json.Number) and written back unchanged.
type Record map[string]any

// String returns field key as text: a string as is, a number in decimal,
// and ok false when the field is absent or null.
func (r Record) String(key string) (string, bool) {
	switch v := r[key].(type) {
	case nil:
		return "", false
	case string, json.Number, bool:
		s, _ := perltext.Scalar(v)
		return s, true
	default:
		b, err := wire.Marshal(v)
		if err != nil {
			return "", true
		}
		return string(b), true
	}
}

// Get is String without the presence flag: "" for an absent field.
func (r Record) Get(key string) string {
	s, _ := r.String(key)
	return s
}

// Hostname is the record's hostname field.
func (r Record) Hostname() string { return r.Get(FieldHostname) }

// MaxHostnameLen is the longest agent hostname: the registry file
// {hostname}.json must fit in a 255-byte file name. DNS allows 253; names of
// 251-253 characters would pass a pairing request and then fail at the
// registry write, after a CA serial was spent, so they are refused up front.
const MaxHostnameLen = 255 - len(".json")

// ValidHostname reports whether h may name an agent: pairing requests,
// approvals and unpair all refuse other names, because the hostname becomes
// the registry file name. It is ^[A-Za-z0-9][A-Za-z0-9._-]{0,249}$, one safe
// path component (B-14) short enough for every file name derived from it,
// checked by hand: compiling that bounded repetition as a regexp cost every
// command start 4 ms.
func ValidHostname(h string) bool {
	if len(h) == 0 || len(h) > MaxHostnameLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// CheckHostname is ValidHostname as an error that says what is allowed.
func CheckHostname(h string) error {
	if ValidHostname(h) {
		return nil
	}
	if len(h) > MaxHostnameLen {
		return fmt.Errorf("'%s' is not a usable agent hostname: it has %d characters, at most %d fit (its registry file %s.json must fit in a 255-byte file name)", h, len(h), MaxHostnameLen, h)
	}
	return fmt.Errorf("'%s' is not a valid agent hostname: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most %d characters", h, MaxHostnameLen)
}

// Registry is the registry directory, or a Store holding the same records
// elsewhere (etcd: issue 13, through pkg/state).
type Registry struct {
	Dir   string
	store Store
}

// Store keeps the records, each the JSON a registry file would hold, keyed
// by hostname, somewhere other than Dir. Every operation is atomic across
// the processes sharing the store.
type Store interface {
	// Get is hostname's record; found false when there is none.
	Get(hostname string) (data []byte, found bool, err error)
	// Update replaces hostname's record with fn(old) (old nil when absent)
	// unless fn fails; fn may run more than once under contention.
	Update(hostname string, fn func(old []byte) ([]byte, error)) error
	// Delete removes hostname's record and returns what it held.
	Delete(hostname string) (old []byte, found bool, err error)
	// List is every record by hostname.
	List() (map[string][]byte, error)
	// Where names a record for messages ("etcd key /ctrl-exec/agents/h").
	Where(hostname string) string
}

// New returns the registry kept in dir (normally paths.AgentsDir()).
func New(dir string) *Registry { return &Registry{Dir: dir} }

// NewStore returns the registry kept in s.
func NewStore(s Store) *Registry { return &Registry{store: s} }

// Path is the file of hostname's record; the hostname must be valid.
func (g *Registry) Path(hostname string) (string, error) {
	if err := CheckHostname(hostname); err != nil {
		return "", err
	}
	return filepath.Join(g.Dir, hostname+".json"), nil
}

// Get reads one record. An absent file is ErrNotFound; an unparsable one is
// an error naming the file.
func (g *Registry) Get(hostname string) (Record, error) {
	if g.store != nil {
		if err := CheckHostname(hostname); err != nil {
			return nil, err
		}
		data, found, err := g.store.Get(hostname)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, g.store.Where(hostname))
		}
		return parseAt(g.store.Where(hostname), data)
	}
	path, err := g.Path(hostname)
	if err != nil {
		return nil, err
	}
	return readRecord(path)
}

// Put writes rec as hostname's whole record, replacing any previous one
// (re-pairing overwrites, §7.5). rec must carry a valid hostname.
func (g *Registry) Put(rec Record) error {
	if g.store != nil {
		if err := CheckHostname(rec.Hostname()); err != nil {
			return err
		}
		return g.store.Update(rec.Hostname(), func([]byte) ([]byte, error) { return encode(g.store.Where(rec.Hostname()), rec) })
	}
	path, err := g.Path(rec.Hostname())
	if err != nil {
		return err
	}
	return g.locked(func() error { return writeRecord(path, rec) })
}

// Merge sets fields in hostname's record and keeps every other field,
// including ones this version does not know. A missing or unparsable record
// is replaced by a fresh one holding the hostname and fields (§20.4).
// The read-modify-write runs under the registry lock.
func (g *Registry) Merge(hostname string, fields map[string]any) (Record, error) {
	return g.Update(hostname, func(rec Record) error {
		for k, v := range fields {
			rec[k] = v
		}
		return nil
	})
}

// Update runs fn on hostname's current record (an empty one holding just the
// hostname if the file is missing or unparsable) and writes the result, all
// under the registry lock. If fn fails nothing is written.
func (g *Registry) Update(hostname string, fn func(Record) error) (Record, error) {
	if g.store != nil {
		return g.updateStore(hostname, fn)
	}
	path, err := g.Path(hostname)
	if err != nil {
		return nil, err
	}
	var out Record
	err = g.locked(func() error {
		rec, err := readRecord(path)
		if err != nil {
			rec = Record{}
		}
		rec[FieldHostname] = hostname
		if err := fn(rec); err != nil {
			return err
		}
		rec[FieldHostname] = hostname // the file name and the field must agree
		out = rec
		return writeRecord(path, rec)
	})
	return out, err
}

// Delete removes hostname's record and returns what it held (an empty
// record if the file did not parse). An absent record is ErrNotFound.
func (g *Registry) Delete(hostname string) (Record, error) {
	if g.store != nil {
		if err := CheckHostname(hostname); err != nil {
			return nil, err
		}
		data, found, err := g.store.Delete(hostname)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%w for '%s'", ErrNotFound, hostname)
		}
		rec, err := ParseRecord(data)
		if err != nil {
			rec = Record{}
		}
		return rec, nil
	}
	path, err := g.Path(hostname)
	if err != nil {
		return nil, err
	}
	var rec Record
	err = g.locked(func() error {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w for '%s'", ErrNotFound, hostname)
		}
		var rerr error
		rec, rerr = readRecord(path)
		if rerr != nil {
			rec = Record{}
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("Cannot remove registry entry '%s': %w", path, err)
		}
		return nil
	})
	return rec, err
}

// Skipped is a registry file that List could not use.
type Skipped struct {
	Path string
	Err  error
}

// List returns every record that parses, sorted by hostname (byte order),
// and the files it skipped so the caller can warn about them. A missing
// directory is an empty registry; a directory that cannot be read is an
// error (wrapping fs.ErrPermission when that is the cause).
func (g *Registry) List() ([]Record, []Skipped, error) {
	if g.store != nil {
		return g.listStore()
	}
	entries, err := os.ReadDir(g.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("Cannot open registry dir '%s': %w", g.Dir, err)
	}
	var recs []Record
	var skipped []Skipped
	for _, e := range entries {
		name := e.Name()
		// Upstream's rule is /^(.+)\.json$/; dot-files are our temp files
		// and are never records.
		if !strings.HasSuffix(name, ".json") || len(name) == len(".json") || name[0] == '.' {
			continue
		}
		path := filepath.Join(g.Dir, name)
		rec, err := readRecord(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we listed
			}
			skipped = append(skipped, Skipped{Path: path, Err: err})
			continue
		}
		recs = append(recs, rec)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Hostname() < recs[j].Hostname() })
	return recs, skipped, nil
}

// locked runs fn under flock on the registry directory, creating it first.
func (g *Registry) locked(fn func() error) error {
	if err := os.MkdirAll(g.Dir, 0o770); err != nil {
		return fmt.Errorf("create registry dir: %w", err)
	}
	return atomicfile.WithLock(g.Dir, fn)
}

func readRecord(path string) (Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("Cannot read '%s': %w", path, err)
	}
	rec, err := ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("registry file %s: %w", path, err)
	}
	return rec, nil
}

// ParseRecord decodes one registry file: a JSON object, numbers kept exactly.
func ParseRecord(data []byte) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var rec Record
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if rec == nil {
		return nil, errors.New("not a JSON object: null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return rec, nil
}

func writeRecord(path string, rec Record) error {
	data, err := encode(path, rec)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("Cannot write registry entry '%s': %w", path, err)
	}
	return nil
}

func encode(where string, rec Record) ([]byte, error) {
	data, err := wire.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode registry entry %s: %w", where, err)
	}
	return data, nil
}

func parseAt(where string, data []byte) (Record, error) {
	rec, err := ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("registry entry %s: %w", where, err)
	}
	return rec, nil
}

// updateStore is Update on a Store: fn sees the record as stored when the
// change is made (a concurrent change makes the store run it again).
func (g *Registry) updateStore(hostname string, fn func(Record) error) (Record, error) {
	if err := CheckHostname(hostname); err != nil {
		return nil, err
	}
	var out Record
	err := g.store.Update(hostname, func(old []byte) ([]byte, error) {
		rec, err := ParseRecord(old)
		if old == nil || err != nil {
			rec = Record{}
		}
		rec[FieldHostname] = hostname
		if err := fn(rec); err != nil {
			return nil, err
		}
		rec[FieldHostname] = hostname
		out = rec
		return encode(g.store.Where(hostname), rec)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (g *Registry) listStore() ([]Record, []Skipped, error) {
	all, err := g.store.List()
	if err != nil {
		return nil, nil, err
	}
	var recs []Record
	var skipped []Skipped
	for host, data := range all {
		rec, err := parseAt(g.store.Where(host), data)
		if err != nil {
			skipped = append(skipped, Skipped{Path: g.store.Where(host), Err: err})
			continue
		}
		recs = append(recs, rec)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Hostname() < recs[j].Hostname() })
	sort.Slice(skipped, func(i, j int) bool { return skipped[i].Path < skipped[j].Path })
	return recs, skipped, nil
}
