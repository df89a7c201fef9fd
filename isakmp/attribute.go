package isakmp

import "fmt"

// Attribute is an ISAKMP data attribute (RFC 2408 §3.3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!A!       Attribute Type        !    AF=0  Attribute Length     !
//	!F!                             !    AF=1  Attribute Value      !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	.                   AF=0  Attribute Value                       .
//	.                   AF=1  Not Transmitted                       .
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The basic form (AF=1, "TV") carries a 16-bit value in the header; the
// variable form (AF=0, "TLV") carries Length octets after it. Type is kept
// without the AF bit; its meaning depends on where the attribute sits
// (IKEAttr, IPsecAttr, KEKAttr, KDAttr, GAPAttr, ...).
type Attribute struct {
	Type  uint16 // attribute type, AF bit cleared
	Basic bool   // AF=1: the value is Value
	Value uint16 // the value of a basic attribute
	Data  []byte // the value of a variable attribute
}

// BasicAttr returns a TV attribute.
func BasicAttr[T ~uint16](t T, v uint16) Attribute {
	return Attribute{Type: uint16(t), Basic: true, Value: v}
}

// VarAttr returns a TLV attribute.
func VarAttr[T ~uint16](t T, data []byte) Attribute { return Attribute{Type: uint16(t), Data: data} }

// IntAttr returns the shortest encoding of an integer-valued attribute: the
// basic form when v fits 16 bits, else a 4- or 8-octet variable form, as
// RFC 2408 §3.3 allows for attributes such as life durations.
func IntAttr[T ~uint16](t T, v uint64) Attribute {
	switch {
	case v <= 0xffff:
		return BasicAttr(t, uint16(v))
	case v <= 0xffffffff:
		return VarAttr(t, appendU32(nil, uint32(v)))
	default:
		return VarAttr(t, appendU32(appendU32(nil, uint32(v>>32)), uint32(v)))
	}
}

// Uint returns an integer attribute's value, from either form. A variable
// value of 1 to 8 octets is read big-endian.
func (a Attribute) Uint() (uint64, error) {
	if a.Basic {
		return uint64(a.Value), nil
	}
	if len(a.Data) == 0 || len(a.Data) > 8 {
		return 0, fmt.Errorf("isakmp: attribute %d: %d-octet value is not an integer", a.Type, len(a.Data))
	}
	var v uint64
	for _, c := range a.Data {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// Len is the encoded length of the attribute.
func (a Attribute) Len() int {
	if a.Basic {
		return 4
	}
	return 4 + len(a.Data)
}

// Append appends the encoded attribute.
func (a Attribute) Append(b []byte) []byte {
	if a.Basic {
		return appendU16(appendU16(b, a.Type|0x8000), a.Value)
	}
	return append(appendU16(appendU16(b, a.Type&0x7fff), uint16(len(a.Data))), a.Data...)
}

func (a Attribute) String() string {
	if a.Basic {
		return fmt.Sprintf("%d=%d", a.Type, a.Value)
	}
	return fmt.Sprintf("%d=%x", a.Type, a.Data)
}

// Attributes is a list of data attributes as it appears in a Transform, a
// SAK, a SAT, a GAP or a key packet.
type Attributes []Attribute

// Find returns the first attribute of type t.
func (as Attributes) Find(t uint16) (Attribute, bool) {
	for _, a := range as {
		if a.Type == t {
			return a, true
		}
	}
	return Attribute{}, false
}

// Len is the encoded length of all attributes.
func (as Attributes) Len() int {
	n := 0
	for _, a := range as {
		n += a.Len()
	}
	return n
}

// Append appends every attribute in order.
func (as Attributes) Append(b []byte) []byte {
	for _, a := range as {
		b = a.Append(b)
	}
	return b
}

// countAttributes counts the attributes whose headers lie within b, so the
// slice is sized once from the octets present (never from a wire count).
func countAttributes(b []byte) int {
	n := 0
	for off := 0; off+4 <= len(b); n++ {
		if b[off]&0x80 != 0 {
			off += 4
		} else {
			off += 4 + (int(b[off+2])<<8 | int(b[off+3]))
		}
	}
	return n
}

// ParseAttributes decodes a run of attributes that fills b exactly. The
// values are copies.
func ParseAttributes(b []byte) (Attributes, error) { return parseAttributes(cloneBytes(b)) }

func parseAttributes(b []byte) (Attributes, error) {
	as := make(Attributes, 0, countAttributes(b))
	r := newReader("attribute", b)
	for r.left() > 0 && r.err == nil {
		t := r.u16()
		v := r.u16()
		if r.err != nil {
			break
		}
		if t&0x8000 != 0 {
			as = append(as, Attribute{Type: t & 0x7fff, Basic: true, Value: v})
			continue
		}
		as = append(as, Attribute{Type: t, Data: r.bytes(int(v))})
	}
	return as, r.err
}
