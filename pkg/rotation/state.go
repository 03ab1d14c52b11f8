package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// State is rotation.json (SPEC §7.7): the serial now in use, the one before
// it, and the overlap window during which agents still holding the previous
// serial are brought up to date.
type State struct {
	CurrentSerial  string
	PreviousSerial string
	RotatedAt      string // ISO time
	OverlapExpires string // ISO time
	OverlapDays    int

	// Raw is the file's object as read, every member kept (numbers exactly
	// as written): what serial-status --json prints. Nil for a State not read
	// from a file.
	Raw map[string]any
}

// stateFile is the on-disk form Go writes: overlap_days always a number (B-25).
type stateFile struct {
	CurrentSerial  string `json:"current_serial"`
	PreviousSerial string `json:"previous_serial"`
	RotatedAt      string `json:"rotated_at"`
	OverlapExpires string `json:"overlap_expires"`
	OverlapDays    int    `json:"overlap_days"`
}

// ParseState decodes rotation.json. It must be one JSON object; string
// members may also arrive as numbers and overlap_days as a number or a
// string (upstream writes a string when the value came from ctrl-exec.conf).
func ParseState(data []byte) (*State, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if raw == nil {
		return nil, errors.New("not a JSON object: null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	s := &State{
		CurrentSerial:  text(raw["current_serial"]),
		PreviousSerial: text(raw["previous_serial"]),
		RotatedAt:      text(raw["rotated_at"]),
		OverlapExpires: text(raw["overlap_expires"]),
		Raw:            raw,
	}
	if days := strings.TrimSpace(text(raw["overlap_days"])); days != "" {
		// Perl numifies "30" and "30.0" alike; a fraction is cut off.
		f, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return nil, fmt.Errorf("overlap_days %q is not a number", days)
		}
		s.OverlapDays = int(f)
	}
	return s, nil
}

// text is a scalar member as Perl would print it; "" for absent or null.
func text(v any) string {
	s, _ := perltext.Scalar(v)
	return s
}

// Marshal encodes the state as Go writes rotation.json: compact, overlap_days
// a number.
func (s *State) Marshal() []byte {
	return wire.JSON(stateFile{
		CurrentSerial:  s.CurrentSerial,
		PreviousSerial: s.PreviousSerial,
		RotatedAt:      s.RotatedAt,
		OverlapExpires: s.OverlapExpires,
		OverlapDays:    s.OverlapDays,
	})
}

// JSON is the state object for serial-status --json: the file's members as
// read (so a Perl-written string overlap_days prints as a string, as upstream
// would), or the written form for a state built in memory.
func (s *State) JSON() any {
	if s.Raw != nil {
		return s.Raw
	}
	return json.RawMessage(s.Marshal())
}

// LoadState reads rotation.json. No file means no rotation has happened yet
// (nil, nil). A file that does not parse is logged as rotation-state-corrupt
// and also treated as absent, so a damaged file never stops the loop or
// serial-status; a file that exists but cannot be read is an error.
func LoadState(path string, log zerolog.Logger) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("Cannot read '%s': %w", path, err)
	}
	s, err := ParseState(data)
	if err != nil {
		log.Error().Str("PATH", path).Str("ERROR", err.Error()).
			Str("REASON", "JSON parse failed - rotation state unreadable").Msg("rotation-state-corrupt")
		return nil, nil
	}
	return s, nil
}

// WriteState replaces rotation.json whole (temp file, 0640, rename),
// creating its directory if needed.
func WriteState(path string, s *State) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("Cannot write '%s': %w", path, err)
	}
	if err := atomicfile.Write(path, s.Marshal(), 0o640); err != nil {
		return fmt.Errorf("Cannot write '%s': %w", path, err)
	}
	return nil
}
