package api

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// runTTL is how long a stored run result is kept (§7.8).
const runTTL = 24 * time.Hour

var (
	errNoResult = errors.New("no stored result")
	errCorrupt  = errors.New("corrupt result record")
)

// resultFile matches the names the purge may delete.
var resultFile = regexp.MustCompile(`^[a-f0-9]+\.json$`)

// runStore keeps POST /run answers as runs/{reqid}.json for GET /status.
type runStore struct {
	dir string
	now func() time.Time
	log zerolog.Logger
}

// runRecord is the stored form (§7.8).
type runRecord struct {
	ReqID     string               `json:"reqid"`
	Script    string               `json:"script"`
	Hosts     []string             `json:"hosts"`
	Results   []dispatch.RunResult `json:"results"`
	Completed int64                `json:"completed"`
}

// save writes the record whole (0640, directory 0750 made on demand). A
// failure is logged as run-store-fail and does not change the answer.
func (s runStore) save(reqid, script string, hosts []string, results []dispatch.RunResult) {
	err := s.write(reqid, wire.JSON(runRecord{reqid, script, hosts, results, s.now().Unix()}))
	if err != nil {
		s.log.Warn().Str("REQID", reqid).Str("ERROR", err.Error()).Msg("run-store-fail")
	}
}

func (s runStore) write(reqid string, data []byte) error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("cannot create %s: %w", s.dir, err)
	}
	path := filepath.Join(s.dir, reqid+".json")
	if err := atomicfile.Write(path, data, 0o640); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

// load reads a stored record: errNoResult when there is none, errCorrupt
// when it is not one JSON object, another error when it cannot be read.
func (s runStore) load(reqid string) (dispatch.Object, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, reqid+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return dispatch.Object{}, errNoResult
	}
	if err != nil {
		return dispatch.Object{}, err
	}
	rec, err := dispatch.ParseObject(data)
	if err != nil {
		return dispatch.Object{}, errCorrupt
	}
	return rec, nil
}

// purge deletes results last written more than runTTL ago. It runs before
// every status lookup, as upstream's did; problems are ignored (a file that
// cannot be removed is retried next time).
func (s runStore) purge() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	cutoff := s.now().Add(-runTTL)
	for _, e := range entries {
		if !resultFile.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err == nil && info.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}
