package agent

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/ctrlserial"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// loadRevoked reads the revoked-serials file: one entry per line, "#" starts
// a comment anywhere, whitespace around entries ignored. An absent file means
// nothing is revoked (logged as revoked-serials-absent); an unreadable one
// warns on stderr and also means nothing is revoked, as upstream. An entry
// no reading understands is dropped with a config-warn line. A peer is
// revoked by upstream's reading or any other reading of an entry (D-32).
func loadRevoked(path string, log zerolog.Logger, stderr io.Writer) *pki.RevocationList {
	set := pki.NewRevocationList()
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		log.Info().Str("PATH", path).Str("REASON", "file not found - no serials revoked").Msg("revoked-serials-absent")
		return set
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "Cannot read revoked serials '%s': %v\n", path, osReason(err))
		return set
	}
	return parseRevoked(data, log)
}

// parseRevoked reads revoked-serials content (see loadRevoked).
func parseRevoked(data []byte, log zerolog.Logger) *pki.RevocationList {
	set := pki.NewRevocationList()
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = perltext.TrimSpace(line)
		if line == "" {
			continue
		}
		if !set.Add(line) {
			log.Warn().Str("ENTRY", line).Str("MSG", "revoked serial not understood - entry ignored").Msg("config-warn")
		}
	}
	return set
}

// storedSerial keeps the stored ctrl-exec serial and notices when its file
// changes, so a serial written by update-ctrl-exec-serial (or a Perl helper
// that cannot find our PID) takes effect on the next connection without a
// SIGHUP (D-26).
type storedSerial struct {
	stderr io.Writer
	mu     sync.Mutex // serialises re-reads
	cur    atomic.Pointer[serialState]
}

type serialState struct {
	path  string
	stamp fileStamp
	value string
}

// get returns the serial stored at path, re-reading the file when its
// identity, size or modification time differ from the last read.
func (s *storedSerial) get(path string) string {
	stamp := stampOf(path)
	if st := s.cur.Load(); st != nil && st.path == path && st.stamp == stamp {
		return st.value
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.cur.Load(); st != nil && st.path == path && st.stamp == stamp {
		return st.value
	}
	// The stamp is taken before the read: a write racing with it leaves a
	// stale stamp, which only causes one more re-read later.
	value := ctrlserial.Read(path, s.stderr)
	s.cur.Store(&serialState{path: path, stamp: stamp, value: value})
	return value
}

// reload forgets the cached serial and reads path again (SIGHUP).
func (s *storedSerial) reload(path string) string {
	s.cur.Store(nil)
	return s.get(path)
}

// expiryCache answers /ping's "expiry" without reading and parsing the
// certificate on every request: it re-reads only when the certificate file's
// stamp changes (a renewal or an operator replacing it).
type expiryCache struct {
	cur atomic.Pointer[expiryState]
}

type expiryState struct {
	path  string
	stamp fileStamp
	value string
}

// get is certExpiry(cfg), cached.
func (e *expiryCache) get(cfg *config.Agent) string {
	stamp := stampOf(cfg.Cert)
	if st := e.cur.Load(); st != nil && st.path == cfg.Cert && st.stamp == stamp && stamp != (fileStamp{}) {
		for _, f := range []string{cfg.Key, cfg.CA} {
			if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
				return "unknown"
			}
		}
		return st.value
	}
	// The stamp is taken before the read, as in storedSerial.get.
	value := certExpiry(cfg)
	e.cur.Store(&expiryState{path: cfg.Cert, stamp: stamp, value: value})
	return value
}

// fileStamp identifies one version of a file; the zero value is "absent".
type fileStamp struct {
	dev, ino   uint64
	size       int64
	modTimeNs  int64
	changeTime int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), modTimeNs: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
		st.changeTime = sys.Ctim.Nano()
	}
	return st
}

// osReason is the operating system's reason alone ("Permission denied"),
// without the path that the caller's message already names.
func osReason(err error) string { return perltext.OSError(err) }
