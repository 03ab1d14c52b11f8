package logx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

// TestJSONFormat: log_format = json makes each event one JSON object with
// the ACTION= line's keys (plus LEVEL), written by zerolog itself.
func TestJSONFormat(t *testing.T) {
	msg, lvl := zerolog.MessageFieldName, zerolog.LevelFieldName
	t.Cleanup(func() { zerolog.MessageFieldName, zerolog.LevelFieldName = msg, lvl })
	t.Setenv("CTRL_EXEC_LOG_FORMAT", "")

	var buf bytes.Buffer
	log := NewWriterFormat("ctrl-exec-dispatcher", &buf, "JSON")
	log.Info().Str("REQID", "a3f9").Str("HOST", "web-1:7443").Int("EXIT", 0).Str("STATUS", "ok").Msg("audit")
	log.Warn().Str("REASON", "say \"hi\"\nnow").Msg("deny")

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var got []map[string]any
	for _, l := range lines {
		_, obj, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("line without prefix: %q", l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Fatalf("%q: %v", obj, err)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{"ACTION": "audit", "LEVEL": "info", "REQID": "a3f9", "HOST": "web-1:7443", "EXIT": float64(0), "STATUS": "ok"},
		{"ACTION": "deny", "LEVEL": "warn", "REASON": "say \"hi\"\nnow"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// The environment wins over the config file's log_format.
	t.Setenv("CTRL_EXEC_LOG_FORMAT", "text")
	buf.Reset()
	text := NewWriterFormat("x", &buf, "json")
	text.Info().Str("K", "v").Msg("a")
	if got := buf.String(); got != "x: ACTION=a K=v\n" {
		t.Errorf("CTRL_EXEC_LOG_FORMAT=text: %q", got)
	}
}

// D-34 in JSON: zerolog's string escaping (\n, \u0007, \u007f …) leaves no
// control byte or DEL raw in the line, so no value can start a line of its
// own, and every value decodes back to what was logged. Pinned here because
// the ACTION= format depends on logx's own escaping for the same promise.
func TestJSONFormatEscapesControls(t *testing.T) {
	msg, lvl := zerolog.MessageFieldName, zerolog.LevelFieldName
	t.Cleanup(func() { zerolog.MessageFieldName, zerolog.LevelFieldName = msg, lvl })
	t.Setenv("CTRL_EXEC_LOG_FORMAT", "")
	var buf bytes.Buffer
	value := "alice\nACTION=forged USER=root\r\t\x00\x07\x1b\x7f caf\u00e9"
	log := NewWriterFormat("x", &buf, "json")
	log.Info().Str("USER", value).Msg("auth")
	line := strings.TrimSuffix(buf.String(), "\n")
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("raw byte %#x in %q", c, line)
		}
	}
	var m map[string]any
	_, obj, _ := strings.Cut(line, ": ")
	if err := json.Unmarshal([]byte(obj), &m); err != nil || m["USER"] != value {
		t.Errorf("USER decodes to %q (%v), want %q", m["USER"], err, value)
	}
}
