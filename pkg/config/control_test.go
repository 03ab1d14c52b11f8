package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// writeConf writes content to a fresh file named name and returns its path.
func writeConf(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0644); err != nil {
		t.Fatal(err)
	}
	return p
}

const identity = "cert = /c.crt\nkey = /c.key\nca = /ca.crt\n"

// defaultControl is what a file holding only the identity keys yields.
func defaultControl(path string, p paths.Paths) *Control {
	return &Control{
		Path: path, Cert: "/c.crt", Key: "/c.key", CA: "/ca.crt",
		APIAuthDefault: "deny", APIBind: "127.0.0.1",
		CADir: p.ConfDir(), RotationFile: p.RotationFile(), RegistryDir: p.AgentsDir(),
		ReadTimeout: 60, APIPort: 7445, CertRenewalDays: 90, CertOverlapDays: 30,
		CertCheckInterval: 14400, PairingMaxQueue: 10, APIMaxInflight: 64, SessionCache: true,
		StateBackend: "files", EtcdPrefix: "/ctrl-exec/", AgentIdentity: IdentityRegistry,
		Raw: map[string]string{"cert": "/c.crt", "key": "/c.key", "ca": "/ca.crt"},
	}
}

func TestLoadControl(t *testing.T) {
	p := paths.Paths{Root: "/root-x"}
	tests := []struct {
		name    string
		content string
		edit    func(c *Control) // applied to defaultControl
		warns   func(path string) []Warning
	}{
		{
			name:    "identity only gives defaults under the paths root",
			content: identity,
		},
		{
			name:    "etcd state backend",
			content: identity + "state_backend = ETCD\netcd_endpoints = http://10.0.0.1:2379 , https://e2:2379,\netcd_prefix = /ce/\netcd_cert = /e.crt\netcd_key = /e.key\netcd_ca = /eca.crt\n",
			edit: func(c *Control) {
				c.StateBackend = "etcd"
				c.EtcdEndpoints = []string{"http://10.0.0.1:2379", "https://e2:2379"}
				c.EtcdPrefix, c.EtcdCert, c.EtcdKey, c.EtcdCA = "/ce/", "/e.crt", "/e.key", "/eca.crt"
				for k, v := range map[string]string{"state_backend": "ETCD", "etcd_endpoints": "http://10.0.0.1:2379 , https://e2:2379,",
					"etcd_prefix": "/ce/", "etcd_cert": "/e.crt", "etcd_key": "/e.key", "etcd_ca": "/eca.crt"} {
					c.Raw[k] = v
				}
			},
		},
		{
			name: "upstream example file",
			content: "# ctrl-exec.conf\n\n" + identity +
				"\n# comment\nauth_hook = /etc/ctrl-exec/auth-hook\n# read_timeout = 60\napi_auth_default = deny\n",
			edit: func(c *Control) {
				c.AuthHook = "/etc/ctrl-exec/auth-hook"
				c.Raw["auth_hook"] = "/etc/ctrl-exec/auth-hook"
				c.Raw["api_auth_default"] = "deny"
			},
		},
		{
			name:    "indented lines are skipped, even valid-looking ones",
			content: identity + "  read_timeout = 5\n\tapi_port = 1\n\vapi_bind = 0.0.0.0\n",
		},
		{
			name:    "lines that do not match are ignored silently",
			content: "garbage\n" + identity + "dash-key = 1\n= x\nread_timeout =\n[section]\nkey.dot = 2\n",
		},
		{
			name:    "last occurrence wins",
			content: identity + "cert = /second.crt\n",
			edit: func(c *Control) {
				c.Cert = "/second.crt"
				c.Raw["cert"] = "/second.crt"
			},
		},
		{
			name:    "quotes and # stay in the value, outer spaces are trimmed",
			content: identity + "auth_hook   =   \"/opt/my hook\" # not a comment   \n",
			edit: func(c *Control) {
				c.AuthHook = `"/opt/my hook" # not a comment`
				c.Raw["auth_hook"] = c.AuthHook
			},
		},
		{
			name:    "CRLF endings are trimmed as trailing whitespace",
			content: "cert = /c.crt\r\nkey = /c.key\r\nca = /ca.crt\r\n",
		},
		{
			// Perl backtracks `\s*` after '=' so the lazy value takes one blank.
			name:    "blanks after = leave a one-blank value",
			content: identity + "api_bind =   \n",
			edit: func(c *Control) {
				c.APIBind = " "
				c.Raw["api_bind"] = " "
			},
		},
		{
			name:    "keys are case-sensitive",
			content: identity + "API_PORT = 1\n",
			edit:    func(c *Control) { c.Raw["API_PORT"] = "1" },
		},
		{
			name: "every key set",
			content: identity + "auth_hook = /h\napi_auth_default = ALLOW\nread_timeout = 5\napi_port = 8000\n" +
				"api_bind = 0.0.0.0\napi_cert = /a.crt\napi_key = /a.key\ncert_days = 100\ncert_renewal_days = 20\n" +
				"cert_overlap_days = 3\ncert_check_interval = 60\npairing_max_queue = 4\nca_dir = /ca\n" +
				"rotation_file = /r.json\nregistry_dir = /reg\napi_max_inflight = 8\napi_rotation_loop = yes\nport = 7443\n",
			edit: func(c *Control) {
				c.AuthHook, c.APIAuthDefault, c.ReadTimeout, c.APIPort = "/h", "allow", 5, 8000
				c.APIBind, c.APICert, c.APIKey = "0.0.0.0", "/a.crt", "/a.key"
				c.CertDays, c.CertRenewalDays, c.CertOverlapDays, c.CertCheckInterval = 100, 20, 3, 60
				c.PairingMaxQueue, c.CADir, c.RotationFile, c.RegistryDir = 4, "/ca", "/r.json", "/reg"
				c.APIMaxInflight, c.APIRotationLoop = 8, true
				for k, v := range map[string]string{"auth_hook": "/h", "api_auth_default": "ALLOW", "read_timeout": "5",
					"api_port": "8000", "api_bind": "0.0.0.0", "api_cert": "/a.crt", "api_key": "/a.key",
					"cert_days": "100", "cert_renewal_days": "20", "cert_overlap_days": "3",
					"cert_check_interval": "60", "pairing_max_queue": "4", "ca_dir": "/ca",
					"rotation_file": "/r.json", "registry_dir": "/reg", "api_max_inflight": "8",
					"api_rotation_loop": "yes", "port": "7443"} {
					c.Raw[k] = v
				}
			},
		},
		{
			name:    "api_auth_default other than allow is deny",
			content: identity + "api_auth_default = allowed\n",
			edit:    func(c *Control) { c.Raw["api_auth_default"] = "allowed" },
		},
		{
			name:    "timeout is used when read_timeout is absent",
			content: identity + "timeout = 7\n",
			edit: func(c *Control) {
				c.ReadTimeout = 7
				c.Raw["timeout"] = "7"
			},
		},
		{
			name:    "read_timeout beats timeout",
			content: identity + "read_timeout = 9\ntimeout = 7\n",
			edit: func(c *Control) {
				c.ReadTimeout = 9
				c.Raw["read_timeout"], c.Raw["timeout"] = "9", "7"
			},
		},
		{
			name:    "invalid read_timeout falls back to timeout",
			content: identity + "read_timeout = soon\ntimeout = 7\n",
			edit: func(c *Control) {
				c.ReadTimeout = 7
				c.Raw["read_timeout"], c.Raw["timeout"] = "soon", "7"
			},
			warns: func(path string) []Warning {
				return []Warning{{Key: "read_timeout", Msg: path + " line 4: 'soon' is not a whole number - using default 7"}}
			},
		},
		{
			name:    "leading zeros are decimal",
			content: identity + "read_timeout = 010\n",
			edit: func(c *Control) {
				c.ReadTimeout = 10
				c.Raw["read_timeout"] = "010"
			},
		},
		{
			name:    "cert_days 0 stays 0 (unset)",
			content: identity + "cert_days = 0\n",
			edit:    func(c *Control) { c.Raw["cert_days"] = "0" },
		},
		{
			name: "invalid numbers warn and keep defaults",
			content: identity + "api_port = 70000\ncert_days = -1\ncert_renewal_days = 0x10\ncert_overlap_days = 3.5\n" +
				"cert_check_interval = 0\npairing_max_queue = 99999999999999999999\napi_max_inflight = 0\n" +
				"api_rotation_loop = maybe\n",
			edit: func(c *Control) {
				for k, v := range map[string]string{"api_port": "70000", "cert_days": "-1", "cert_renewal_days": "0x10",
					"cert_overlap_days": "3.5", "cert_check_interval": "0", "pairing_max_queue": "99999999999999999999",
					"api_max_inflight": "0", "api_rotation_loop": "maybe"} {
					c.Raw[k] = v
				}
			},
			warns: func(path string) []Warning {
				return []Warning{
					{Key: "api_port", Msg: path + " line 4: '70000' is not a port number (0-65535) - using default 7445"},
					{Key: "cert_days", Msg: path + " line 5: '-1' is not a whole number - using default 0"},
					{Key: "cert_renewal_days", Msg: path + " line 6: '0x10' is not a whole number - using default 90"},
					{Key: "cert_overlap_days", Msg: path + " line 7: '3.5' is not a whole number - using default 30"},
					{Key: "cert_check_interval", Msg: path + " line 8: '0' is not a whole number above 0 - using default 14400"},
					{Key: "pairing_max_queue", Msg: path + " line 9: '99999999999999999999' is not a whole number - using default 10"},
					{Key: "api_max_inflight", Msg: path + " line 10: '0' is not a whole number above 0 - using default 64"},
					{Key: "api_rotation_loop", Msg: path + " line 11: 'maybe' is not yes/no, true/false, on/off or 1/0 - using default off"},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConf(t, "ctrl-exec.conf", tt.content)
			want := defaultControl(path, p)
			if tt.edit != nil {
				tt.edit(want)
			}
			var wantWarns []Warning
			if tt.warns != nil {
				wantWarns = tt.warns(path)
			}
			got, warns, err := LoadControl(path, p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantWarns, warns); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSessionCacheValues(t *testing.T) {
	for _, tt := range []struct {
		line     string
		want     bool
		wantWarn bool
	}{
		{"", true, false}, {"session_cache = off\n", false, false}, {"session_cache = no\n", false, false},
		{"session_cache = on\n", true, false}, {"session_cache = maybe\n", true, true},
	} {
		path := writeConf(t, "ctrl-exec.conf", identity+tt.line)
		c, warns, err := LoadControl(path, paths.Paths{})
		if err != nil || (len(warns) != 0) != tt.wantWarn {
			t.Fatalf("%q: err %v, warnings %v", tt.line, err, warns)
		}
		if c.SessionCache != tt.want {
			t.Errorf("%q: SessionCache %v, want %v", tt.line, c.SessionCache, tt.want)
		}
	}
}

func TestAPIRotationLoopValues(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{"yes", true}, {"true", true}, {"1", true}, {"on", true}, {"ON", true}, {"Yes", true},
		{"no", false}, {"false", false}, {"0", false}, {"off", false},
	} {
		path := writeConf(t, "ctrl-exec.conf", identity+"api_rotation_loop = "+tt.value+"\n")
		c, warns, err := LoadControl(path, paths.Paths{})
		if err != nil || len(warns) != 0 {
			t.Fatalf("%q: err %v, warnings %v", tt.value, err, warns)
		}
		if c.APIRotationLoop != tt.want {
			t.Errorf("api_rotation_loop = %q: got %v, want %v", tt.value, c.APIRotationLoop, tt.want)
		}
	}
}

func TestAgentIdentityValues(t *testing.T) {
	for _, tt := range []struct {
		value string // "" = key absent
		want  string
		warn  bool
	}{
		{"", IdentityRegistry, false},
		{"registry", IdentityRegistry, false},
		{"strict", IdentityStrict, false},
		{"STRICT", IdentityStrict, false},
		{"off", IdentityOff, false},
		{"Off", IdentityOff, false},
		// Unknown values fail closed.
		{"strcit", IdentityStrict, true},
		{"no", IdentityStrict, true},
	} {
		content := identity
		if tt.value != "" {
			content += "agent_identity = " + tt.value + "\n"
		}
		path := writeConf(t, "ctrl-exec.conf", content)
		c, warns, err := LoadControl(path, paths.Paths{})
		if err != nil {
			t.Fatal(err)
		}
		if c.AgentIdentity != tt.want {
			t.Errorf("agent_identity = %q: got %q, want %q", tt.value, c.AgentIdentity, tt.want)
		}
		var want []Warning
		if tt.warn {
			want = []Warning{{Key: "agent_identity", Msg: fmt.Sprintf("%s line 4: '%s' is not registry, strict or off - using strict", path, tt.value)}}
		}
		if diff := cmp.Diff(want, warns); diff != "" {
			t.Errorf("agent_identity = %q: warnings (-want +got):\n%s", tt.value, diff)
		}
	}
}

func TestLoadControlErrors(t *testing.T) {
	tests := []struct {
		name, content, want string // want has %s for the path
	}{
		{"empty file", "", "Missing 'cert' in %s"},
		{"missing key", "cert = /a\nca = /c\n", "Missing 'key' in %s"},
		{"missing ca", "cert = /a\nkey = /b\n", "Missing 'ca' in %s"},
		{"indented identity does not count", "cert = /a\nkey = /b\n ca = /c\n", "Missing 'ca' in %s"},
		{"commented identity does not count", "#cert = /a\nkey = /b\nca = /c\n", "Missing 'cert' in %s"},
		{"value-less key does not count", "cert =\nkey = /b\nca = /c\n", "Missing 'cert' in %s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConf(t, "ctrl-exec.conf", tt.content)
			_, _, err := LoadControl(path, paths.Paths{})
			if err == nil {
				t.Fatal("want an error")
			}
			if diff := cmp.Diff(fmt.Sprintf(tt.want, path), err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadControlMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.conf")
	_, _, err := LoadControl(path, paths.Paths{})
	want := "Cannot open config '" + path + "': No such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not unwrap to fs.ErrNotExist: %#v", err)
	}

	dir := t.TempDir()
	_, _, err = LoadControl(dir, paths.Paths{})
	if want := "Cannot open config '" + dir + "': Is a directory"; err == nil || err.Error() != want {
		t.Errorf("directory: err = %v, want %q", err, want)
	}
}

func TestReadControlOptional(t *testing.T) {
	p := paths.Paths{Root: "/r"}

	missing := filepath.Join(t.TempDir(), "ctrl-exec.conf")
	got, warns, err := ReadControlOptional(missing, p)
	if err != nil || warns != nil {
		t.Fatalf("missing file: err %v, warnings %v", err, warns)
	}
	want := defaultControl(missing, p)
	want.Cert, want.Key, want.CA, want.Raw = "", "", "", map[string]string{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("missing file (-want +got):\n%s", diff)
	}

	path := writeConf(t, "ctrl-exec.conf", "cert_days = 30\n")
	got, _, err = ReadControlOptional(path, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.CertDays != 30 || got.Cert != "" {
		t.Errorf("CertDays = %d, Cert = %q; want 30 and empty", got.CertDays, got.Cert)
	}

	if _, _, err := ReadControlOptional(t.TempDir(), p); err == nil {
		t.Error("a directory must be an error, not defaults")
	}
}

// A backend that is not files or etcd, or etcd without endpoints, is an
// error naming the file and line: state must never silently go elsewhere.
func TestLoadControlStateBackendErrors(t *testing.T) {
	p := paths.Paths{Root: "/root-x"}
	for content, want := range map[string]string{
		identity + "state_backend = consul\n": "line 4: state_backend 'consul' is neither files nor etcd",
		identity + "state_backend = etcd\n":   "state_backend = etcd needs etcd_endpoints",
	} {
		path := writeConf(t, "ctrl-exec.conf", content)
		_, _, err := LoadControl(path, p)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
}
