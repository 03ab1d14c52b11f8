package cliargs

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

var control = Spec{
	Options: []Option{
		{Name: "config", TakesArg: true},
		{Name: "json"},
		{Name: "port", TakesArg: true},
		{Name: "username", TakesArg: true},
		{Name: "token", TakesArg: true},
		{Name: "script", TakesArg: true, ShortName: "s"},
	},
}

var agent = Spec{
	DefaultMode: "serve",
	Options: []Option{
		{Name: "config", TakesArg: true},
		{Name: "dispatcher", TakesArg: true, Alias: "ctrl-exec"},
		{Name: "port", TakesArg: true},
		{Name: "background"},
	},
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		args []string
		want Parsed
	}{
		{"options after positionals", control,
			[]string{"run", "web-01", "--json", "backup", "--port", "9000"},
			Parsed{Options: []string{"--json", "--port=9000"}, Mode: "run", Rest: []string{"web-01", "backup"}}},
		{"dash dash keeps later options as args", control,
			[]string{"run", "h", "s", "--", "--json", "--", "x"},
			Parsed{Mode: "run", Rest: []string{"h", "s", "--", "--json", "--", "x"}}},
		{"single dash, case and prefix", control,
			[]string{"-JS", "ping", "-Config=/x.conf", "h1"},
			Parsed{Options: []string{"--json", "--config=/x.conf"}, Mode: "ping", Rest: []string{"h1"}}},
		{"script option, long and short", control,
			[]string{"run", "web-01", "--script", "logger", "--", "-t", "test", "hello"},
			Parsed{Options: []string{"--script=logger"}, Mode: "run", Rest: []string{"web-01", "--", "-t", "test", "hello"}}},
		{"script option, short", control,
			[]string{"run", "-s", "logger", "web-01", "web-02"},
			Parsed{Options: []string{"--script=logger"}, Mode: "run", Rest: []string{"web-01", "web-02"}}},
		{"unknown option after -- is an argument", control,
			[]string{"run", "h", "s", "--", "--weird"},
			Parsed{Mode: "run", Rest: []string{"h", "s", "--", "--weird"}}},
		{"help after mode", control,
			[]string{"run", "--help"},
			Parsed{Mode: "run", Help: true}},
		{"agent default mode", agent,
			[]string{"--config", "/a.conf"},
			Parsed{Options: []string{"--config=/a.conf"}, Mode: "serve"}},
		{"agent alias", agent,
			[]string{"request-pairing", "--ctrl-exec", "ctl", "--background"},
			Parsed{Options: []string{"--dispatcher=ctl", "--background"}, Mode: "request-pairing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.spec, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--bogus"},
		{"request-pairing", "--dispatcher"},
		{"--background=1"},
	} {
		if _, err := Parse(agent, args); err == nil {
			t.Errorf("Parse(%q): want error", args)
		}
	}
	// The control CLI too: an unknown option is never taken for a host.
	for want, args := range map[string][]string{
		"Unknown option: weird":              {"run", "h", "--weird", "s"},
		"Unknown option: scrip2":             {"run", "h", "--scrip2", "logger"},
		"Unknown option: x":                  {"ping", "-x", "h"},
		"Option script requires an argument": {"run", "h", "--script"},
	} {
		if _, err := Parse(control, args); err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, want %q", args, err, want)
		}
	}
	if _, err := Parse(Spec{Options: []Option{{Name: "port"}, {Name: "pid"}}}, []string{"--p"}); err == nil {
		t.Error("ambiguous prefix: want error")
	}
}

func TestArgv(t *testing.T) {
	p := Parsed{Options: []string{"--json"}, Mode: "run", Rest: []string{"h", "s", "--", "a"}}
	want := []string{"ctrl-exec", "--json", "run", "--", "h", "s", "--", "a"}
	if diff := cmp.Diff(want, p.Argv("ctrl-exec")); diff != "" {
		t.Error(diff)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("run", "--json", "h", "--", "x")
	f.Add("-c=1", "--port", "--", "", "-h")
	f.Fuzz(func(t *testing.T, a, b, c, d, e string) {
		for _, s := range []Spec{control, agent} {
			p, err := Parse(s, []string{a, b, c, d, e})
			if err == nil {
				_ = p.Argv("x")
			}
		}
	})
}
