package pairing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// StaleAfter is how old an unanswered request, or an answer nobody
// collected, must be (strictly) before it is removed (§7.4, B-15). It equals
// the server's wait window, so nothing younger can still be delivered.
const StaleAfter = 600 * time.Second

// Queue file suffixes (§7.4).
const (
	extRequest  = ".json"
	extApproved = ".approved"
	extDenied   = ".denied"
)

// fileMode is what the Perl server's umask (022) gives queue files.
const fileMode = 0o644

var (
	reqIDRE       = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-f0-9]+$`) })
	queueEntryRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([a-f0-9]+)\.(json|approved|denied)$`) })
	errNoRequest  = errors.New("no pending request")
	errBadRequest = errors.New("unreadable request")
)

// Request is one queued pairing request, {reqid}.json (§7.4). Port and
// Tags are the Go-only serve port and [tags] the agent reported (0, nil =
// none); a Perl approve ignores them.
type Request struct {
	ID       string            `json:"id"`
	Hostname string            `json:"hostname"`
	IP       string            `json:"ip"`
	CSR      string            `json:"csr"`
	Nonce    string            `json:"nonce"`
	Received string            `json:"received"`
	Code     string            `json:"code"`
	Port     int               `json:"port,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Queue is the pairing queue directory, or a QueueStore holding the same
// entries for several control hosts.
type Queue struct {
	Dir   string
	Now   func() time.Time // the clock for stale expiry; nil = time.Now
	store QueueStore
}

// NewQueue returns the queue kept in dir (normally paths.PairingDir()).
func NewQueue(dir string, now func() time.Time) *Queue {
	return &Queue{Dir: dir, Now: now}
}

func (q *Queue) now() time.Time {
	if q.Now == nil {
		return time.Now()
	}
	return q.Now()
}

// ValidReqID reports whether id can name a queue entry (lowercase hex), so
// ids typed by an operator never reach outside the queue directory.
func ValidReqID(id string) bool { return reqIDRE().MatchString(id) }

func (q *Queue) path(id, ext string) string { return filepath.Join(q.Dir, id+ext) }

// Add writes r as {r.ID}.json.
func (q *Queue) Add(r Request) error {
	if !ValidReqID(r.ID) {
		return fmt.Errorf("pairing request id %q is not lowercase hex", r.ID)
	}
	if q.store != nil {
		return q.storeAdd(r)
	}
	if err := atomicfile.Write(q.path(r.ID, extRequest), wire.JSON(r), fileMode); err != nil {
		return fmt.Errorf("queue pairing request: %w", err)
	}
	return nil
}

// Get reads {id}.json. A missing file (or an id that is not hex) wraps
// errNoRequest; a file that does not parse wraps errBadRequest.
func (q *Queue) Get(id string) (Request, error) {
	if !ValidReqID(id) {
		return Request{}, errNoRequest
	}
	if q.store != nil {
		return q.storeGet(id)
	}
	data, err := os.ReadFile(q.path(id, extRequest))
	if errors.Is(err, fs.ErrNotExist) {
		return Request{}, errNoRequest
	}
	if err != nil {
		return Request{}, fmt.Errorf("Cannot read '%s': %w", q.path(id, extRequest), err)
	}
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return Request{}, fmt.Errorf("%w %s: %v", errBadRequest, q.path(id, extRequest), err)
	}
	return r, nil
}

// List expires stale entries, then returns the pending requests sorted by
// received time (string order, then id). Entries that do not parse are
// skipped. Requests approved but not yet delivered are still listed.
// A missing directory is an empty queue.
func (q *Queue) List() ([]Request, error) {
	q.ExpireStale()
	ids, err := q.requestIDs()
	if err != nil {
		return nil, err
	}
	var reqs []Request
	for _, id := range ids {
		r, err := q.Get(id)
		if err != nil {
			continue
		}
		reqs = append(reqs, r)
	}
	sort.SliceStable(reqs, func(i, j int) bool {
		if reqs[i].Received != reqs[j].Received {
			return reqs[i].Received < reqs[j].Received
		}
		return reqs[i].ID < reqs[j].ID
	})
	return reqs, nil
}

// requestIDs is the id of every {id}.json entry; none for a missing
// directory.
func (q *Queue) requestIDs() ([]string, error) {
	if q.store != nil {
		return q.storeIDs()
	}
	entries, err := os.ReadDir(q.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("Cannot open '%s': %w", q.Dir, err)
	}
	var ids []string
	for _, e := range entries {
		if m := queueEntryRE().FindStringSubmatch(e.Name()); m != nil && m[2] == "json" {
			ids = append(ids, m[1])
		}
	}
	return ids, nil
}

// Count is the queue depth the server compares with pairing_max_queue:
// every *.json file, as the Perl server's glob counts them.
func (q *Queue) Count() (int, error) {
	if q.store != nil {
		ids, err := q.storeIDs()
		return len(ids), err
	}
	entries, err := os.ReadDir(q.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("Cannot open '%s': %w", q.Dir, err)
	}
	n := 0
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, extRequest) && name[0] != '.' {
			n++
		}
	}
	return n, nil
}

// ExpireStale removes what can no longer be delivered (§7.4, B-15):
//   - {id}.json older than StaleAfter with no answer beside it;
//   - {id}.approved or {id}.denied older than StaleAfter, with its
//     {id}.json: a server would have delivered it within one poll, so
//     its agent is gone.
//
// "Older" is strictly older, by modification time. Errors are ignored:
// expiry is housekeeping and runs again at the next chance.
func (q *Queue) ExpireStale() {
	if q.store != nil {
		q.storeExpire()
		return
	}
	entries, err := os.ReadDir(q.Dir)
	if err != nil {
		return
	}
	now := q.now()
	stale := func(name string) bool {
		info, err := os.Stat(filepath.Join(q.Dir, name))
		return err == nil && now.Sub(info.ModTime()) > StaleAfter
	}
	exists := func(name string) bool {
		_, err := os.Lstat(filepath.Join(q.Dir, name))
		return err == nil
	}
	for _, e := range entries {
		m := queueEntryRE().FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		id := m[1]
		switch m[2] {
		case "json":
			if exists(id+extApproved) || exists(id+extDenied) {
				continue // the answer's own age decides, below
			}
			if stale(e.Name()) {
				os.Remove(q.path(id, extRequest))
			}
		case "approved", "denied":
			if stale(e.Name()) {
				os.Remove(q.path(id, extRequest))
				os.Remove(filepath.Join(q.Dir, e.Name()))
			}
		}
	}
}

// answer returns the contents of {id}.approved or {id}.denied, whichever
// exists (approval first, as upstream polls), once it holds a whole JSON
// object: a Perl approve writes the file in place, so a read can race the
// write and see half of it. ok is false while there is no usable answer.
func (q *Queue) answer(id string) (body []byte, approved, ok bool) {
	if q.store != nil {
		return q.storeAnswer(id)
	}
	for _, ext := range []string{extApproved, extDenied} {
		data, err := os.ReadFile(q.path(id, ext))
		if err != nil {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil || obj == nil {
			return nil, false, false // partly written; look again next poll
		}
		return data, ext == extApproved, true
	}
	return nil, false, false
}

// remove deletes the named queue files of id, ignoring absent ones.
func (q *Queue) remove(id string, exts ...string) {
	for _, ext := range exts {
		if q.store != nil {
			q.store.Remove(id + ext)
			continue
		}
		os.Remove(q.path(id, ext))
	}
}

// has reports whether {id}.json exists.
func (q *Queue) has(id string) bool {
	if !ValidReqID(id) {
		return false
	}
	if q.store != nil {
		return q.storeHas(id + extRequest)
	}
	_, err := os.Lstat(q.path(id, extRequest))
	return err == nil
}

// hold takes a shared flock on {id}.json for as long as a server waits on
// the request's agent, so that approve, deny and a restarted pairing-mode
// can tell a request whose server is gone (see held). The lock goes with
// the process, however it ends.
func (q *Queue) hold(id string) (release func(), err error) {
	if q.store != nil {
		return q.store.Hold(id)
	}
	f, err := os.Open(q.path(id, extRequest))
	if err != nil {
		return func() {}, err
	}
	if err := flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return func() {}, err
	}
	return func() { f.Close() }, nil
}

// held reports whether a live Go pairing server holds {id}.json (a Perl
// server never does).
func (q *Queue) held(id string) bool {
	if q.store != nil {
		return q.store.Held(id)
	}
	f, err := os.Open(q.path(id, extRequest))
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(flock(f, unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}

func flock(f *os.File, how int) error {
	for {
		if err := unix.Flock(int(f.Fd()), how); err != unix.EINTR {
			return err
		}
	}
}

// answered reports whether id already has an approval or a denial.
func (q *Queue) answered(id string) (string, bool) {
	for _, ext := range []string{extApproved, extDenied} {
		if q.store != nil {
			if q.storeHas(id + ext) {
				return strings.TrimPrefix(ext, "."), true
			}
			continue
		}
		if _, err := os.Lstat(q.path(id, ext)); err == nil {
			return strings.TrimPrefix(ext, "."), true
		}
	}
	return "", false
}
