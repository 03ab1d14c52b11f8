package ctrlexec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// writeJSONLine writes v as compact JSON (no HTML escaping) and a newline.
func writeJSONLine(w io.Writer, v any) error {
	b, err := wire.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// resultsEnvelope is the --json output of run and ping: {"ok":1,"results":[…]}.
type resultsEnvelope[R any] struct {
	OK      int `json:"ok"`
	Results []R `json:"results"`
}

func writeResultsJSON[R any](w io.Writer, results []R) error {
	if results == nil {
		results = []R{}
	}
	return writeJSONLine(w, resultsEnvelope[R]{OK: 1, Results: results})
}

// writeRunText prints run results as upstream does (§3.3):
//
//	==> <host>  [<OK|FAIL>  exit:<exit>  <rtt>  req:<reqid>]
//	    ERROR: <error>
//	<stdout>
//	    STDERR: <stderr>
//
// With showStatus (a fleet option was given, or rerun) the header ends
// "  status:<status>]"; without, the bytes are upstream's.
func writeRunText(w io.Writer, results []dispatch.RunResult, showStatus bool) error {
	var b bytes.Buffer
	for _, r := range results {
		host := "?"
		if r.Defined("host") {
			host = r.Str("host")
		}
		exit, ok := r.Exit()
		if !ok {
			exit = -1
		}
		status := "FAIL"
		if exit == 0 {
			status = "OK"
		}
		fmt.Fprintf(&b, "==> %s  [%s  exit:%d  %s  req:%s", host, status, exit, r.Str("rtt"), r.Str("reqid"))
		if showStatus {
			fmt.Fprintf(&b, "  status:%s", r.Str("status"))
		}
		b.WriteString("]\n")
		if msg := r.Str("error"); msg != "" {
			fmt.Fprintf(&b, "    ERROR: %s\n", msg)
		}
		if out := r.Str("stdout"); hasNonSpace(out) {
			b.WriteString(out)
			if !strings.HasSuffix(out, "\n") {
				b.WriteByte('\n')
			}
		}
		if errOut := r.Str("stderr"); hasNonSpace(errOut) {
			fmt.Fprintf(&b, "    STDERR: %s\n", errOut)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// hasNonSpace is Perl's /\S/ on a character string.
func hasNonSpace(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) }) >= 0
}

const pingRow = "%-30s  %-8s  %-8s  %-28s  %s\n"

// writePingTable prints ping results as a table (§3.4); a failed host's
// error text is not shown (use --json for it).
func writePingTable(w io.Writer, results []dispatch.PingResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, pingRow, "HOST", "STATUS", "RTT", "CERT EXPIRY", "VERSION")
	b.WriteString(strings.Repeat("-", 85) + "\n")
	for _, r := range results {
		fmt.Fprintf(&b, pingRow, orDefault(r.Object, "host", "?"), orDefault(r.Object, "status", "error"),
			orDefault(r.Object, "rtt", "?"), orDefault(r.Object, "expiry", "?"), orDefault(r.Object, "version", "?"))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// orDefault is Perl's `$r->{key} // $def`.
func orDefault(o wire.Object, key, def string) string {
	if o.Defined(key) {
		return o.Str(key)
	}
	return def
}

// writeDeniedJSON is the --json auth denial: {"ok":0,"error":<reason>,"code":<n>}.
func writeDeniedJSON(w io.Writer, d authhook.Decision) error {
	return writeJSONLine(w, struct {
		OK    int    `json:"ok"`
		Error string `json:"error"`
		Code  int    `json:"code"`
	}{0, d.Reason, d.Code})
}

// writeLockedJSON is the --json lock conflict:
// {"ok":0,"error":"locked","code":4,"conflicts":["host:script",…]}.
func writeLockedJSON(w io.Writer, conflicts []string) error {
	return writeJSONLine(w, struct {
		OK        int      `json:"ok"`
		Error     string   `json:"error"`
		Code      int      `json:"code"`
		Conflicts []string `json:"conflicts"`
	}{0, "locked", lockConflictCode, conflicts})
}

// writeLocksJSON is list-locks --json: {"ok":1,"locks":[…]}, [] when none (D-5).
func writeLocksJSON(w io.Writer, held []locks.Lock) error {
	if held == nil {
		held = []locks.Lock{}
	}
	return writeJSONLine(w, struct {
		OK    int          `json:"ok"`
		Locks []locks.Lock `json:"locks"`
	}{1, held})
}

func writeLocksText(w io.Writer, held []locks.Lock) error {
	var b bytes.Buffer
	if len(held) == 0 {
		b.WriteString("No locks currently held.\n")
	} else {
		fmt.Fprintf(&b, "%-30s  %s\n", "HOST", "SCRIPT")
		b.WriteString(strings.Repeat("-", 50) + "\n")
		for _, l := range held {
			fmt.Fprintf(&b, "%-30s  %s\n", l.Host, l.Script)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// progressLine is the live "[done/total] failed:N" counter drawn on a
// terminal's stderr while a fan-out runs. Never on stdout, never when stderr
// is a pipe or file, never for a handful of hosts.
type progressLine struct {
	w     io.Writer
	width int // characters last drawn, to blank them out
}

// progressMinHosts: at or below this many hosts the answer comes quickly
// and a counter would only flicker.
const progressMinHosts = 4

// newProgressLine returns nil (a no-op) unless w is a terminal and total > 4.
func newProgressLine(w io.Writer, total int) *progressLine {
	if total <= progressMinHosts || !isTerminal(w) {
		return nil
	}
	return &progressLine{w: w}
}

func (p *progressLine) update(done, failed, total int) {
	if p == nil {
		return
	}
	s := fmt.Sprintf("[%d/%d] failed:%d", done, total, failed)
	pad := ""
	if n := p.width - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width = len(s)
	fmt.Fprintf(p.w, "\r%s%s", s, pad)
}

// clear blanks the counter and leaves the cursor at the start of the line.
func (p *progressLine) clear() {
	if p == nil || p.width == 0 {
		return
	}
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
	p.width = 0
}

// isTerminal reports whether w is an open terminal (TCGETS succeeds on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
