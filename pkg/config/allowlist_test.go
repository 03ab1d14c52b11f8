package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadAllowlist(t *testing.T) {
	tests := []struct {
		name    string
		content string
		dirs    []string
		want    Allowlist
		warns   []string
	}{
		{
			name:    "entries, comments and blanks",
			content: "# comment\n  # indented comment\n\n \t\nbackup-mysql = /opt/scripts/backup.sh\n  rotate_logs=/opt/scripts/rotate.sh  \n",
			want:    Allowlist{"backup-mysql": "/opt/scripts/backup.sh", "rotate_logs": "/opt/scripts/rotate.sh"},
		},
		{
			name:    "empty file",
			content: "",
			want:    Allowlist{},
		},
		{
			name:    "CRLF endings",
			content: "a = /x/a\r\n\r\n",
			want:    Allowlist{"a": "/x/a"},
		},
		{
			name:    "last wins; a later skipped duplicate keeps the earlier entry",
			content: "a = /x/1\na = /x/2\nb = /y/1\nb = relative\n",
			want:    Allowlist{"a": "/x/2", "b": "/y/1"},
			warns:   []string{"Allowlist: skipping 'b' - path must be absolute: relative"},
		},
		{
			name: "malformed lines warn and are skipped",
			content: "good = /abs/path.sh\nthis line is junk!!\nname = /path with space\nname =\n= /x\n" +
				"a.b = /x\nname = /x # comment\n[section]\n",
			want: Allowlist{"good": "/abs/path.sh"},
			warns: []string{
				"Allowlist: skipping malformed line: this line is junk!!",
				"Allowlist: skipping malformed line: name = /path with space",
				"Allowlist: skipping malformed line: name =",
				"Allowlist: skipping malformed line: = /x",
				"Allowlist: skipping malformed line: a.b = /x",
				"Allowlist: skipping malformed line: name = /x # comment",
				"Allowlist: skipping malformed line: [section]",
			},
		},
		{
			name:    "quotes and # inside a path are kept",
			content: "q = /opt/\"x\"#1\n",
			want:    Allowlist{"q": "/opt/\"x\"#1"},
		},
		{
			name:    "relative paths are skipped",
			content: "bad-script = relative/path.sh\ngood = /abs/path.sh\ntilde = ~/x\n",
			want:    Allowlist{"good": "/abs/path.sh"},
			warns: []string{
				"Allowlist: skipping 'bad-script' - path must be absolute: relative/path.sh",
				"Allowlist: skipping 'tilde' - path must be absolute: ~/x",
			},
		},
		{
			name:    "script_dirs filter at load",
			content: "backup = /opt/scripts/backup.sh\nbad = /tmp/evil.sh\nsibling = /opt/scripts-evil/x\nb = /usr/lib/s/b.sh\ndir = /opt/scripts\n",
			dirs:    []string{"/opt/scripts", "/usr/lib/s//"},
			want:    Allowlist{"backup": "/opt/scripts/backup.sh", "b": "/usr/lib/s/b.sh"},
			warns: []string{
				"Allowlist: skipping 'bad' - path not in approved script_dirs: /tmp/evil.sh",
				"Allowlist: skipping 'sibling' - path not in approved script_dirs: /opt/scripts-evil/x",
				"Allowlist: skipping 'dir' - path not in approved script_dirs: /opt/scripts",
			},
		},
		{
			name:    "relative check comes before the script_dirs check",
			content: "r = opt/scripts/x\n",
			dirs:    []string{"/opt/scripts"},
			want:    Allowlist{},
			warns:   []string{"Allowlist: skipping 'r' - path must be absolute: opt/scripts/x"},
		},
		{
			name:    "empty non-nil script_dirs refuses everything",
			content: "a = /opt/a\n",
			dirs:    []string{},
			want:    Allowlist{},
			warns:   []string{"Allowlist: skipping 'a' - path not in approved script_dirs: /opt/a"},
		},
		{
			name:    "nil script_dirs means no restriction",
			content: "anywhere = /anywhere/script.sh\n",
			want:    Allowlist{"anywhere": "/anywhere/script.sh"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConf(t, "scripts.conf", tt.content)
			got, warns, err := LoadAllowlist(path, tt.dirs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("allowlist (-want +got):\n%s", diff)
			}
			var msgs []string
			for _, w := range warns {
				if w.Entry == "" || !strings.Contains(w.Msg, w.Entry) {
					t.Errorf("warning %+v does not name its entry", w)
				}
				msgs = append(msgs, w.Msg)
			}
			if diff := cmp.Diff(tt.warns, msgs); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadAllowlistMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scripts.conf")
	_, _, err := LoadAllowlist(path, nil)
	want := "Cannot open allowlist '" + path + "': No such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not unwrap to fs.ErrNotExist")
	}
}

func TestInScriptDirs(t *testing.T) {
	tests := []struct {
		path string
		dirs []string
		want bool
	}{
		{"/opt/s/x.sh", []string{"/opt/s"}, true},
		{"/opt/s/sub/x.sh", []string{"/opt/s"}, true},
		{"/opt/s/x.sh", []string{"/opt/s/"}, true},
		{"/opt/s/x.sh", []string{"/opt/s///"}, true},
		{"/opt/s/x.sh", []string{"/other", "/opt/s"}, true},
		{"/opt/sx/y.sh", []string{"/opt/s"}, false},
		{"/opt/s", []string{"/opt/s"}, false},
		{"/opt/s/", []string{"/opt/s"}, true},
		{"/opt/s/../../etc/x", []string{"/opt/s"}, true}, // a string test: no ".." resolution
		{"/any/thing", []string{"/"}, true},
		{"relative/x", []string{"/"}, false},
		{"/opt/s/x.sh", []string{}, false},
		{"/opt/s/x.sh", nil, false},
	}
	for _, tt := range tests {
		if got := InScriptDirs(tt.path, tt.dirs); got != tt.want {
			t.Errorf("InScriptDirs(%q, %q) = %v, want %v", tt.path, tt.dirs, got, tt.want)
		}
	}
}

func TestValidScriptName(t *testing.T) {
	got := map[string]bool{}
	want := map[string]bool{
		"backup": true, "check-disk": true, "a_b": true, "0": true, "A-Z_09": true, "-": true,
		"": false, "a/b": false, "../x": false, "a b": false, "a.sh": false, "scrïpt": false,
		"name\n": false, "\x00": false, "a\x00": false,
	}
	for name := range want {
		got[name] = ValidScriptName(name)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Every name an allowlist line can hold passes the request-side rule: the
// two spellings of the rule agree.
func FuzzValidScriptName(f *testing.F) {
	for _, seed := range []string{"backup", "a-b_c", "", "a/b", "scrïpt", "x\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		list, _, err := LoadAllowlist(writeConf(t, "scripts.conf", name+" = /opt/s/x\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for entry := range list {
			if !ValidScriptName(entry) {
				t.Errorf("allowlist entry %q fails ValidScriptName", entry)
			}
		}
		if ValidScriptName(name) && list[name] == "" {
			t.Errorf("valid name %q not loaded from an allowlist line", name)
		}
	})
}
