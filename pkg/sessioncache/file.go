package sessioncache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
)

// File format: the magic line, then one record per entry, then the SHA-256
// of everything before it (a torn or edited file is detected and ignored).
//
//	record = u16 len, owner | u16 len, addr | i64 saved (Unix ns) |
//	         u32 len, ticket | u32 len, state          (big-endian)
const magic = "ctrl-exec tls sessions 1\n"

// MaxFileSize bounds what Load reads: MaxEntries sessions of RSA-4096
// agents take about 3 MB.
const MaxFileSize = 8 << 20

// FileMode is the only mode Load accepts and the mode Save writes.
const FileMode = 0o600

// FileName is the cache file of the user uid inside the state directory:
// one per user, since each is private to its owner.
func FileName(stateDir string, uid int) string {
	return filepath.Join(stateDir, fmt.Sprintf("tls-sessions.%d", uid))
}

// Load reads the cache file at path. A missing file is an empty cache. A
// file that is not a regular file of this user with mode 0600, or that is
// too large or corrupt, is ignored: the cache starts empty (so every agent
// gets a full handshake) and the returned warning says why.
func Load(path string, now func() time.Time) (c *Cache, warning string) {
	c = New(now)
	data, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, ""
	}
	if err != nil {
		return c, fmt.Sprintf("ignoring TLS session cache %s: %v", path, err)
	}
	entries, err := decode(data)
	if err != nil {
		return c, fmt.Sprintf("ignoring TLS session cache %s: %v", path, err)
	}
	c.entries = entries
	c.trimLocked()
	c.dirty = false
	return c, ""
}

// readPrivate reads path if it is a regular file owned by this user that
// no one else may read or write.
func readPrivate(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, errors.New("it is a symbolic link")
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	case fi.Mode().Perm() != FileMode:
		return nil, fmt.Errorf("mode %04o, want %04o (it holds secrets as sensitive as the ctrl-exec key)", fi.Mode().Perm(), FileMode)
	case fi.Size() > MaxFileSize:
		return nil, fmt.Errorf("%d bytes, more than the %d a cache can hold", fi.Size(), MaxFileSize)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("owned by uid %d, not by this user (%d)", st.Uid, os.Geteuid())
	}
	data := make([]byte, fi.Size())
	n, err := f.ReadAt(data, 0)
	if err != nil && n != len(data) {
		return nil, err
	}
	return data, nil
}

// Save writes the cache to path (mode 0600, atomically) if it changed since
// Load, after merging what another process saved meanwhile: per agent the
// newer entry wins, and entries this process dropped stay dropped.
func (c *Cache) Save(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	if data, err := readPrivate(path); err == nil {
		if disk, err := decode(data); err == nil {
			for k, e := range disk {
				if c.gone[k.addr] {
					continue
				}
				if mine, ok := c.entries[k]; !ok || mine.saved.Before(e.saved) {
					c.entries[k] = e
				}
			}
		}
	}
	c.trimLocked()
	if err := atomicfile.Write(path, encode(c.entries), FileMode); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

// Remove deletes the cache files of every user in stateDir: after the
// ctrl-exec certificate changes no cached session may be offered again.
// Files that cannot be removed are returned in the error.
func Remove(stateDir string) error {
	names, _ := filepath.Glob(filepath.Join(stateDir, "tls-sessions.*"))
	var errs []error
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func encode(entries map[key]*entry) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	for k, e := range entries {
		putBytes16(&b, k.owner)
		putBytes16(&b, k.addr)
		_ = binary.Write(&b, binary.BigEndian, e.saved.UnixNano())
		putBytes32(&b, e.ticket)
		putBytes32(&b, e.state)
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

func putBytes16(b *bytes.Buffer, s string) {
	_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

func putBytes32(b *bytes.Buffer, p []byte) {
	_ = binary.Write(b, binary.BigEndian, uint32(len(p)))
	b.Write(p)
}

var errCorrupt = errors.New("corrupt (bad checksum or truncated)")

func decode(data []byte) (map[key]*entry, error) {
	if len(data) < len(magic)+sha256.Size || string(data[:len(magic)]) != magic {
		return nil, errors.New("not a ctrl-exec TLS session cache")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(want[:], sum) {
		return nil, errCorrupt
	}
	r := reader{p: body[len(magic):]}
	entries := map[key]*entry{}
	for len(r.p) > 0 && r.err == nil {
		owner, addr := r.bytes(r.u16()), r.bytes(r.u16())
		saved := int64(r.u64())
		ticket, state := r.bytes(r.u32()), r.bytes(r.u32())
		if r.err == nil {
			entries[key{string(owner), string(addr)}] = &entry{saved: time.Unix(0, saved), ticket: ticket, state: state}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return entries, nil
}

// reader takes big-endian fields off p; the first short read sets err.
type reader struct {
	p   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.p) {
		r.err = errCorrupt
		return nil
	}
	out := r.p[:n:n]
	r.p = r.p[n:]
	return out
}

func (r *reader) u16() int {
	if b := r.take(2); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *reader) u32() int {
	if b := r.take(4); b != nil {
		return int(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) bytes(n int) []byte { return r.take(n) }
