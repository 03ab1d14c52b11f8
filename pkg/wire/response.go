package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// PhraseTable maps a status code to its reason phrase.
type PhraseTable func(code int) string

// AgentPhrase is the agent's table (§9.2). Every code it does not know,
// 403 included, reads "Error"; Perl clients show "403 Error".
func AgentPhrase(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 413:
		return "Content Too Large"
	case 431:
		return "Request Header Fields Too Large"
	}
	return "Error"
}

// APIPhrase is the API's table (§14.1). 413 and 431 are Go additions (D-20)
// that upstream would have called "Unknown"; they get the standard phrases,
// the same as the agent's.
func APIPhrase(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 409:
		return "Conflict"
	case 413:
		return "Content Too Large"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	}
	return "Unknown"
}

// WriteResponse writes the byte-exact response of §9.2/§14.1 in one write:
//
//	HTTP/1.0 <code> <phrase>\r\nContent-Type: application/json\r\nContent-Length: <n>\r\n\r\n<body>
func WriteResponse(w io.Writer, code int, body []byte, phrases PhraseTable) error {
	var b bytes.Buffer
	b.Grow(96 + len(body))
	b.WriteString("HTTP/1.0 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(phrases(code))
	b.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.Write(body)
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write %d response: %w", code, err)
	}
	return nil
}

// Marshal encodes v as compact JSON without HTML escaping and without a
// trailing newline (§2.3).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// JSON is Marshal for values that cannot fail to encode (maps, structs and
// slices of strings, numbers and bools). It panics otherwise, which is a
// programming error (a channel, a NaN), never an input error.
func JSON(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire.JSON: %v", err))
	}
	return b
}
