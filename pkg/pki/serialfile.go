package pki

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// serialFile is ca.serial, opened and exclusively flock'ed.
type serialFile struct {
	f    *os.File
	path string
}

// withSerialLock opens path (creating it 0600 if absent), takes a BSD
// flock(LOCK_EX) on it and runs fn.
//
// The lock belongs to the file's inode, so ca.serial is always rewritten in
// place, never renamed over: a Perl or Go signer queued on the old inode would
// otherwise get a lock nobody else honours. openssl -CAserial also rewrites
// in place.
func withSerialLock(path string, fn func(*serialFile) error) error {
	f, err := openLockedSerial(path)
	if err != nil {
		return err
	}
	defer f.Close()
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn(&serialFile{f: f, path: path})
}

func openLockedSerial(path string) (*os.File, error) {
	for attempt := 0; attempt < 20; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				continue // another signer created it first; open theirs
			}
		}
		if err != nil {
			return nil, fmt.Errorf("open CA serial file: %w", err)
		}
		if err := flockExclusive(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock CA serial file %s: %w", path, err)
		}
		// Someone may have replaced or removed the file while we waited;
		// then our lock guards nothing and we start again.
		if sameFile(f, path) {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("lock CA serial file %s: the file keeps being replaced; is another tool renaming it?", path)
}

func flockExclusive(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

func sameFile(f *os.File, path string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	named, err := os.Stat(path)
	return err == nil && os.SameFile(held, named)
}

// next returns the serial to issue: the stored last serial plus one, raised to
// floor when below it. An absent or empty file (a crash can leave one empty)
// yields a random serial, as `openssl -CAcreateserial` does.
func (s *serialFile) next(floor int64) (*big.Int, error) {
	data, err := io.ReadAll(io.NewSectionReader(s.f, 0, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read CA serial file %s: %w", s.path, err)
	}
	var n *big.Int
	if strings.TrimSpace(string(data)) == "" {
		n = randomSerial()
	} else {
		last, err := ParseSerialFile(data)
		if err != nil {
			return nil, fmt.Errorf("CA serial file %s: %w; write the last issued serial in hex (e.g. 0A) to fix it", s.path, err)
		}
		n = last.Add(last, big.NewInt(1))
	}
	if floor > 0 && n.Cmp(big.NewInt(floor)) < 0 {
		n = big.NewInt(floor)
	}
	if !serialFitsRFC5280(n) {
		return nil, fmt.Errorf("CA serial file %s: next serial %s is longer than 20 bytes; lower the value in the file", s.path, serialHex(n))
	}
	return n, nil
}

// write stores n as the last issued serial, in place: truncate, write, fsync.
// A crash in between leaves the file empty, which next treats as absent
// (a fresh random serial), never as an old value that would repeat serials.
func (s *serialFile) write(n *big.Int) error {
	data := FormatSerialFile(n)
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("write CA serial file %s: %w", s.path, err)
	}
	if _, err := s.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write CA serial file %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("write CA serial file %s: %w", s.path, err)
	}
	return nil
}

// LastSerial is the serial recorded in ca.serial at path; ok false when the
// file is absent or empty.
func LastSerial(path string) (n *big.Int, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read CA serial file: %w", err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, false, nil
	}
	n, err = ParseSerialFile(data)
	if err != nil {
		return nil, false, fmt.Errorf("CA serial file %s: %w", path, err)
	}
	return n, true, nil
}

// RaiseSerial records n in ca.serial at path, under its lock, unless the
// file already holds n or more (so no serial up to n is issued again).
func RaiseSerial(path string, n *big.Int) (changed bool, err error) {
	err = withSerialLock(path, func(sf *serialFile) error {
		data, err := io.ReadAll(io.NewSectionReader(sf.f, 0, 1<<20))
		if err != nil {
			return fmt.Errorf("read CA serial file %s: %w", path, err)
		}
		if strings.TrimSpace(string(data)) != "" {
			last, err := ParseSerialFile(data)
			if err != nil {
				return fmt.Errorf("CA serial file %s: %w", path, err)
			}
			if last.Cmp(n) >= 0 {
				return nil
			}
		}
		changed = true
		return sf.write(n)
	})
	return changed, err
}
