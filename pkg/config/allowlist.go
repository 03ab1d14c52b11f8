package config

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Allowlist maps a script name to the absolute path the agent runs for it.
type Allowlist map[string]string

var allowEntry = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^` + sp + `*([\w-]+)` + sp + `*=` + sp + `*(` + nonSp + `+)` + sp + `*$`)
})

// LoadAllowlist reads scripts.conf (SPEC §6.3). Bad lines are skipped, never
// fatal; each skip produces a Warning whose Entry is the script name (the
// whole line when it is malformed) and whose Msg is upstream's stderr line.
// Callers print the Msg on stderr and log it (config-warn): an entry dropped
// for script_dirs is otherwise easy to miss. scriptDirs is applied at load
// (D-8): nil means no restriction, a non-nil list (even empty) drops every
// path outside it. Only a file that cannot be read is an error.
func LoadAllowlist(path string, scriptDirs []string) (Allowlist, []Warning, error) {
	lines, err := readLines(path, "allowlist")
	if err != nil {
		return nil, nil, err
	}
	list := Allowlist{}
	var warns []Warning
	for _, line := range lines {
		if blankOrComment(line) {
			continue
		}
		m := allowEntry().FindStringSubmatch(line)
		if m == nil {
			warns = append(warns, Warning{Entry: line, Msg: fmt.Sprintf("Allowlist: skipping malformed line: %s", line)})
			continue
		}
		name, script := m[1], m[2]
		if !strings.HasPrefix(script, "/") {
			warns = append(warns, Warning{Entry: name, Msg: fmt.Sprintf("Allowlist: skipping '%s' - path must be absolute: %s", name, script)})
			continue
		}
		if scriptDirs != nil && !InScriptDirs(script, scriptDirs) {
			warns = append(warns, Warning{Entry: name, Msg: fmt.Sprintf("Allowlist: skipping '%s' - path not in approved script_dirs: %s", name, script)})
			continue
		}
		list[name] = script
	}
	return list, warns, nil
}

// ValidScriptName is §12.1's name rule, which the agent applies before the
// allowlist and the API to a request's "script": one or more ASCII letters,
// digits, "_" or "-" (the characters an allowlist entry's name may have).
func ValidScriptName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// InScriptDirs reports whether path starts with "<dir>/" for some dir, after
// stripping the dir's trailing slashes (so "/" admits every absolute path).
// It is a plain string test: no symlink or ".." resolution (SPEC §12.1 step 3).
// An empty dirs admits nothing.
func InScriptDirs(path string, dirs []string) bool {
	for _, dir := range dirs {
		if strings.HasPrefix(path, strings.TrimRight(dir, "/")+"/") {
			return true
		}
	}
	return false
}
