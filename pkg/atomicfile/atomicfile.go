// Package atomicfile writes state files whole: a reader sees the old content
// or the new, never a torn mix, and a crash never leaves a half-written file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write replaces path with data: temp file in the same directory, chmod,
// fsync, rename, then fsync of the directory so the rename is durable.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, -1)
}

// WriteGroup is Write with the file's group set to gid before the rename, so
// the file is never visible with another group (or a group's read bit on the
// wrong group).
func WriteGroup(path string, data []byte, mode os.FileMode, gid int) error {
	return write(path, data, mode, gid)
}

func write(path string, data []byte, mode os.FileMode, gid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPattern(filepath.Base(path)))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if gid >= 0 {
		if err := tmp.Chown(-1, gid); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: the new content is in place but may not survive a crash: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// maxTempBase is how much of the target's name a temp name keeps: with the
// dot, ".tmp" and CreateTemp's up to 10 random digits it stays well inside
// the 255-byte file name limit whatever the target's length.
const maxTempBase = 200

// tempPattern names the temp file after its target, so a leftover says whose
// it was, cut short so that a target of any valid length has one.
func tempPattern(base string) string {
	if len(base) > maxTempBase {
		base = base[:maxTempBase]
	}
	return "." + base + ".tmp*"
}

// WithLock runs fn while holding an exclusive BSD flock(2) on path, which may
// be a file or a directory. flock (not fcntl) so Perl processes interlock too.
func WithLock(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer f.Close()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}
