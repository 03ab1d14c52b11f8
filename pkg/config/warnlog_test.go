package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
)

func TestLogWarnings(t *testing.T) {
	var buf bytes.Buffer
	LogWarnings(logx.NewWriter("t", &buf), []Warning{
		{Key: "rate_limit_volume", Msg: "invalid format, expected limit/window/block - using defaults"},
		{Entry: "10.0.0.0/12", Msg: "unsupported prefix length"},
	})
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		_, msg, _ := strings.Cut(l, "]: ")
		got = append(got, msg)
	}
	want := []string{
		`ACTION=config-warn KEY=rate_limit_volume MSG="invalid format, expected limit/window/block - using defaults"`,
		`ACTION=config-warn ENTRY=10.0.0.0/12 MSG="unsupported prefix length"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}
