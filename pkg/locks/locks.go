// Package locks holds the control host's per (host, script) run locks
// (SPEC §16): one file per pair in the locks directory, locked with BSD
// flock(2) so Perl and Go processes on one machine see each other.
//
// flock locks belong to an open file description, so two acquisitions in the
// same process conflict just as two processes do.
package locks

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// FileName is the lock file name for host and script: every byte outside
// [A-Za-z0-9_.-] becomes "_" (so "web-01:7443" is "web-01_7443"). A name
// over the 255-byte limit (a 253-character DNS name with a port, or a long
// script name) cannot exist, for Perl either; it is cut to
// <host, 120 bytes>~<16 hex of a hash of both>--<script, 100 bytes>.lock so
// that every pair still has a lock of its own.
func FileName(host, script string) string {
	name := sanitize(host) + "--" + sanitize(script) + ".lock"
	if len(name) <= maxNameBytes {
		return name
	}
	sum := sha256.Sum256([]byte(host + "\x00" + script))
	return cut(sanitize(host), 120) + "~" + hex.EncodeToString(sum[:8]) + "--" + cut(sanitize(script), 100) + ".lock"
}

// maxNameBytes is NAME_MAX on Linux and the BSDs.
const maxNameBytes = 255

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// CheckAvailable tries each host's lock and lets go at once. It returns the
// pairs already held elsewhere as "host:script", host as given.
func CheckAvailable(dir string, hosts []string, script string) (conflicts []string, err error) {
	if err := prepare(dir, script); err != nil {
		return nil, err
	}
	for _, host := range hosts {
		f, err := openLockFile(filepath.Join(dir, FileName(host, script)))
		if err != nil {
			return nil, err
		}
		ok, err := tryLock(f)
		f.Close() // closing drops the lock
		if err != nil {
			return nil, err
		}
		if !ok {
			conflicts = append(conflicts, host+":"+script)
		}
	}
	return conflicts, nil
}

// Held is a set of locks obtained by Acquire; Release them when the
// dispatch is over.
type Held struct {
	hosts    []string
	script   string
	log      zerolog.Logger
	mu       sync.Mutex
	files    []*os.File
	released bool
}

// Acquire locks every host's pair for script, all or nothing. On conflict it
// lets go of what it took, logs lock-conflict and returns the conflicts with
// a nil Held. Hosts that name the same lock file twice are locked once (a
// second flock in this process would conflict with the first).
func Acquire(dir string, hosts []string, script string, log zerolog.Logger) (*Held, []string, error) {
	if err := prepare(dir, script); err != nil {
		return nil, nil, err
	}
	h := &Held{hosts: append([]string(nil), hosts...), script: script, log: log}
	var conflicts, acquired []string
	seen := map[string]bool{}
	for _, host := range hosts {
		path := filepath.Join(dir, FileName(host, script))
		if seen[path] {
			continue
		}
		seen[path] = true
		f, err := openLockFile(path)
		if err != nil {
			h.closeAll()
			return nil, nil, err
		}
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			h.closeAll()
			return nil, nil, err
		}
		if !ok {
			f.Close()
			conflicts = append(conflicts, host+":"+script)
			continue
		}
		h.files = append(h.files, f)
		acquired = append(acquired, host)
	}
	if len(conflicts) > 0 {
		h.closeAll()
		log.Warn().Str("CONFLICTS", strings.Join(conflicts, ",")).Msg("lock-conflict")
		return nil, conflicts, nil
	}
	for _, host := range acquired {
		log.Info().Str("HOST", host).Str("SCRIPT", script).Msg("lock-acquire")
	}
	return h, nil, nil
}

// Release lets go of every lock and logs lock-release (when there were
// hosts). Calling it again, or on nil, does nothing.
func (h *Held) Release() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return
	}
	h.released = true
	h.closeLocked()
	if len(h.hosts) > 0 {
		h.log.Info().Str("HOSTS", strings.Join(h.hosts, ",")).Str("SCRIPT", h.script).Msg("lock-release")
	}
}

func (h *Held) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeLocked()
}

func (h *Held) closeLocked() {
	for _, f := range h.files {
		f.Close()
	}
	h.files = nil
}

// Lock is one held lock found by ListHeld, as spelled in its file name (for
// a name cut to fit, see FileName, Host ends in "~" and the hash).
type Lock struct {
	Host   string `json:"host"`
	Script string `json:"script"`
}

var lockName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(.+)--(.+)\.lock$`) })

// ListHeld returns the locks someone holds now (this process included),
// sorted by "host:script". Host is the greedy part before the last "--"
// that leaves a script. A missing directory holds nothing.
func ListHeld(dir string) ([]Lock, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list locks in %s: %w", dir, err)
	}
	var held []Lock
	for _, e := range entries {
		m := lockName().FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		f, err := openLockFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // unreadable or not a file: upstream skips it too
		}
		ok, err := tryLock(f)
		f.Close()
		if err == nil && !ok {
			held = append(held, Lock{Host: m[1], Script: m[2]})
		}
	}
	sort.Slice(held, func(i, j int) bool {
		return held[i].Host+":"+held[i].Script < held[j].Host+":"+held[j].Script
	})
	return held, nil
}

func prepare(dir, script string) error {
	if script == "" {
		return errors.New("lock: no script name given")
	}
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return fmt.Errorf("create lock directory: %w (check permissions on its parent)", err)
	}
	return nil
}

// openLockFile opens path for appending, creating it (0666 less umask) as
// upstream does. A file that exists but is not writable by us (say created
// by root under umask 022) is opened read-only instead: flock does not care.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}

// tryLock takes an exclusive non-blocking flock; false means someone else
// (another process or another open of the file here) holds it.
func tryLock(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	var lockErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lockErr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
			if lockErr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	switch {
	case lockErr == nil:
		return true, nil
	case errors.Is(lockErr, unix.EWOULDBLOCK):
		return false, nil
	}
	return false, fmt.Errorf("lock %s: %w", f.Name(), lockErr)
}

// CheckAndAcquire is the dispatch rule of D-27: check availability, then
// take every lock and hold it. Conflicts from either step come back the same
// way (nil Held); the caller releases Held after the dispatch.
func CheckAndAcquire(dir string, hosts []string, script string, log zerolog.Logger) (*Held, []string, error) {
	conflicts, err := CheckAvailable(dir, hosts, script)
	if err != nil || len(conflicts) > 0 {
		return nil, conflicts, err
	}
	return Acquire(dir, hosts, script, log)
}
