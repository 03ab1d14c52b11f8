package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

const agentIdentity = "port = 7443\ncert = /a.crt\nkey = /a.key\nca = /ca.crt\n"

// defaultAgent is what a file holding only the required keys yields.
func defaultAgent(path string, p paths.Paths) *Agent {
	return &Agent{
		Path: path, Port: 7443, Cert: "/a.crt", Key: "/a.key", CA: "/ca.crt",
		RateVolume: RateSpec{10, 60, 300}, RateProbe: RateSpec{3, 600, 3600},
		RevokedSerials: p.RevokedSerials(), SerialPath: p.AgentSerial(), StdinTimeout: 10,
		MaxOutput: DefaultMaxOutput,
		Tags:      map[string]string{},
		Raw:       map[string]string{"port": "7443", "cert": "/a.crt", "key": "/a.key", "ca": "/ca.crt"},
	}
}

func TestLoadAgent(t *testing.T) {
	p := paths.Paths{Root: "/root-y"}
	tests := []struct {
		name    string
		content string
		edit    func(a *Agent)
		warns   []Warning
	}{
		{
			name:    "required keys only",
			content: agentIdentity,
		},
		{
			name: "comments, indented comments, blank and whitespace-only lines",
			content: "# agent.conf\n\n   # indented comment\n \t \n" +
				"  port = 7443\n\tcert = /a.crt\nkey=/a.key\nca   =   /ca.crt   \n",
		},
		{
			name:    "CRLF line endings",
			content: "port = 7443\r\ncert = /a.crt\r\nkey = /a.key\r\nca = /ca.crt\r\n\r\n[tags]\r\nenv = prod\r\n",
			edit:    func(a *Agent) { a.Tags = map[string]string{"env": "prod"} },
		},
		{
			name:    "last occurrence wins",
			content: agentIdentity + "port = 9000\n",
			edit: func(a *Agent) {
				a.Port = 9000
				a.Raw["port"] = "9000"
			},
		},
		{
			name:    "port with leading zeros is decimal; port 0 is allowed",
			content: "port = 0\ncert = /a.crt\nkey = /a.key\nca = /ca.crt\n",
			edit: func(a *Agent) {
				a.Port = 0
				a.Raw["port"] = "0"
			},
		},
		{
			name:    "keys may contain dashes; unused keys land in Raw",
			content: agentIdentity + "pairing-port = 7444\npairing_port = 7444\ndispatcher_cn = x\n",
			edit: func(a *Agent) {
				a.Raw["pairing-port"], a.Raw["pairing_port"], a.Raw["dispatcher_cn"] = "7444", "7444", "x"
			},
		},
		{
			name: "tags, with section names lowercased and other sections ignored",
			content: agentIdentity + "\n[TAGS]\nenv  = prod\nrole = db server\nsite-code = lon-1\nenv = staging\n" +
				"[other]\nport = 1\nfoo = bar\n[Tags]\nextra = yes\n",
			edit: func(a *Agent) {
				a.Tags = map[string]string{"env": "staging", "role": "db server", "site-code": "lon-1", "extra": "yes"}
			},
		},
		{
			name:    "empty [tags] section",
			content: agentIdentity + "[tags]\n",
		},
		{
			name:    "tags keep # and quotes literally",
			content: agentIdentity + "[tags]\nnote = \"a\" # b\n",
			edit:    func(a *Agent) { a.Tags = map[string]string{"note": `"a" # b`} },
		},
		{
			name:    "per-script [timeouts] and log_format (Go-only; Perl ignores the section)",
			content: agentIdentity + "log_format = json\n[timeouts]\nbackup-db = 30\nslow = 0\nbad = 2s\n",
			edit: func(a *Agent) {
				a.LogFormat, a.Raw["log_format"] = "json", "json"
				a.ScriptTimeouts = map[string]int{"backup-db": 30}
			},
			warns: []Warning{
				{Key: "bad", Msg: "%s line 9: [timeouts] bad = 2s is not a script name and a whole number of seconds above 0 - no timeout"},
				{Key: "slow", Msg: "%s line 8: [timeouts] slow = 0 is not a script name and a whole number of seconds above 0 - no timeout"},
			},
		},
		{
			name:    "paths and timeouts",
			content: agentIdentity + "revoked_serials = /r\ndispatcher_serial_path = /s\nstdin_timeout = 3\n",
			edit: func(a *Agent) {
				a.RevokedSerials, a.SerialPath, a.StdinTimeout = "/r", "/s", 3
				a.Raw["revoked_serials"], a.Raw["dispatcher_serial_path"], a.Raw["stdin_timeout"] = "/r", "/s", "3"
			},
		},
		{
			name:    "invalid stdin_timeout warns and keeps the default",
			content: agentIdentity + "stdin_timeout = 10s\n",
			edit:    func(a *Agent) { a.Raw["stdin_timeout"] = "10s" },
			warns:   []Warning{{Key: "stdin_timeout", Msg: "%s line 5: '10s' is not a whole number - using default 10"}},
		},
		{
			name:    "max_output",
			content: agentIdentity + "max_output = 65536\n",
			edit:    func(a *Agent) { a.MaxOutput, a.Raw["max_output"] = 65536, "65536" },
		},
		{
			name:    "max_output of 0 warns and keeps the default",
			content: agentIdentity + "max_output = 0\n",
			edit:    func(a *Agent) { a.Raw["max_output"] = "0" },
			warns:   []Warning{{Key: "max_output", Msg: "%s line 5: '0' is not a byte count above 0 - using default 5242880"}},
		},
		{
			name:    "script_dirs: empty items dropped, trailing slashes kept",
			content: agentIdentity + "script_dirs = /opt/a::/usr/b/:\n",
			edit: func(a *Agent) {
				a.ScriptDirs = []string{"/opt/a", "/usr/b/"}
				a.Raw["script_dirs"] = "/opt/a::/usr/b/:"
			},
		},
		{
			name:    "script_dirs with no directory is an empty, non-nil restriction",
			content: agentIdentity + "script_dirs = ::\n",
			edit: func(a *Agent) {
				a.ScriptDirs = []string{}
				a.Raw["script_dirs"] = "::"
			},
			warns: []Warning{{Key: "script_dirs", Msg: "%s line 5: no directory listed - every script will be refused"}},
		},
		{
			name:    "allowed_ips: trimmed, empties dropped, prefixes 8/16/24 only",
			content: agentIdentity + "allowed_ips = 192.168.1.10 , ,10.0.0.0/8,172.16.0.0/16, 10.1.2.0/24,10.0.0.0/32,10.0.0.0/,10.0.0.0/x,10.0.0.0/8/8,10.0.0.0/008, fe80::1,host\n",
			edit: func(a *Agent) {
				a.AllowedIPs = []string{"192.168.1.10", "10.0.0.0/8", "172.16.0.0/16", "10.1.2.0/24", "10.0.0.0/8", "fe80::1", "host"}
				a.Raw["allowed_ips"] = "192.168.1.10 , ,10.0.0.0/8,172.16.0.0/16, 10.1.2.0/24,10.0.0.0/32,10.0.0.0/,10.0.0.0/x,10.0.0.0/8/8,10.0.0.0/008, fe80::1,host"
			},
			warns: []Warning{
				{Entry: "10.0.0.0/32", Msg: "unsupported prefix length"},
				{Entry: "10.0.0.0/", Msg: "unsupported prefix length"},
				{Entry: "10.0.0.0/x", Msg: "unsupported prefix length"},
				{Entry: "10.0.0.0/8/8", Msg: "unsupported prefix length"},
			},
		},
		{
			name:    "allowed_ips with nothing valid disables the check",
			content: agentIdentity + "allowed_ips = 10.0.0.0/12, ,\n",
			edit:    func(a *Agent) { a.Raw["allowed_ips"] = "10.0.0.0/12, ," },
			warns:   []Warning{{Entry: "10.0.0.0/12", Msg: "unsupported prefix length"}},
		},
		{
			name:    "rate specs",
			content: agentIdentity + "rate_limit_volume = 20/30/40\nrate_limit_probe = 0/0/0\n",
			edit: func(a *Agent) {
				a.RateVolume, a.RateProbe = RateSpec{20, 30, 40}, RateSpec{0, 0, 0}
				a.Raw["rate_limit_volume"], a.Raw["rate_limit_probe"] = "20/30/40", "0/0/0"
			},
		},
		{
			name:    "rate spec 0 is unset, without a warning",
			content: agentIdentity + "rate_limit_volume = 0\nrate_limit_probe = 0\n",
			edit:    func(a *Agent) { a.Raw["rate_limit_volume"], a.Raw["rate_limit_probe"] = "0", "0" },
		},
		{
			name:    "rate spec leading zeros",
			content: agentIdentity + "rate_limit_probe = 007/060/0\n",
			edit: func(a *Agent) {
				a.RateProbe = RateSpec{7, 60, 0}
				a.Raw["rate_limit_probe"] = "007/060/0"
			},
		},
	}
	for _, bad := range []string{"00", "10/60", "10/60/", "10//300", "10/60/300/5", "a/b/c", "-1/60/300", "10 /60/300", "1/2/99999999999999999999", "10/60/3e2"} {
		tests = append(tests, struct {
			name    string
			content string
			edit    func(a *Agent)
			warns   []Warning
		}{
			name:    "bad rate spec " + bad,
			content: agentIdentity + "rate_limit_volume = " + bad + "\n",
			edit:    func(a *Agent) { a.Raw["rate_limit_volume"] = bad },
			warns:   []Warning{{Key: "rate_limit_volume", Msg: "invalid format, expected limit/window/block - using defaults"}},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConf(t, "agent.conf", tt.content)
			want := defaultAgent(path, p)
			if tt.edit != nil {
				tt.edit(want)
			}
			var wantWarns []Warning
			for _, w := range tt.warns {
				if w.Key != "" && w.Key != "rate_limit_volume" {
					w.Msg = fmt.Sprintf(w.Msg, path)
				}
				wantWarns = append(wantWarns, w)
			}
			got, warns, err := LoadAgent(path, p)
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

func TestRateLimitDisable(t *testing.T) {
	for value, want := range map[string]bool{
		"1": true, "1abc": true, "y": true, "yes": true, "Y": true, "YES": true,
		"true": false, "on": false, "0": false, "no": false, "disable": false, " 1": true,
	} {
		path := writeConf(t, "agent.conf", agentIdentity+"rate_limit_disable = "+value+"\n")
		a, _, err := LoadAgent(path, paths.Paths{})
		if err != nil {
			t.Fatal(err)
		}
		if a.RateLimitDisable != want {
			t.Errorf("rate_limit_disable = %q: got %v, want %v", value, a.RateLimitDisable, want)
		}
	}
}

func TestLoadAgentMalformedLines(t *testing.T) {
	for _, line := range []string{
		"this is bad",
		"key =",
		"key=",
		"key =   # only a comment after it is still a value",
		"= value",
		"-key = value",
		"a.b = c",
		"key value",
		"[tags",
		"tags]",
		"[my-tags]",
		"[]",
		"[tags] env = prod",
		"[ tags ]",
		"key: value",
		"\u00e9t\u00e9 = summer",
	} {
		t.Run(line, func(t *testing.T) {
			content := agentIdentity + "\n# fine\n" + line + "\n"
			path := writeConf(t, "agent.conf", content)
			if line == "key =   # only a comment after it is still a value" {
				// Not malformed: the value is "# only a comment ...", as upstream.
				a, _, err := LoadAgent(path, paths.Paths{})
				if err != nil || a.Raw["key"] != "# only a comment after it is still a value" {
					t.Fatalf("got %v, %v", a, err)
				}
				return
			}
			_, _, err := LoadAgent(path, paths.Paths{})
			want := fmt.Sprintf("Malformed config line in '%s' (line 7): %s", path, line)
			if err == nil || err.Error() != want {
				t.Errorf("err = %v\nwant  %s", err, want)
			}
		})
	}
}

func TestLoadAgentErrors(t *testing.T) {
	tests := []struct {
		name, content, want string // want has %s for the path
	}{
		{"empty file", "", "Missing required config key 'port' in '%s'"},
		{"missing cert", "port = 1\nkey = /k\nca = /c\n", "Missing required config key 'cert' in '%s'"},
		{"missing key", "port = 1\ncert = /c\nca = /c\n", "Missing required config key 'key' in '%s'"},
		{"missing ca", "port = 1\ncert = /c\nkey = /k\n", "Missing required config key 'ca' in '%s'"},
		{"keys under [tags] are not top-level", "[tags]\nport = 1\ncert = /c\nkey = /k\nca = /c\n", "Missing required config key 'port' in '%s'"},
		{"malformed line beats missing keys", "port = 1\nbad line\n", "Malformed config line in '%s' (line 2): bad line"},
		{"port not numeric", "cert = /c\nkey = /k\nca = /c\nport = 74x3\n", "port must be numeric in '%s' (line 4): 74x3"},
		{"port negative", "cert = /c\nkey = /k\nca = /c\nport = -1\n", "port must be numeric in '%s' (line 4): -1"},
		{"port plus sign", "cert = /c\nkey = /k\nca = /c\nport = +1\n", "port must be numeric in '%s' (line 4): +1"},
		{"port out of range", "cert = /c\nkey = /k\nca = /c\nport = 65536\n", "port must be 0-65535 in '%s' (line 4): 65536"},
		{"port huge", "cert = /c\nkey = /k\nca = /c\nport = 99999999999999999999999\n", "port must be 0-65535 in '%s' (line 4): 99999999999999999999999"},
		{"auth_hook missing", agentIdentity + "auth_hook = /nonexistent/hook\n", "auth_hook '/nonexistent/hook' is not executable in '%s' (line 5): no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConf(t, "agent.conf", tt.content)
			_, _, err := LoadAgent(path, paths.Paths{})
			if err == nil {
				t.Fatal("want an error")
			}
			if diff := cmp.Diff(fmt.Sprintf(tt.want, path), err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadAgentAuthHook(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exe := write("hook", 0755)
	plain := write("plain", 0644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	subdir := filepath.Join(dir, "subdir")
	if err := os.Mkdir(subdir, 0755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		hook    string
		wantErr string // "" = accepted
	}{
		{exe, ""},
		{link, ""},
		{subdir, "not a regular file"},
		// Even root needs an x bit on a regular file.
		{plain, "no execute permission (permission denied)"},
	}
	for _, tt := range tests {
		path := writeConf(t, "agent.conf", agentIdentity+"auth_hook = "+tt.hook+"\n")
		a, _, err := LoadAgent(path, paths.Paths{})
		if tt.wantErr == "" {
			if err != nil || a.AuthHook != tt.hook {
				t.Errorf("%s: got %v, %v; want accepted", tt.hook, a, err)
			}
			continue
		}
		want := fmt.Sprintf("auth_hook '%s' is not executable in '%s' (line 5): %s", tt.hook, path, tt.wantErr)
		if err == nil || err.Error() != want {
			t.Errorf("err = %v\nwant  %s", err, want)
		}
	}
}

func TestLoadAgentMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.conf")
	_, _, err := LoadAgent(path, paths.Paths{})
	want := "Cannot open config '" + path + "': No such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not unwrap to fs.ErrNotExist")
	}
}
