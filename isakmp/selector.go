package isakmp

import (
	"fmt"
	"net/netip"
)

// Endpoint is one side (SRC or DST) of the traffic a SAK or SAT applies to:
// an IPsec DOI identity type (RFC 2407 §4.6.2.1), a port (0: any) and the
// identification data.
type Endpoint struct {
	IDType IDType
	Port   uint16
	Data   []byte
}

// PrefixEndpoint returns the endpoint for an address prefix: a host address
// for a full-length prefix, a subnet otherwise.
//
// It is AddrID's or PrefixID's identity data, built in one allocation
// without the identity (a key server builds several per registration;
// issue 18: allocations).
func PrefixEndpoint(p netip.Prefix, port uint16) Endpoint {
	if p.Bits() == p.Addr().BitLen() {
		a := p.Addr()
		if a.Is4() {
			b := a.As4()
			return Endpoint{IDType: IDIPv4Addr, Port: port, Data: append(make([]byte, 0, 4), b[:]...)}
		}
		b := a.As16()
		return Endpoint{IDType: IDIPv6Addr, Port: port, Data: append(make([]byte, 0, 16), b[:]...)}
	}
	p = p.Masked()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		d := append(make([]byte, 0, 8), a[:]...)
		return Endpoint{IDType: IDIPv4AddrSubnet, Port: port, Data: appendMask(d, p.Bits(), 4)}
	}
	a := p.Addr().As16()
	d := append(make([]byte, 0, 32), a[:]...)
	return Endpoint{IDType: IDIPv6AddrSubnet, Port: port, Data: appendMask(d, p.Bits(), 16)}
}

// Prefix returns the address prefix an address or subnet endpoint names.
func (e Endpoint) Prefix() (netip.Prefix, error) {
	return (&ID{IDType: e.IDType, Data: e.Data}).Prefix()
}

func (e Endpoint) String() string {
	s := e.IDType.dataString(e.Data)
	if e.Port != 0 {
		s += fmt.Sprintf(" port %d", e.Port)
	}
	return s
}

// Selector is the traffic description that opens both the SAK and the
// ESP/AH SAT payloads (RFC 6407 §5.3 Figure 5, §5.5.1 Figure 8):
//
//	!    Protocol   !  SRC ID Type  !         SRC ID Port           !
//	!SRC ID Data Len!          SRC Identification Data              ~
//	! DST ID Type   !         DST ID Port           !DST ID Data Len!
//	!                    DST Identification Data                    ~
//
// Both figures and both field lists give SRC ID Data Len and DST ID Data Len
// as 1 octet ("SRC ID Data Len (1 octet) -- Value specifying the length (in
// octets) of the SRC Identification Data field", RFC 6407 §5.3 and again in
// §5.5.1), so identification data is at most 255 octets. The prose of both
// sections also lists a "DST ID Prot (1 octet)" field that neither figure
// has; the figures, RFC 3547 and the deployed implementations have no such
// octet, and neither does this codec. See docs/wire.md.
type Selector struct {
	Protocol uint8 // IP protocol of the traffic, 0: any
	Src, Dst Endpoint
}

func (s *Selector) len() int { return 1 + 4 + len(s.Src.Data) + 4 + len(s.Dst.Data) }

func (s *Selector) append(b []byte) []byte {
	b = append(b, s.Protocol, byte(s.Src.IDType))
	b = appendU16(b, s.Src.Port)
	b = append(b, byte(len(s.Src.Data)))
	b = append(b, s.Src.Data...)
	b = append(b, byte(s.Dst.IDType))
	b = appendU16(b, s.Dst.Port)
	b = append(b, byte(len(s.Dst.Data)))
	return append(b, s.Dst.Data...)
}

func (s *Selector) parse(r *reader) {
	s.Protocol = r.u8()
	for _, e := range []*Endpoint{&s.Src, &s.Dst} {
		e.IDType = IDType(r.u8())
		e.Port = r.u16()
		at := r.off
		e.Data = r.bytes(int(r.u8()))
		if r.err == nil {
			if err := e.IDType.checkData(e.Data); err != nil {
				r.err = errMalformed(r.what, at, "%v", err)
			}
		}
	}
}

// AppendSelectors appends each selector in the layout of RFC 6407 §5.5.1
// Figure 8 (the octets that open an ESP/AH SAT), back to back with nothing
// between them. groupvpn's bypass attributes carry such lists (see
// IPsecBypassBefore and docs/wire.md).
func AppendSelectors(b []byte, ss []Selector) []byte {
	for i := range ss {
		b = ss[i].append(b)
	}
	return b
}

// ParseSelectors reads the selectors AppendSelectors wrote: b must hold
// one or more whole selectors and nothing else. Each one costs at least
// 10 octets, so a list is bounded by its attribute's length.
func ParseSelectors(b []byte) ([]Selector, error) {
	r := newReader("selector list", b)
	if r.left() == 0 {
		return nil, errMalformed(r.what, 0, "empty")
	}
	var out []Selector
	for r.err == nil && r.left() > 0 {
		var s Selector
		s.parse(r)
		if r.err == nil {
			out = append(out, s)
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return out, nil
}
