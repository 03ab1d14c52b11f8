package config

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// Control is ctrl-exec.conf (SPEC §6.1), read by the control-host CLI and the API.
type Control struct {
	Path string // the file it was read from

	Cert, Key, CA  string // mTLS identity and CA (required by LoadControl)
	AuthHook       string // "" = no hook
	APIAuthDefault string // "allow" or "deny" (anything but allow, any case, is deny)
	APIBind        string
	APICert        string // "" = plain HTTP
	APIKey         string

	CADir        string // undocumented upstream override; default paths.ConfDir
	RotationFile string // default paths.RotationFile
	RegistryDir  string // default paths.AgentsDir

	ReadTimeout       int // seconds; `timeout` is the deprecated alias
	APIPort           int
	CertDays          int // 0 = unset: each caller picks its own default (B-16, D-18)
	CertRenewalDays   int
	CertOverlapDays   int
	CertCheckInterval int // seconds
	PairingMaxQueue   int

	APIMaxInflight  int    // Go-only: concurrent in-flight API runs
	APIRotationLoop bool   // Go-only: run the rotation check loop in the API (D-24)
	LogFormat       string // Go-only: "json" for JSON log events (pkg/logx); "" = ACTION= lines
	SessionCache    bool   // Go-only: resume TLS sessions with agents (default on)

	// Go-only (issue 13): where locks, runs and fleet state live.
	StateBackend              string   // "files" (default) or "etcd"
	EtcdEndpoints             []string // etcd_endpoints, comma-separated
	EtcdPrefix                string   // default "/ctrl-exec/"
	EtcdCert, EtcdKey, EtcdCA string   // client TLS for etcd; all or none

	// AgentIdentity is how agents' certificates are checked against the
	// registry (D-31): IdentityRegistry, IdentityStrict or IdentityOff.
	AgentIdentity string

	Raw map[string]string // every key read, value as written
}

// agent_identity values (D-31).
const (
	IdentityRegistry = "registry" // check targets the registry knows, allow others (default)
	IdentityStrict   = "strict"   // also refuse targets the registry does not know
	IdentityOff      = "off"      // no check, as upstream
)

// Defaults of ctrl-exec.conf (SPEC §6.1 table).
const (
	DefaultReadTimeout       = 60
	DefaultAPIPort           = 7445
	DefaultAPIBind           = "127.0.0.1"
	DefaultCertRenewalDays   = 90
	DefaultCertOverlapDays   = 30
	DefaultCertCheckInterval = 14400
	DefaultPairingMaxQueue   = 10
	DefaultAPIMaxInflight    = 64
)

// controlKVPattern is upstream's line rule for ctrl-exec.conf. splitControlKV
// applies it by hand: compiling the regexp cost every command about 140 000
// instructions, more than the rest of reading the file (issue 11).
const controlKVPattern = `^` + sp + `*(\w+)` + sp + `*=` + sp + `*(.+?)` + sp + `*$`

// splitControlKV matches line against controlKVPattern: the key is a run of
// ASCII word characters, then optional Perl whitespace, "=", and the value
// with Perl whitespace trimmed on both sides. A value that is all whitespace
// is its last character, as the lazy (.+?) after a greedy \s* leaves it
// (readLines splits on "\n", so no line holds one for "." to stop at).
func splitControlKV(line string) (key, value string, ok bool) {
	rest := perltext.TrimLeftSpace(line)
	n := 0
	for n < len(rest) && isWordByte(rest[n]) {
		n++
	}
	if n == 0 {
		return "", "", false
	}
	key, rest = rest[:n], perltext.TrimLeftSpace(rest[n:])
	if rest == "" || rest[0] != '=' {
		return "", "", false
	}
	rest = rest[1:]
	if rest == "" {
		return "", "", false
	}
	if value = perltext.TrimSpace(rest); value == "" {
		value = rest[len(rest)-1:]
	}
	return key, value, true
}

// isWordByte is RE2's \w: ASCII letters, digits and "_".
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// LoadControl reads ctrl-exec.conf and requires cert, key and ca.
// Warnings (invalid numbers, D-11) are returned for the caller to log.
func LoadControl(path string, p paths.Paths) (*Control, []Warning, error) {
	c, warns, err := readControl(path, p)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range []string{"cert", "key", "ca"} {
		if c.Raw[k] == "" {
			return nil, warns, fmt.Errorf("Missing '%s' in %s", k, path)
		}
	}
	return c, warns, nil
}

// readAgentIdentity reads agent_identity. A value it does not know fails
// closed: a warning, and strict, the mode that lets the fewest agents
// through.
func readAgentIdentity(s *store, warns *[]Warning) string {
	v, ok := s.get("agent_identity")
	if !ok {
		return IdentityRegistry
	}
	for _, mode := range []string{IdentityRegistry, IdentityStrict, IdentityOff} {
		if strings.EqualFold(v, mode) {
			return mode
		}
	}
	*warns = append(*warns, s.warn("agent_identity", fmt.Sprintf(
		"'%s' is not registry, strict or off - using strict", v)))
	return IdentityStrict
}

// ReadControlOptional reads ctrl-exec.conf without requiring any key, for
// callers that only want an optional setting (approve reading cert_days).
// A file that does not exist yields the defaults and no error; any other
// read failure is an error.
func ReadControlOptional(path string, p paths.Paths) (*Control, []Warning, error) {
	c, warns, err := readControl(path, p)
	if errors.Is(err, fs.ErrNotExist) {
		return controlFrom(path, p, newStore(path))
	}
	return c, warns, err
}

func readControl(path string, p paths.Paths) (*Control, []Warning, error) {
	lines, err := readLines(path, "config")
	if err != nil {
		return nil, nil, err
	}
	s := newStore(path)
	for i, line := range lines {
		// A line starting with '#' or any whitespace is skipped, so an
		// indented `key = value` is ignored, as upstream does.
		if line == "" || line[0] == '#' || perltext.IsSpace(line[0]) {
			continue
		}
		key, value, ok := splitControlKV(line)
		if !ok {
			continue // upstream ignores lines it does not understand
		}
		if err := s.set(key, value, i+1); err != nil {
			return nil, nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
	}
	return controlFrom(path, p, s)
}

func controlFrom(path string, p paths.Paths, s *store) (*Control, []Warning, error) {
	var warns []Warning
	positive := func(n int) bool { return n > 0 }
	c := &Control{
		Path:         path,
		Cert:         s.str("cert", ""),
		Key:          s.str("key", ""),
		CA:           s.str("ca", ""),
		AuthHook:     s.str("auth_hook", ""),
		APIBind:      s.str("api_bind", DefaultAPIBind),
		APICert:      s.str("api_cert", ""),
		APIKey:       s.str("api_key", ""),
		CADir:        s.str("ca_dir", p.ConfDir()),
		RotationFile: s.str("rotation_file", p.RotationFile()),
		RegistryDir:  s.str("registry_dir", p.AgentsDir()),
		Raw:          s.raw(),
		LogFormat:    s.str("log_format", ""),
		StateBackend: strings.ToLower(s.str("state_backend", "files")),
		EtcdPrefix:   s.str("etcd_prefix", "/ctrl-exec/"),
		EtcdCert:     s.str("etcd_cert", ""),
		EtcdKey:      s.str("etcd_key", ""),
		EtcdCA:       s.str("etcd_ca", ""),
	}
	for _, e := range strings.Split(s.str("etcd_endpoints", ""), ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.EtcdEndpoints = append(c.EtcdEndpoints, e)
		}
	}
	if c.StateBackend != "files" && c.StateBackend != "etcd" {
		return nil, nil, fmt.Errorf("%s line %d: state_backend '%s' is neither files nor etcd", path, s.line["state_backend"], s.str("state_backend", ""))
	}
	if c.StateBackend == "etcd" && len(c.EtcdEndpoints) == 0 {
		return nil, nil, fmt.Errorf("%s: state_backend = etcd needs etcd_endpoints (host:port, comma-separated)", path)
	}

	c.APIAuthDefault = "deny"
	if strings.EqualFold(s.str("api_auth_default", "deny"), "allow") {
		c.APIAuthDefault = "allow"
	}

	// read_timeout wins; the deprecated `timeout` counts only when read_timeout is absent.
	const whole, aboveZero = "a whole number", "a whole number above 0"
	if _, ok := s.get("read_timeout"); ok {
		fallback := DefaultReadTimeout
		if v, ok := s.get("timeout"); ok {
			if n, ok := wholeNumber(v); ok {
				fallback = n
			}
		}
		c.ReadTimeout = s.number("read_timeout", fallback, whole, nil, &warns)
	} else {
		c.ReadTimeout = s.number("timeout", DefaultReadTimeout, whole, nil, &warns)
	}

	c.APIPort = s.number("api_port", DefaultAPIPort, "a port number (0-65535)", func(n int) bool { return n <= 65535 }, &warns)
	c.CertDays = s.number("cert_days", 0, whole, nil, &warns)
	c.CertRenewalDays = s.number("cert_renewal_days", DefaultCertRenewalDays, whole, nil, &warns)
	c.CertOverlapDays = s.number("cert_overlap_days", DefaultCertOverlapDays, whole, nil, &warns)
	c.CertCheckInterval = s.number("cert_check_interval", DefaultCertCheckInterval, aboveZero, positive, &warns)
	c.PairingMaxQueue = s.number("pairing_max_queue", DefaultPairingMaxQueue, whole, nil, &warns)
	c.APIMaxInflight = s.number("api_max_inflight", DefaultAPIMaxInflight, aboveZero, positive, &warns)

	c.APIRotationLoop = s.boolean("api_rotation_loop", false, &warns)
	c.SessionCache = s.boolean("session_cache", true, &warns)
	c.AgentIdentity = readAgentIdentity(s, &warns)
	return c, warns, nil
}

// boolean reads an on/off key: ini's Bool accepts 1/t/y/yes/true/on and
// 0/f/n/no/false/off (lower, Title or UPPER case); anything else warns and
// gives def.
func (s *store) boolean(name string, def bool, warns *[]Warning) bool {
	v, ok := s.get(name)
	if !ok {
		return def
	}
	on, err := s.key(name).Bool()
	if err != nil {
		word := map[bool]string{true: "on", false: "off"}[def]
		*warns = append(*warns, s.warn(name, fmt.Sprintf(
			"'%s' is not yes/no, true/false, on/off or 1/0 - using default %s", v, word)))
		return def
	}
	return on
}
