package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// RateSpec is one rate-limit rule: more than Limit events inside Window
// seconds blocks the peer for Block seconds (SPEC §18.1). Limit 0 disables it.
type RateSpec struct {
	Limit, Window, Block int
}

// DefaultRateVolume is the connection-volume rule used when agent.conf sets none.
func DefaultRateVolume() RateSpec { return RateSpec{Limit: 10, Window: 60, Block: 300} }

// DefaultRateProbe is the handshake-failure rule used when agent.conf sets none.
func DefaultRateProbe() RateSpec { return RateSpec{Limit: 3, Window: 600, Block: 3600} }

// DefaultStdinTimeout is how long, in seconds, a script gets to take its stdin context.
const DefaultStdinTimeout = 10

// DefaultMaxOutput is max_output when agent.conf sets none: the bytes kept
// of each of a script's stdout and stderr. A Go control host refuses a reply
// over 64 MiB (wire.MaxClientBody); two streams of 5 MiB, each byte escaped
// in JSON to at most 6 (\u0001), plus the script and reqid echoed from a
// request of at most 1 MiB, stay under it (pinned by a test in roles/agent).
const DefaultMaxOutput = 5 << 20

// Agent is agent.conf (SPEC §6.2).
type Agent struct {
	Path string // the file it was read from

	Port          int
	Cert, Key, CA string

	// ScriptDirs restricts allowlisted paths (§12.1). nil means no
	// restriction; non-nil, even empty (`script_dirs = :`), means the
	// restriction is on, so an empty list refuses every script, as upstream.
	ScriptDirs []string
	// AllowedIPs are exact addresses or a.b.c.d/8|16|24 prefixes (§18.2);
	// nil means every peer is allowed.
	AllowedIPs []string

	RateLimitDisable      bool
	RateVolume, RateProbe RateSpec

	AuthHook       string // "" = no hook; otherwise a regular executable file
	RevokedSerials string
	SerialPath     string // dispatcher_serial_path: the stored ctrl-exec serial
	StdinTimeout   int    // seconds
	// MaxOutput is max_output, a Go addition (Perl agents ignore the key):
	// bytes kept per output stream of a script, first and last halves.
	MaxOutput int

	LogFormat string // Go-only: "json" for JSON log events (pkg/logx); "" = ACTION= lines

	// ScriptTimeouts are the [timeouts] section (Go-only; Perl agents
	// ignore unknown sections): script name → seconds after which the
	// script's process group is killed. A script not listed has no limit.
	ScriptTimeouts map[string]int

	Tags map[string]string // the [tags] section, never nil
	Raw  map[string]string // every top-level key read, value as written
}

var (
	agentSection = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^` + sp + `*\[(\w+)\]` + sp + `*$`) })
	agentKV      = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^` + sp + `*(\w+[\w-]*)` + sp + `*=` + sp + `*(.+?)` + sp + `*$`)
	})
)

// LoadAgent reads and validates agent.conf. Any line that is not a comment,
// blank, a [section] header or `key = value` is fatal. Warnings (bad
// allowed_ips prefixes, bad rate specs, bad numbers) are returned for the
// caller to log as config-warn; on error they are the ones found so far.
func LoadAgent(path string, p paths.Paths) (*Agent, []Warning, error) {
	lines, err := readLines(path, "config")
	if err != nil {
		return nil, nil, err
	}
	s := newStore(path)
	section := ""
	timeouts := map[string]timeoutEntry{}
	for i, line := range lines {
		if blankOrComment(line) {
			continue
		}
		if m := agentSection().FindStringSubmatch(line); m != nil {
			section = strings.ToLower(m[1])
			continue
		}
		m := agentKV().FindStringSubmatch(line)
		if m == nil {
			return nil, nil, fmt.Errorf("Malformed config line in '%s' (line %d): %s", path, i+1, line)
		}
		switch section {
		case "":
			err = s.set(m[1], m[2], i+1)
		case "tags":
			err = s.tag(m[1], m[2])
		case "timeouts":
			timeouts[m[1]] = timeoutEntry{value: m[2], line: i + 1}
		default:
			// keys of any other section are ignored, as upstream
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
	}
	a, warns, err := agentFrom(path, p, s)
	if err != nil {
		return a, warns, err
	}
	a.ScriptTimeouts, warns = scriptTimeouts(path, timeouts, warns)
	return a, warns, nil
}

type timeoutEntry struct {
	value string
	line  int
}

// scriptTimeouts reads [timeouts]: `name = seconds`, a whole number above
// 0; anything else is warned about and ignored (the script then has no
// limit, as upstream).
func scriptTimeouts(path string, entries map[string]timeoutEntry, warns []Warning) (map[string]int, []Warning) {
	var out map[string]int
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names) // warnings in a stable order
	for _, name := range names {
		e := entries[name]
		n, ok := wholeNumber(e.value)
		if !ok || n <= 0 || !ValidScriptName(name) {
			warns = append(warns, Warning{Key: name, Msg: fmt.Sprintf(
				"%s line %d: [timeouts] %s = %s is not a script name and a whole number of seconds above 0 - no timeout", path, e.line, name, e.value)})
			continue
		}
		if out == nil {
			out = map[string]int{}
		}
		out[name] = n
	}
	return out, warns
}

func agentFrom(path string, p paths.Paths, s *store) (*Agent, []Warning, error) {
	for _, k := range []string{"port", "cert", "key", "ca"} {
		if _, ok := s.get(k); !ok {
			return nil, nil, fmt.Errorf("Missing required config key '%s' in '%s'", k, path)
		}
	}
	portText, _ := s.get("port")
	if !digitsRE().MatchString(portText) {
		return nil, nil, fmt.Errorf("port must be numeric in '%s' (line %d): %s", path, s.line["port"], portText)
	}
	port, ok := wholeNumber(portText)
	if !ok || port > 65535 {
		return nil, nil, fmt.Errorf("port must be 0-65535 in '%s' (line %d): %s", path, s.line["port"], portText)
	}

	var warns []Warning
	a := &Agent{
		Path:           path,
		Port:           port,
		Cert:           s.str("cert", ""),
		Key:            s.str("key", ""),
		CA:             s.str("ca", ""),
		RateVolume:     DefaultRateVolume(),
		RateProbe:      DefaultRateProbe(),
		RevokedSerials: s.str("revoked_serials", p.RevokedSerials()),
		SerialPath:     s.str("dispatcher_serial_path", p.AgentSerial()),
		StdinTimeout:   s.number("stdin_timeout", DefaultStdinTimeout, "a whole number", nil, &warns),
		MaxOutput:      s.number("max_output", DefaultMaxOutput, "a byte count above 0", func(n int) bool { return n > 0 }, &warns),
		Tags:           s.tags(),
		Raw:            s.raw(),
		LogFormat:      s.str("log_format", ""),
	}

	if v, ok := s.get("script_dirs"); ok {
		a.ScriptDirs = splitScriptDirs(v)
		if len(a.ScriptDirs) == 0 {
			warns = append(warns, s.warn("script_dirs", "no directory listed - every script will be refused"))
		}
	}

	if v, ok := s.get("allowed_ips"); ok {
		a.AllowedIPs = parseAllowedIPs(v, &warns)
	}

	// Disabled iff the value starts with 1, y or Y: `true` does not disable (B-29).
	if v := s.str("rate_limit_disable", ""); v != "" && strings.ContainsRune("1yY", rune(v[0])) {
		a.RateLimitDisable = true
	}
	if spec, ok := rateSpec(s, "rate_limit_volume", &warns); ok {
		a.RateVolume = spec
	}
	if spec, ok := rateSpec(s, "rate_limit_probe", &warns); ok {
		a.RateProbe = spec
	}

	if hook := s.str("auth_hook", ""); hook != "" {
		if err := checkExecutable(hook); err != nil {
			return nil, warns, fmt.Errorf("auth_hook '%s' is not executable in '%s' (line %d): %v",
				hook, path, s.line["auth_hook"], err)
		}
		a.AuthHook = hook
	}
	return a, warns, nil
}

// splitScriptDirs splits a colon-separated list, dropping empty items; the
// result is non-nil even when every item is empty.
func splitScriptDirs(v string) []string {
	dirs := []string{}
	for _, d := range strings.Split(v, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// parseAllowedIPs applies SPEC §18.2: split on commas, trim, drop empties;
// an entry with '/' needs a prefix of 8, 16 or 24 (leading zeros allowed, as
// upstream compares numerically; the prefix is rewritten without them).
// Entries without '/' are kept verbatim. nil when nothing remains.
func parseAllowedIPs(v string, warns *[]Warning) []string {
	var entries []string
	for _, e := range strings.Split(v, ",") {
		e = trimPerlSpace(e)
		if e == "" {
			continue
		}
		if network, prefix, found := strings.Cut(e, "/"); found {
			n, ok := wholeNumber(prefix)
			if !ok || (n != 8 && n != 16 && n != 24) {
				*warns = append(*warns, Warning{Entry: e, Msg: "unsupported prefix length"})
				continue
			}
			e = fmt.Sprintf("%s/%d", network, n)
		}
		entries = append(entries, e)
	}
	return entries
}

// rateSpec reads an `L/W/B` value. The literal value 0 means unset; anything
// but three whole numbers warns with upstream's exact message and keeps the defaults.
func rateSpec(s *store, key string, warns *[]Warning) (RateSpec, bool) {
	v, ok := s.get(key)
	if !ok || v == "0" {
		return RateSpec{}, false
	}
	parts := strings.SplitN(v, "/", 3)
	var nums [3]int
	valid := len(parts) == 3
	for i := 0; valid && i < 3; i++ {
		nums[i], valid = wholeNumber(parts[i])
	}
	if !valid {
		*warns = append(*warns, Warning{Key: key, Msg: "invalid format, expected limit/window/block - using defaults"})
		return RateSpec{}, false
	}
	return RateSpec{Limit: nums[0], Window: nums[1], Block: nums[2]}, true
}

// checkExecutable mirrors Perl's `-f $p && -x $p`: a regular file (after
// following symlinks) that the effective user may execute.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return errors.New(osReason(err))
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("no execute permission (%v)", err)
	}
	return nil
}
