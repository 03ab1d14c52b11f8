package ctrlserial

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rule is upstream's load_dispatcher_serial: first line, s/\s+//g, lc,
// then /^[0-9a-f]+$/ or "".
func TestParseAsPerl(t *testing.T) {
	tests := map[string]string{
		"01000005\n":    "01000005",
		"  0A BC \n":    "0abc",
		"ABCDEF":        "abcdef",
		"0x01\n":        "",
		"serial=01\n":   "",
		"\n":            "",
		"":              "",
		"12:34\n":       "",
		"\t1\t2\r\n":    "12",
		"ab\nff\n":      "ab",
		"\xff\xfe01\n":  "",
		"deadbeefcafe ": "deadbeefcafe",
		// Perl reads bytes: \s is ASCII only, so a no-break space spoils it.
		"01\u00a002\n": "",
		"01\v02\f\n":   "0102",
	}
	for in, want := range tests {
		line := in
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		if got := Parse(line); got != want {
			t.Errorf("Parse(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteStoresOneLowercaseLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctrl-exec-serial")
	for _, c := range []struct {
		serial, file string
		err          error
	}{
		{"01000005", "01000005\n", nil},
		{"0ABCdef", "0abcdef\n", nil},
		{"2", "2\n", nil},
		{strings.Repeat("f", 40), strings.Repeat("f", 40) + "\n", nil},
		{strings.Repeat("f", 41), "", ErrLength},
		{"", "", ErrNotHex},
		{"0x01", "", ErrNotHex},
		{"01 02", "", ErrNotHex},
	} {
		os.Remove(path)
		err := Write(path, c.serial)
		if !errors.Is(err, c.err) {
			t.Errorf("Write(%q) = %v, want %v", c.serial, err, c.err)
			continue
		}
		data, _ := os.ReadFile(path)
		if string(data) != c.file {
			t.Errorf("Write(%q) stored %q, want %q", c.serial, data, c.file)
		}
		if c.err == nil {
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode().Perm())
			}
			if got := Read(path, nil); got != strings.TrimSuffix(c.file, "\n") {
				t.Errorf("Read after Write(%q) = %q", c.serial, got)
			}
		}
	}
}

func TestReadAbsentOrUnreadable(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if got := Read(filepath.Join(dir, "none"), &stderr); got != "" || stderr.Len() != 0 {
		t.Errorf("absent: %q, stderr %q", got, stderr.String())
	}
	if got := Read(dir, &stderr); got != "" || stderr.Len() != 0 {
		t.Errorf("directory: %q, stderr %q", got, stderr.String())
	}
	if os.Geteuid() == 0 {
		return // root reads a 0000 file
	}
	path := filepath.Join(dir, "locked")
	if err := os.WriteFile(path, []byte("01\n"), 0); err != nil {
		t.Fatal(err)
	}
	if got := Read(path, &stderr); got != "" {
		t.Errorf("unreadable: %q", got)
	}
	if want := "Cannot read ctrl-exec serial '" + path + "': Permission denied\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"01000005\n", " A b\tC\r\n", "0x1", "\xff"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got := Parse(string(line))
		if strings.Trim(got, "0123456789abcdef") != "" {
			t.Fatalf("%q gave non-hex %q", line, got)
		}
	})
}
