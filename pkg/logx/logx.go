// Package logx turns zerolog events into ctrl-exec's syslog lines (SPEC §17):
// the event message is the ACTION, every field follows sorted by key, and a
// value containing whitespace is wrapped in double quotes. Control characters
// in a value are escaped (D-34: "\n", "\r", "\t", other C0 and DEL as
// "\xNN") so no value can start a line of its own; every other byte, quotes
// and backslashes included, is written as upstream writes it.
//
//	log.Info().Str("SCRIPT", "backup").Int("EXIT", 0).Msg("run")
//	→ ACTION=run EXIT=0 SCRIPT=backup
//
// The sink comes from $CTRL_EXEC_LOG: "syslog" (default), "stderr", or a file
// path. Tokens are never passed to a logger.
package logx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// Idents per role (SPEC §1.1). Log pipelines filter on these.
const (
	IdentDispatcher = "ctrl-exec-dispatcher"
	IdentAgent      = "ctrl-exec-agent"
	IdentAPI        = "ctrl-exec-api"
)

// New returns the process logger for ident. Daemons fall back to stderr when
// syslog is unreachable; one-shot commands then log nothing (D-28).
func New(ident string, daemon bool) zerolog.Logger {
	return NewFormat(ident, daemon, "")
}

// NewFormat is New with the event format: FormatJSON, or anything else for
// ACTION= lines. $CTRL_EXEC_LOG_FORMAT, when set, wins over format (the
// log_format of a config file).
func NewFormat(ident string, daemon bool, format string) zerolog.Logger {
	asJSON := useJSON(format)
	newLogger := func(s sink) zerolog.Logger { return newFormatLogger(s, asJSON) }
	sink := os.Getenv("CTRL_EXEC_LOG")
	switch sink {
	case "", "syslog":
		if w, err := syslog.Dial("", "", syslog.LOG_DAEMON|syslog.LOG_INFO, ident); err == nil {
			return newLogger(&syslogSink{w: w})
		}
		if daemon {
			return newLogger(&lineSink{w: os.Stderr, prefix: ident + ": "})
		}
		return zerolog.Nop()
	case "stderr":
		return newLogger(&lineSink{w: os.Stderr, prefix: ident + ": "})
	default:
		f, err := os.OpenFile(sink, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0640)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: cannot open log file '%s': %v - logging to stderr\n", ident, sink, err)
			return newLogger(&lineSink{w: os.Stderr, prefix: ident + ": "})
		}
		return newLogger(&lineSink{w: f, prefix: fmt.Sprintf("%s[%d]: ", ident, os.Getpid())})
	}
}

// NewWriter logs "ident[pid]: <line>" to w; for tests and embedding.
func NewWriter(ident string, w io.Writer) zerolog.Logger {
	return newLogger(&lineSink{w: w, prefix: fmt.Sprintf("%s[%d]: ", ident, os.Getpid())})
}

func newLogger(s sink) zerolog.Logger { return newFormatLogger(s, false) }

func newFormatLogger(s sink, asJSON bool) zerolog.Logger {
	return zerolog.New(&eventWriter{sink: s, json: asJSON}).Level(zerolog.InfoLevel)
}

type sink interface {
	emit(level zerolog.Level, line string) error
}

// eventWriter receives zerolog's JSON events and renders them as §17 lines.
type eventWriter struct {
	sink sink
	json bool // pass zerolog's JSON object through (json.go)
}

func (e *eventWriter) Write(p []byte) (int, error) {
	return e.WriteLevel(zerolog.InfoLevel, p)
}

func (e *eventWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if e.json {
		return jsonLine(e.sink, level, p)
	}
	line, err := Format(p)
	if err != nil {
		return 0, err
	}
	if err := e.sink.emit(level, line); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Format renders one zerolog JSON event as an ACTION= line.
func Format(event []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return "", fmt.Errorf("logx: bad event: %w", err)
	}
	action := fields[zerolog.MessageFieldName]
	delete(fields, zerolog.MessageFieldName)
	delete(fields, zerolog.LevelFieldName)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("ACTION=")
	b.WriteString(value(action))
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(value(fields[k]))
	}
	return b.String(), nil
}

func value(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = strings.TrimSuffix(x, "\n")
	case json.Number, bool:
		s, _ := perltext.Scalar(x)
		return s
	default:
		b, _ := json.Marshal(x)
		s = string(b)
	}
	// Quote on the raw value, as upstream does, then escape.
	if perltext.ContainsSpace(s) {
		return `"` + escapeControls(s) + `"`
	}
	return escapeControls(s)
}

// escapeControls is D-34: "\n", "\r", "\t" for those three, "\xNN" for
// the other C0 controls and DEL; everything else unchanged.
func escapeControls(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
	if i < 0 {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

type syslogSink struct{ w *syslog.Writer }

func (s *syslogSink) emit(level zerolog.Level, line string) error {
	switch {
	case level >= zerolog.ErrorLevel:
		return s.w.Err(line)
	case level == zerolog.WarnLevel:
		return s.w.Warning(line)
	default:
		return s.w.Info(line)
	}
}

type lineSink struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (s *lineSink) emit(_ zerolog.Level, line string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := io.WriteString(s.w, s.prefix+line+"\n")
	return err
}
