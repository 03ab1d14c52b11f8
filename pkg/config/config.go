// Package config loads ctrl-exec's three configuration files (SPEC §6) into
// typed structs: ctrl-exec.conf on the control host, agent.conf and
// scripts.conf on the agent.
//
// The three files are parsed by three different line grammars on purpose:
// each reproduces the upstream Perl reader of that file, quirks included
// (ctrl-exec.conf ignores indented lines; agent.conf rejects any line it does
// not understand; scripts.conf warns and carries on). Built-in default paths
// come from paths.Paths; paths written in a file are used as written.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/ini.v1"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// Warning is a non-fatal config problem. The role logs it as
// `config-warn KEY=<Key> MSG=<Msg>` or `config-warn ENTRY=<Entry> MSG=<Msg>`
// (exactly one of Key and Entry is set).
type Warning struct {
	Key, Entry, Msg string
}

// Perl's \s (since 5.18, byte strings): space, \t, \n, \v, \f, \r. Go's \s lacks \v.
const (
	sp    = `[\t\n\v\f\r ]`
	nonSp = `[^\t\n\v\f\r ]`
)

// blankOrComment is the skip rule shared by agent.conf and scripts.conf:
// `^\s*#` or `^\s*$`.
func blankOrComment(line string) bool {
	rest := perltext.TrimLeftSpace(line)
	return rest == "" || rest[0] == '#'
}

var trimPerlSpace = perltext.TrimSpace

// readLines reads path the way Perl's `while (<$fh>) { chomp; ... }` does:
// lines split on "\n" only (a "\r" stays on the line), no trailing empty line.
// what names the file kind in the open error ("config" or "allowlist").
func readLines(path, what string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("Cannot open %s '%s': %w", what, path, openError{err})
	}
	if len(data) == 0 {
		return nil, nil
	}
	lines := strings.Split(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines, nil
}

// openError prints only the operating-system reason, capitalised like the C
// library's strerror that upstream shows ("No such file or directory"), and
// still unwraps to the *fs.PathError so errors.Is(err, fs.ErrNotExist) works.
type openError struct{ err error }

func (e openError) Error() string {
	return perltext.Capitalise(perltext.OSError(e.err))
}

func (e openError) Unwrap() error { return e.err }

// osReason is the bare reason of a file-system error, without the "stat /x:" prefix.
func osReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

var digitsRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]+$`) })

// wholeNumber parses a Perl-style `^\d+$` value as decimal (leading zeros
// allowed, as Perl numifies "010" to 10). ok is false for anything else,
// including values too large for an int.
func wholeNumber(v string) (n int, ok bool) {
	if !digitsRE().MatchString(v) {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// store keeps the tokenised keys. The line grammar is ours (ini.v1's own
// parser does not follow SPEC §6), but ini.v1 is the project's typed store,
// so tokens go into an ini.File and are read back through it.
type store struct {
	path string
	file *ini.File
	line map[string]int // line number of the last occurrence of each top-level key
}

func newStore(path string) *store {
	return &store{path: path, file: ini.Empty(), line: map[string]int{}}
}

// set records a top-level key; a later occurrence replaces an earlier one.
func (s *store) set(key, value string, line int) error {
	if _, err := s.file.Section(ini.DefaultSection).NewKey(key, value); err != nil {
		return err
	}
	s.line[key] = line
	return nil
}

// tag records a key of the [tags] section.
func (s *store) tag(key, value string) error {
	_, err := s.file.Section("tags").NewKey(key, value)
	return err
}

// get returns the raw value of a top-level key. Key.Value is used, not
// Key.String, because String expands ini's %(name)s references.
func (s *store) get(key string) (string, bool) {
	k, err := s.file.Section(ini.DefaultSection).GetKey(key)
	if err != nil || k == nil {
		return "", false
	}
	return k.Value(), true
}

// key returns the ini key for typed getters; only call it for keys that exist.
func (s *store) key(name string) *ini.Key {
	return s.file.Section(ini.DefaultSection).Key(name)
}

func (s *store) raw() map[string]string {
	return s.file.Section(ini.DefaultSection).KeysHash()
}

func (s *store) tags() map[string]string {
	if !s.file.HasSection("tags") {
		return map[string]string{}
	}
	return s.file.Section("tags").KeysHash()
}

// str returns the value of key, or def when the key is absent.
func (s *store) str(key, def string) string {
	if v, ok := s.get(key); ok {
		return v
	}
	return def
}

// number returns key as a whole number, def when absent. A value that is not
// digits, is too large, or fails valid adds a Warning and yields def (D-11);
// want describes the accepted values for that warning.
func (s *store) number(key string, def int, want string, valid func(int) bool, warns *[]Warning) int {
	v, ok := s.get(key)
	if !ok {
		return def
	}
	n, ok := wholeNumber(v)
	if ok && (valid == nil || valid(n)) {
		return n
	}
	*warns = append(*warns, s.warn(key, fmt.Sprintf("'%s' is not %s - using default %d", v, want, def)))
	return def
}

// warn builds a Warning for key that names the file and line of its last occurrence.
func (s *store) warn(key, msg string) Warning {
	return Warning{Key: key, Msg: fmt.Sprintf("%s line %d: %s", s.path, s.line[key], msg)}
}
