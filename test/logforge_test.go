package e2e

import (
	"strings"
	"testing"
	"time"
)

// D-34: a value that holds a newline cannot write a log line of its own.
// Each role logs a client-chosen value: the CLI its --username, the API the
// body's username, the agent the request's reqid.
func TestLogValuesCannotForgeLines(t *testing.T) {
	t.Parallel()
	const forged = "ACTION=forged USER=root"
	noForgedLine := func(t *testing.T, r *Root) {
		t.Helper()
		for _, l := range r.LogLines() {
			if strings.HasPrefix(l, "ACTION=forged") {
				t.Errorf("forged log line: %q", l)
			}
		}
	}

	t.Run("cli", func(t *testing.T) {
		t.Parallel()
		r, p := newCLIControl(t)
		a := startFakeAgent(t, p, "agent-1")
		r.MustRun("ctrl-exec", "run", a.target(), "--username", "alice\n"+forged, "hello")
		r.WaitLog(5*time.Second, `ACTION=auth`, `USER="alice\nACTION=forged USER=root"`)
		noForgedLine(t, r)
	})

	t.Run("api", func(t *testing.T) {
		t.Parallel()
		c := newAPIControl(t, apiOptions{allow: true}).start()
		c.call("POST", "/ping", `{"hosts":["127.0.0.1:1"],"username":"bob\r\n`+forged+`\t\u0007"}`).want(t, 200, "")
		c.root.WaitLog(5*time.Second, `ACTION=auth`, `USER="bob\r\nACTION=forged USER=root\t\x07"`)
		noForgedLine(t, c.root)
	})

	t.Run("agent", func(t *testing.T) {
		t.Parallel()
		a := startAgentProc(t, agentOpts{scripts: map[string]string{"ok": "#!/bin/sh\n"}})
		a.run(t, map[string]any{"script": "ok", "reqid": "r1\n" + forged})
		a.root.WaitLog(5*time.Second, `ACTION=run`, `REQID="r1\nACTION=forged USER=root"`)
		noForgedLine(t, a.root)
	})
}
