package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// The loaders read outside input; whatever the bytes, they must return a
// config or an error, never panic, and a returned config must be coherent.

// fuzzFile returns a writer that puts each input into the same file of a
// per-process temp dir (a fresh t.TempDir per input would dominate the run).
func fuzzFile(f *testing.F, name string) func(t *testing.T, content string) string {
	path := filepath.Join(f.TempDir(), name)
	return func(t *testing.T, content string) string {
		if err := os.WriteFile(path, []byte(content), 0644); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

func FuzzLoadControl(f *testing.F) {
	for _, seed := range []string{
		identity,
		"# ctrl-exec.conf\n" + identity + "auth_hook = /etc/ctrl-exec/auth-hook\napi_auth_default = Allow\n",
		identity + "  read_timeout = 5\nread_timeout = x\ntimeout = 7\napi_port = 99999\n",
		identity + "api_rotation_loop = %(cert)s\ncert_days = 0\napi_max_inflight = 0\n",
		"cert = \"/a b\" # c\r\nkey=/k\r\nca=/c\r\n",
		"=\n==\n\v\f\r\n\x00\xff\n",
		"",
	} {
		f.Add(seed)
	}
	write := fuzzFile(f, "ctrl-exec.conf")
	keyRE := regexp.MustCompile(`^\w+$`)
	f.Fuzz(func(t *testing.T, content string) {
		path := write(t, content)
		c, _, err := LoadControl(path, paths.Paths{})
		if err != nil {
			return
		}
		if c.Cert == "" || c.Key == "" || c.CA == "" {
			t.Errorf("loaded without identity: %+v", c)
		}
		if c.APIAuthDefault != "allow" && c.APIAuthDefault != "deny" {
			t.Errorf("APIAuthDefault = %q", c.APIAuthDefault)
		}
		if c.APIMaxInflight < 1 || c.CertCheckInterval < 1 || c.APIPort > 65535 {
			t.Errorf("out-of-range value kept: %+v", c)
		}
		for k := range c.Raw {
			if !keyRE.MatchString(k) {
				t.Errorf("Raw holds key %q", k)
			}
		}
		if _, _, err := ReadControlOptional(path, paths.Paths{}); err != nil {
			t.Errorf("ReadControlOptional failed where LoadControl did not: %v", err)
		}
	})
}

func FuzzLoadAgent(f *testing.F) {
	for _, seed := range []string{
		agentIdentity,
		agentIdentity + "[tags]\nenv = prod\n[Other]\nx = y\n",
		agentIdentity + "allowed_ips = 10.0.0.0/8, 1.2.3.4/33,,x/08\nscript_dirs = ::/opt/s/\n",
		agentIdentity + "rate_limit_volume = 1/2/3\nrate_limit_probe = 0\nrate_limit_disable = yes\nstdin_timeout = q\n",
		agentIdentity + "auth_hook = /nonexistent\n",
		"port = 7443x\ncert=/c\nkey=/k\nca=/c\n",
		"port = 1\nbad line\n",
		"[tags\n",
		"\r\n \v\n#\n",
		"",
	} {
		f.Add(seed)
	}
	write := fuzzFile(f, "agent.conf")
	f.Fuzz(func(t *testing.T, content string) {
		path := write(t, content)
		a, _, err := LoadAgent(path, paths.Paths{})
		if err != nil {
			return
		}
		if a.Port < 0 || a.Port > 65535 || a.Cert == "" || a.Key == "" || a.CA == "" {
			t.Errorf("incoherent config: %+v", a)
		}
		if a.Tags == nil {
			t.Error("Tags is nil")
		}
		for _, d := range a.ScriptDirs {
			if d == "" {
				t.Error("empty script dir kept")
			}
		}
		for _, e := range a.AllowedIPs {
			if e == "" || e != trimPerlSpace(e) {
				t.Errorf("allowed_ips entry %q", e)
			}
			if _, prefix, ok := strings.Cut(e, "/"); ok && prefix != "8" && prefix != "16" && prefix != "24" {
				t.Errorf("allowed_ips entry %q kept with a bad prefix", e)
			}
		}
	})
}

func FuzzLoadAllowlist(f *testing.F) {
	for _, seed := range []struct{ content, dirs string }{
		{"backup = /opt/scripts/backup.sh\n# c\n\n", ""},
		{"a = relative\nb = /tmp/x\nc = /opt/s/c\n", "/opt/s/:"},
		{"junk line\nname = /with space\n\xff = /x\n", "/"},
		{"a = /x\r\na = /y\n", ":"},
		{"", ""},
	} {
		f.Add(seed.content, seed.dirs)
	}
	write := fuzzFile(f, "scripts.conf")
	nameRE := regexp.MustCompile(`^[\w-]+$`)
	f.Fuzz(func(t *testing.T, content, dirList string) {
		path := write(t, content)
		var dirs []string
		if dirList != "" {
			dirs = splitScriptDirs(dirList)
		}
		list, _, err := LoadAllowlist(path, dirs)
		if err != nil {
			t.Fatalf("an existing file must load: %v", err)
		}
		for name, p := range list {
			if !nameRE.MatchString(name) || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n\v\f") {
				t.Errorf("bad entry %q = %q", name, p)
			}
			if dirs != nil && !InScriptDirs(p, dirs) {
				t.Errorf("entry %q = %q is outside %q", name, p, dirs)
			}
		}
	})
}

// FuzzSplitControlKV holds the hand-written ctrl-exec.conf line rule to the
// upstream regexp it replaces, on any bytes.
func FuzzSplitControlKV(f *testing.F) {
	for _, seed := range []string{
		"cert = /a", "key=/k", "ca=/c\r", "a = b = c", "read_timeout=  5 \t", "k =  ",
		"k =\v", "k=\r", "k =", "k", "=v", "k-x = v", "k x = v", " k = v", "\tk=v",
		"k = \xff\xfe ", "k\x00= v", "k = é ", "__ = _", "9 = 9", "k =  \x85",
	} {
		f.Add(seed)
	}
	re := regexp.MustCompile(controlKVPattern)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.Contains(line, "\n") {
			return // readLines splits on "\n": no line holds one
		}
		key, value, ok := splitControlKV(line)
		m := re.FindStringSubmatch(line)
		if ok != (m != nil) || ok && (key != m[1] || value != m[2]) {
			t.Fatalf("splitControlKV(%q) = %q, %q, %v; the regexp says %q", line, key, value, ok, m)
		}
	})
}
