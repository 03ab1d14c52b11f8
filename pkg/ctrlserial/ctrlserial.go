// Package ctrlserial owns the agent's ctrl-exec-serial file (SPEC §7.11): the
// serial of the ctrl-exec certificate the agent trusts for /capabilities
// and rotation. Pairing and update-ctrl-exec-serial write it; the agent
// reads it.
package ctrlserial

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// MaxLen is the longest serial accepted: 20 bytes (RFC 5280) in hex.
const MaxLen = 40

// ErrNotHex and ErrLength are Check's reasons; callers word them their way.
var (
	ErrNotHex = errors.New("not a hex string")
	ErrLength = errors.New("not 1-40 hex digits")
)

// Check reports whether s may be stored: 1-40 hex digits in either case.
// Upstream's helper wanted 8-40, but CA serials are short (D-26).
func Check(s string) error {
	if s == "" || strings.Trim(s, "0123456789abcdefABCDEF") != "" {
		return ErrNotHex
	}
	if len(s) > MaxLen {
		return ErrLength
	}
	return nil
}

// Write stores serial as one lowercase line, mode 0644, replacing the file
// whole. The serial must pass Check.
func Write(path, serial string) error {
	if err := Check(serial); err != nil {
		return fmt.Errorf("ctrl-exec serial %.48q: %w", serial, err)
	}
	return atomicfile.Write(path, []byte(perltext.Lower(serial)+"\n"), 0o644)
}

// Read returns the stored serial: the first line with every \s removed and
// lowercased, if only hex digits remain; "" for anything else, an absent
// file or one that is not a regular file. A file that exists but cannot be
// read warns on stderr as upstream does.
func Read(path string, stderr io.Writer) string {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "Cannot read ctrl-exec serial '%s': %v\n", path, perltext.OSError(err))
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "Cannot read ctrl-exec serial '%s': %v\n", path, perltext.OSError(err))
		return ""
	}
	return Parse(line)
}

// Parse is Read's rule on a first line: `s/\s+//g; lc; /^[0-9a-f]+$/`.
func Parse(line string) string {
	s := perltext.Lower(strings.Map(func(r rune) rune {
		if perltext.IsSpaceRune(r) {
			return -1
		}
		return r
	}, line))
	if s == "" || strings.Trim(s, "0123456789abcdef") != "" {
		return ""
	}
	return s
}
