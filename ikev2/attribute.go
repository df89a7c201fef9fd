package ikev2

import "fmt"

// MaxAttributes is the most data attributes one transform, policy or key
// bag may hold.
const MaxAttributes = 64

// Attribute is a data attribute (RFC 7296 §3.3.5, Figure 9), the format the
// transform attributes and every RFC 9838 attribute list share:
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|A|       Attribute Type        |    AF=0  Attribute Length     |
//	|F|                             |    AF=1  Attribute Value      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                   AF=0  Attribute Value                       |
//	|                   AF=1  Not Transmitted                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The basic form (AF=1, TV) carries a 16-bit value in the header; the
// variable form (AF=0, TLV) carries Length octets after it. Type is kept
// without the AF bit; its meaning depends on the registry of the place the
// attribute sits in (transform, GSA policy, GWP policy, key bag).
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

// Uint returns an integer attribute's value, from either form. A variable
// value of 1 to 8 octets is read big-endian.
func (a Attribute) Uint() (uint64, error) {
	if a.Basic {
		return uint64(a.Value), nil
	}
	if len(a.Data) == 0 || len(a.Data) > 8 {
		return 0, fmt.Errorf("ikev2: attribute %d: %d-octet value is not an integer", a.Type, len(a.Data))
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

// Attributes is a list of data attributes.
type Attributes []Attribute

// Len is the encoded length of the list.
func (as Attributes) Len() int {
	n := 0
	for _, a := range as {
		n += a.Len()
	}
	return n
}

// Append appends the encoded list.
func (as Attributes) Append(b []byte) []byte {
	for _, a := range as {
		b = a.Append(b)
	}
	return b
}

// Get returns the first attribute of type t.
func (as Attributes) Get(t uint16) (Attribute, bool) {
	for _, a := range as {
		if a.Type == t {
			return a, true
		}
	}
	return Attribute{}, false
}

// parseAttributes decodes attributes filling b exactly, at most
// MaxAttributes of them.
func parseAttributes(what string, b []byte) (Attributes, error) {
	r := newReader(what, b)
	var as Attributes
	for r.err == nil && r.left() > 0 {
		if len(as) == MaxAttributes {
			r.fail("more than %d attributes", MaxAttributes)
			break
		}
		t := r.u16()
		v := r.u16()
		if t&0x8000 != 0 {
			as = append(as, Attribute{Type: t & 0x7fff, Basic: true, Value: v})
			continue
		}
		data := r.bytes(int(v))
		if r.err == nil {
			as = append(as, Attribute{Type: t, Data: data})
		}
	}
	return as, r.err
}
