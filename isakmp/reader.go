package isakmp

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

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return binary.BigEndian.Uint64(s)
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

// reserved consumes n octets that the RFC says MUST be zero.
func (r *reader) reserved(n int, field string) {
	at := r.off
	s := r.take(n)
	if s == nil {
		return
	}
	for _, c := range s {
		if c != 0 {
			r.err = errMalformed(r.what, at, "%s is not zero", field)
			return
		}
	}
}

// fail records a malformation at the current offset unless an error is
// already recorded.
func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = errMalformed(r.what, r.off, format, args...)
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

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// chain walks a run of structures framed by generic payload headers, such as
// the proposals of an SA, the transforms of a proposal or the SAK/GAP/SAT
// payloads of a GDOI SA, starting with type first at the reader's offset.
// allowed vets each Next Payload value; each parses one body.
func (r *reader) chain(first PayloadType, allowed func(PayloadType) bool, each func(t PayloadType, body []byte) error) {
	for t := first; t != PayloadNone && r.err == nil; {
		at := r.off
		next, body, err := splitGenericOf(t, r.b[at:])
		if err == nil && next != PayloadNone && !allowed(next) {
			err = errMalformed(t.String(), 0, "next payload %s is not allowed here", next)
		}
		if err == nil {
			err = each(t, body)
		}
		if err != nil {
			r.err = wrapAt(r.what, at, err)
			return
		}
		r.take(GenericHeaderLen + len(body))
		t = next
	}
}

// appendFramed appends one nested structure with its generic header.
func appendFramed(b []byte, next PayloadType, bodyLen int, body func([]byte) []byte) []byte {
	b = append(b, byte(next), 0)
	b = appendU16(b, uint16(GenericHeaderLen+bodyLen))
	return body(b)
}

// nextOf returns the Next Payload value for element i of n elements that
// are all of type t.
func nextOf(i, n int, t PayloadType) PayloadType {
	if i+1 < n {
		return t
	}
	return PayloadNone
}

func is(t PayloadType) func(PayloadType) bool { return func(x PayloadType) bool { return x == t } }
