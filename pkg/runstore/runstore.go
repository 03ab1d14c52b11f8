// Package runstore keeps finished runs as /var/lib/ctrl-exec/runs/{reqid}.json
// (SPEC §7.8): the API stores every POST /run, the CLI stores a run when
// asked (--save), and both can repeat the hosts of a stored run by status
// (rerun).
package runstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// TTL is how long a stored run is kept (§7.8).
const TTL = 24 * time.Hour

var (
	ErrNoResult = errors.New("no stored result")
	ErrCorrupt  = errors.New("corrupt result record")
)

// resultFile matches the names the purge may delete, and valid reqids.
var resultFile = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-f0-9]+\.json$`) })

// ValidReqID reports whether reqid can name a stored run.
func ValidReqID(reqid string) bool { return resultFile().MatchString(reqid + ".json") }

// Store is the runs directory.
type Store struct {
	Dir string
	Now func() time.Time
}

// Record is the stored form. The first five fields are §7.8's, in that
// order; Args (so a rerun repeats the same call) and RerunOf are Go
// additions at the end.
type Record struct {
	ReqID     string               `json:"reqid"`
	Script    string               `json:"script"`
	Hosts     []string             `json:"hosts"`
	Results   []dispatch.RunResult `json:"results"`
	Completed int64                `json:"completed"`
	Args      []string             `json:"args"`
	RerunOf   string               `json:"rerun_of,omitempty"`
}

// Save writes the record whole (0640; the directory 0750, made on demand).
func (s Store) Save(rec Record) error {
	if rec.Args == nil {
		rec.Args = []string{}
	}
	rec.Completed = s.Now().Unix()
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return fmt.Errorf("cannot create %s: %w", s.Dir, err)
	}
	path := filepath.Join(s.Dir, rec.ReqID+".json")
	if err := atomicfile.Write(path, wire.JSON(rec), 0o640); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// Load reads a stored record as an object (every field kept): ErrNoResult
// when there is none, ErrCorrupt when it is not one JSON object, another
// error when it cannot be read.
func (s Store) Load(reqid string) (wire.Object, error) {
	if !resultFile().MatchString(reqid + ".json") {
		return wire.Object{}, ErrNoResult
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, reqid+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return wire.Object{}, ErrNoResult
	}
	if err != nil {
		return wire.Object{}, err
	}
	rec, err := wire.ParseObject(data)
	if err != nil {
		return wire.Object{}, ErrCorrupt
	}
	return rec, nil
}

// Purge deletes results last written more than TTL ago. Problems are
// ignored (a file that cannot be removed is retried next time).
func (s Store) Purge() {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	cutoff := s.Now().Add(-TTL)
	for _, e := range entries {
		if !resultFile().MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err == nil && info.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}

// Rerun is what repeating a stored run needs.
type Rerun struct {
	Script string
	Args   []string
	Hosts  []string // the hosts whose status is in only, as originally requested
}

// DefaultOnly is the statuses a rerun repeats when none are named.
var DefaultOnly = []string{fleet.StatusFailed, fleet.StatusUnreachable, fleet.StatusTimeout}

// ErrNothingToRerun: no host of the stored run has one of the statuses.
var ErrNothingToRerun = errors.New("no host of that run has the statuses asked for")

// PlanRerun picks from a stored record the hosts whose result status is in
// only. A result without "status" (stored before it existed, or by Perl)
// is classified from its exit and error. Results in request order pair with
// "hosts" by position, so a host keeps the port it was asked with; when the
// counts differ (Perl stores completion order) the result's host is used.
func PlanRerun(rec wire.Object, only []string) (Rerun, error) {
	var r Rerun
	if err := decodeMember(rec, "script", &r.Script); err != nil || r.Script == "" {
		return Rerun{}, fmt.Errorf("%w: no script", ErrCorrupt)
	}
	_ = decodeMember(rec, "args", &r.Args)
	if r.Args == nil {
		r.Args = []string{}
	}
	var hosts []string
	_ = decodeMember(rec, "hosts", &hosts)
	var results []wire.Object
	if err := decodeMember(rec, "results", &results); err != nil {
		return Rerun{}, fmt.Errorf("%w: results: %v", ErrCorrupt, err)
	}
	for i, res := range results {
		status := res.Str("status")
		if status == "" {
			status = fleet.Classify(res)
		}
		if !slices.Contains(only, status) {
			continue
		}
		h := res.Str("host")
		if len(hosts) == len(results) {
			h = hosts[i]
		}
		if h != "" && !slices.Contains(r.Hosts, h) {
			r.Hosts = append(r.Hosts, h)
		}
	}
	if len(r.Hosts) == 0 {
		return r, ErrNothingToRerun
	}
	return r, nil
}

func decodeMember(o wire.Object, key string, v any) error {
	raw, ok := o.Raw(key)
	if !ok {
		return fmt.Errorf("no %q", key)
	}
	return json.Unmarshal(raw, v)
}

// ParseOnly reads a status list, e.g. "failed,unreachable": every name must
// be a status.
func ParseOnly(list []string) ([]string, error) {
	var out []string
	for _, s := range list {
		if !slices.Contains(fleet.Statuses, s) {
			return nil, fmt.Errorf("unknown status %q (one of %v)", s, fleet.Statuses)
		}
		out = append(out, s)
	}
	return out, nil
}
