package ikev2

import "encoding/binary"

// reader is a bounds-checked cursor over one structure's octets. The first
// failure is sticky: later reads return zero values and err keeps the first
// error, so parsers read a fixed part straight through and check once.
type reader struct {
	what string
	b    []byte
	off  int
	err  error
}

func newReader(what string, b []byte) *reader { return &reader{what: what, b: b} }

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.err = errShort(r.what, r.off, n, r.left())
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8() uint8 {
	if s := r.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

// bytes returns the next n octets (see own); n is checked against what is
// present first, and nothing is allocated.
func (r *reader) bytes(n int) []byte {
	s := r.take(n)
	if s == nil {
		return nil
	}
	return own(s)
}

// rest returns everything left.
func (r *reader) rest() []byte { return r.bytes(r.left()) }

// skip consumes n RESERVED octets: sent as zero, ignored on receipt
// (RFC 7296 §3).
func (r *reader) skip(n int) { r.take(n) }

// fail records a malformation at the current offset unless an error is
// already recorded.
func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = errMalformed(r.what, r.off, format, args...)
	}
}

// failAt records a malformation at offset at unless an error is already
// recorded.
func (r *reader) failAt(at int, format string, args ...any) {
	if r.err == nil {
		r.err = errMalformed(r.what, at, format, args...)
	}
}

// done reports the sticky error, or a malformation if octets are left over
// that the structure does not account for.
func (r *reader) done() error {
	if r.err == nil && r.left() != 0 {
		r.err = errMalformed(r.what, r.off, "%d unexpected trailing octets", r.left())
	}
	return r.err
}

// sub reads a substructure whose 16-bit length, counting the whole
// substructure, sits at offset lenAt of it: it returns the substructure's
// octets (length checked against min and against what is present) and
// advances past it.
func (r *reader) sub(lenAt, min int) []byte {
	if r.err != nil {
		return nil
	}
	at := r.off
	if r.left() < lenAt+2 {
		r.err = errShort(r.what, at, lenAt+2, r.left())
		return nil
	}
	n := int(binary.BigEndian.Uint16(r.b[at+lenAt:]))
	if n < min {
		r.err = errMalformed(r.what, at+lenAt, "length %d is shorter than the fixed part (%d)", n, min)
		return nil
	}
	return r.take(n)
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func cloneBytes(b []byte) []byte { return append([]byte{}, b...) }

// own returns b with its capacity cut to its length. Parsers work on a
// private copy of the caller's input (made once by the exported entry
// points), so a field can alias that copy; the cut keeps an append to one
// field from overwriting the next.
func own(b []byte) []byte { return b[:len(b):len(b)] }
