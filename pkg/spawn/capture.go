package spawn

import (
	"strconv"
	"unicode/utf8"
)

// CutMarker is what replaces the middle of an oversized stream: a line of
// its own that says how many bytes were dropped, e.g.
//
//	\n[ctrl-exec: 123456 bytes cut]\n
func CutMarker(n int64) string {
	return "\n[ctrl-exec: " + strconv.FormatInt(n, 10) + " bytes cut]\n"
}

// capture is an io.Writer that keeps at most limit bytes of a stream: the
// first half as it comes, the last half in a ring. Memory is bounded by
// limit whatever the child prints. limit 0 keeps everything.
type capture struct {
	limit int
	head  []byte // the first limit-limit/2 bytes
	ring  []byte // the latest limit/2 bytes once head is full
	next  int    // where the ring's next byte goes
	total int64  // bytes written
}

func (c *capture) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	if c.limit <= 0 {
		c.head = append(c.head, p...)
		return n, nil
	}
	if room := c.limit - c.limit/2 - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	size := c.limit / 2
	if len(p) == 0 || size == 0 {
		return n, nil
	}
	if c.ring == nil {
		c.ring = make([]byte, 0, size)
	}
	if len(c.ring) < size { // filling for the first time
		k := min(size-len(c.ring), len(p))
		c.ring = append(c.ring, p[:k]...)
		p = p[k:]
	}
	if len(p) > size {
		p = p[len(p)-size:]
	}
	for len(p) > 0 {
		k := copy(c.ring[c.next:], p)
		c.next = (c.next + k) % size
		p = p[k:]
	}
	return n, nil
}

// bytes returns what was kept and how many bytes were cut from the middle.
// When bytes were cut, the head and tail are trimmed to whole UTF-8
// sequences (the trimmed bytes count as cut) and CutMarker joins them.
func (c *capture) bytes() ([]byte, int64) {
	kept := int64(len(c.head) + len(c.ring))
	if c.total == kept {
		// The ring, if used, never wrapped: head and ring are in order.
		if len(c.ring) == 0 {
			return c.head, 0
		}
		return append(c.head, c.ring...), 0
	}
	tail := append(c.ring[c.next:len(c.ring):len(c.ring)], c.ring[:c.next]...)
	head := trimPartialRuneEnd(c.head)
	tail = trimPartialRuneStart(tail)
	cut := c.total - int64(len(head)) - int64(len(tail))
	marker := CutMarker(cut)
	out := make([]byte, 0, len(head)+len(marker)+len(tail))
	out = append(append(append(out, head...), marker...), tail...)
	return out, cut
}

// trimPartialRuneEnd drops an incomplete UTF-8 sequence at the end of b.
func trimPartialRuneEnd(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// trimPartialRuneStart drops the continuation bytes of a sequence whose
// start was cut off.
func trimPartialRuneStart(b []byte) []byte {
	for i := 0; i < len(b) && i < utf8.UTFMax; i++ {
		if utf8.RuneStart(b[i]) {
			return b[i:]
		}
	}
	return b
}
