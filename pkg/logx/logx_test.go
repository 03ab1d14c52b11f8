package logx

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

func TestLineFormat(t *testing.T) {
	tests := []struct {
		name string
		emit func(l zerolog.Logger)
		want string
	}{
		{"sorted keys, action first", func(l zerolog.Logger) {
			l.Info().Str("SCRIPT", "backup").Str("REQID", "a3f9").Str("PEER", "10.0.1.5").Int("EXIT", 0).Msg("run")
		}, "ACTION=run EXIT=0 PEER=10.0.1.5 REQID=a3f9 SCRIPT=backup"},
		{"whitespace quoted without escaping", func(l zerolog.Logger) {
			l.Warn().Str("REASON", `say "hi" now`).Msg("deny")
		}, `ACTION=deny REASON="say "hi" now"`},
		{"empty value", func(l zerolog.Logger) {
			l.Info().Str("EXPIRY", "").Msg("unpair")
		}, "ACTION=unpair EXPIRY="},
		{"trailing newline trimmed", func(l zerolog.Logger) {
			l.Error().Str("ERROR", "boom\n").Msg("renew")
		}, "ACTION=renew ERROR=boom"},
		{"no fields", func(l zerolog.Logger) { l.Info().Msg("api-stop") }, "ACTION=api-stop"},
		// D-34: a value cannot forge a line of its own.
		{"newline in a value is escaped", func(l zerolog.Logger) {
			l.Info().Str("USER", "alice\nACTION=forged USER=root").Str("REQID", "r1\r\n").Msg("auth")
		}, `ACTION=auth REQID="r1\r" USER="alice\nACTION=forged USER=root"`},
		{"tab, other C0 and DEL as escapes", func(l zerolog.Logger) {
			l.Info().Str("A", "x\ty").Str("B", "bell\x07del\x7fnul\x00esc\x1b").Str("C", "v\vf\f").Msg("t")
		}, `ACTION=t A="x\ty" B=bell\x07del\x7fnul\x00esc\x1b C="v\x0bf\x0c"`},
		{"other bytes as upstream", func(l zerolog.Logger) {
			l.Info().Str("A", `back\slash "q" café`).Msg("t")
		}, `ACTION=t A="back\slash "q" café"`},
		{"the action too", func(l zerolog.Logger) { l.Info().Msg("run\nACTION=x") }, `ACTION="run\nACTION=x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.emit(NewWriter("ctrl-exec-agent", &buf))
			got := strings.TrimSuffix(buf.String(), "\n")
			_, line, _ := strings.Cut(got, ": ")
			if diff := cmp.Diff(tt.want, line); diff != "" {
				t.Errorf("line mismatch (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(got, "ctrl-exec-agent[") {
				t.Errorf("prefix missing: %q", got)
			}
		})
	}
}

func TestFileSinkFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	t.Setenv("CTRL_EXEC_LOG", p)
	l := New(IdentDispatcher, false)
	l.Info().Int("PORT", 7444).Msg("pairing-mode-start")
	l.Info().Msg("pairing-mode-stop")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], ": ACTION=pairing-mode-start PORT=7444") {
		t.Errorf("log file = %q", b)
	}
}

func BenchmarkFormat(b *testing.B) {
	var buf bytes.Buffer
	l := NewWriter("x", &buf)
	for i := 0; i < b.N; i++ {
		buf.Reset()
		l.Info().Str("SCRIPT", "backup").Str("PEER", "10.0.0.1").Str("REQID", "a3f9b2c10001dead").Int("EXIT", 0).Msg("run")
	}
}
