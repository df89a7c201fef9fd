package ikev2

import (
	"fmt"
	"net/netip"
)

// TSType is a Traffic Selector Type (RFC 7296 §3.13.1; IANA "IKEv2 Traffic
// Selector Types").
type TSType uint8

const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
	TSFCAddrRange   TSType = 9  // RFC 4595
	TSSecLabel      TSType = 10 // RFC 9478
)

// MaxTrafficSelectors bounds one TS payload (the count field is one octet).
const MaxTrafficSelectors = 255

// TrafficSelector is one traffic selector (RFC 7296 §3.13.1, Figure 20):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   TS Type     |IP Protocol ID*|       Selector Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Start Port*         |           End Port*           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Starting Address*                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Ending Address*                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// (* "These fields are present only if the TS Type is one of the defined
// types"). For TS_IPV4_ADDR_RANGE the Selector Length is 16, for
// TS_IPV6_ADDR_RANGE 40; parsing checks it and that both addresses are of
// the type's family. Other types keep the octet after TS Type in
// IPProtocol and everything after Selector Length in Data (the octets a
// TS_SECLABEL or TS_FC_ADDR_RANGE carries). The same substructure is the
// source and destination of an RFC 9838 GSA policy (gsa.go).
type TrafficSelector struct {
	TSType     TSType
	IPProtocol uint8 // 0: any
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
	Data       []byte // types other than 7 and 8: the octets after Selector Length
}

// PrefixTS returns the address-range selector covering prefix p, any
// protocol and port.
func PrefixTS(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	start := p.Addr()
	b := start.AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	end, _ := netip.AddrFromSlice(b)
	t := TSIPv4AddrRange
	if start.Is6() {
		t = TSIPv6AddrRange
	}
	return TrafficSelector{TSType: t, StartPort: 0, EndPort: 0xffff, Start: start, End: end}
}

func (ts *TrafficSelector) len() int {
	switch ts.TSType {
	case TSIPv4AddrRange:
		return 16
	case TSIPv6AddrRange:
		return 40
	}
	return 4 + len(ts.Data)
}

func (ts *TrafficSelector) append(b []byte) []byte {
	b = append(b, byte(ts.TSType), ts.IPProtocol)
	b = appendU16(b, uint16(ts.len()))
	switch ts.TSType {
	case TSIPv4AddrRange, TSIPv6AddrRange:
		b = appendU16(appendU16(b, ts.StartPort), ts.EndPort)
		n := 4
		if ts.TSType == TSIPv6AddrRange {
			n = 16
		}
		return append(appendAddr(b, ts.Start, n), addrOctets(ts.End, n)...)
	}
	return append(b, ts.Data...)
}

func addrOctets(a netip.Addr, n int) []byte {
	s := a.Unmap().AsSlice()
	if len(s) != n {
		return make([]byte, n)
	}
	return s
}

func appendAddr(b []byte, a netip.Addr, n int) []byte { return append(b, addrOctets(a, n)...) }

func (ts TrafficSelector) String() string {
	switch ts.TSType {
	case TSIPv4AddrRange, TSIPv6AddrRange:
		return fmt.Sprintf("%s-%s proto %d ports %d-%d", ts.Start, ts.End, ts.IPProtocol, ts.StartPort, ts.EndPort)
	}
	return fmt.Sprintf("%s %x", ts.TSType, ts.Data)
}

// parseTrafficSelector decodes one selector at the start of b and returns
// the octets it takes.
func parseTrafficSelector(b []byte) (TrafficSelector, int, error) {
	r := newReader("traffic selector", b)
	var ts TrafficSelector
	s := r.sub(2, 4)
	if r.err != nil {
		return ts, 0, r.err
	}
	q := newReader("traffic selector", s)
	ts.TSType = TSType(q.u8())
	ts.IPProtocol = q.u8()
	q.skip(2)
	switch ts.TSType {
	case TSIPv4AddrRange, TSIPv6AddrRange:
		n := 4
		if ts.TSType == TSIPv6AddrRange {
			n = 16
		}
		if len(s) != 8+2*n {
			return ts, 0, errMalformed("traffic selector", 2, "%s with Selector Length %d (must be %d)", ts.TSType, len(s), 8+2*n)
		}
		ts.StartPort = q.u16()
		ts.EndPort = q.u16()
		ts.Start, _ = netip.AddrFromSlice(q.take(n))
		ts.End, _ = netip.AddrFromSlice(q.take(n))
	default:
		ts.Data = q.rest()
	}
	return ts, len(s), q.done()
}

// TS is the Traffic Selector payload, TSi or TSr (RFC 7296 §3.13, Figure 19):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Number of TSs |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <Traffic Selectors>                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type TS struct {
	Which     PayloadType // PayloadTSi or PayloadTSr
	Selectors []TrafficSelector
}

func (p *TS) Type() PayloadType { return p.Which }

func (p *TS) BodyLen() int {
	n := 4
	for i := range p.Selectors {
		n += p.Selectors[i].len()
	}
	return n
}

func (p *TS) AppendBody(b []byte) []byte {
	b = append(b, byte(len(p.Selectors)), 0, 0, 0)
	for i := range p.Selectors {
		b = p.Selectors[i].append(b)
	}
	return b
}

func parseTS(which PayloadType, b []byte) (*TS, error) {
	r := newReader(which.String()+" payload", b)
	p := &TS{Which: which}
	count := int(r.u8())
	r.skip(3)
	if r.err == nil && count == 0 {
		r.failAt(0, "Number of TSs is 0")
	}
	for i := 0; i < count && r.err == nil; i++ {
		at := r.off
		ts, n, err := parseTrafficSelector(b[at:])
		if err != nil {
			r.err = wrapAt(which.String()+" payload: selector "+itoa(i+1), at, err)
			break
		}
		p.Selectors = append(p.Selectors, ts)
		r.take(n)
	}
	return p, r.done()
}
