package fleet

import (
	"io"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// ContentTypeNDJSON is the media type of a result stream.
const ContentTypeNDJSON = "application/x-ndjson"

// Stream writes newline-delimited JSON: one compact result object per line
// as each host finishes, then one summary line
//
//	{"summary":{"ok":n,"failed":n,…,"total":n,"reqid":R}}
//
// Each line is handed to the writer in one Write, so on an unbuffered file
// (stdout) or a flushing HTTP body it leaves at once. The first write error
// is kept and later lines are dropped.
type Stream struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewStream writes to w; a w with a Flush method is flushed after every line.
func NewStream(w io.Writer) *Stream { return &Stream{w: w} }

// Result writes one result line.
func (s *Stream) Result(o wire.Object) {
	b, err := o.MarshalJSON()
	if err != nil {
		s.fail(err)
		return
	}
	s.line(b)
}

// Summary writes the closing line: counts (keys in order, zeros included),
// the total and the request id.
func (s *Stream) Summary(c Counts, keys []string, reqid string) {
	sum := c.Object(keys)
	sum.Set("reqid", reqid)
	var o wire.Object
	o.Set("summary", sum)
	b, _ := o.MarshalJSON()
	s.line(b)
}

// Error writes a closing line for a call the engine refused as a whole:
// {"error":"<text>"}.
func (s *Stream) Error(err error) {
	var o wire.Object
	o.Set("error", err.Error())
	b, _ := o.MarshalJSON()
	s.line(b)
}

// Err is the first write error.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Stream) line(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		s.err = err
		return
	}
	if f, ok := s.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			s.err = err
		}
	}
}

func (s *Stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}
