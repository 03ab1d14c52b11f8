package logx

import (
	"bytes"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
)

// FormatJSON is the log_format (and $CTRL_EXEC_LOG_FORMAT) value that makes
// every event one compact JSON object instead of an ACTION= line:
//
//	{"LEVEL":"info","EXIT":0,"PEER":"10.0.1.5","REQID":"a3f9","SCRIPT":"backup","ACTION":"run"}
//
// The keys are the ACTION= line's, plus LEVEL. zerolog writes the object
// itself; this package only renames its message and level keys, once per
// process, when a JSON logger is made.
const FormatJSON = "json"

func useJSON(format string) bool {
	if env := os.Getenv("CTRL_EXEC_LOG_FORMAT"); env != "" {
		format = env
	}
	if !strings.EqualFold(strings.TrimSpace(format), FormatJSON) {
		return false
	}
	zerolog.MessageFieldName = "ACTION"
	zerolog.LevelFieldName = "LEVEL"
	return true
}

// jsonLine hands zerolog's event to the sink as it is, without its newline.
func jsonLine(s sink, level zerolog.Level, p []byte) (int, error) {
	if err := s.emit(level, string(bytes.TrimSuffix(p, []byte("\n")))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// NewWriterFormat is NewWriter with the event format; for tests.
func NewWriterFormat(ident string, w io.Writer, format string) zerolog.Logger {
	return newFormatLogger(&lineSink{w: w, prefix: ident + ": "}, useJSON(format))
}
