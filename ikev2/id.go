package ikev2

import (
	"fmt"
	"net/netip"
)

// IDType is an Identification Type (RFC 7296 §3.5; IANA "IKEv2
// Identification Payload ID Types").
type IDType uint8

const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDFCName     IDType = 12 // RFC 4595
	IDNull       IDType = 13 // RFC 7619
)

// ID is an Identification payload (RFC 7296 §3.5, Figure 11): IDi, IDr, or
// RFC 9838's IDg (idg.go), which has the same format.
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   ID Type     |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Identification Data                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The AUTH payload signs the body from ID Type on (RESERVED included,
// §2.15): RestOfID returns exactly those octets. Address types are checked
// for their length; ID_NULL must be empty (RFC 7619 §3).
type ID struct {
	Which  PayloadType // PayloadIDi, PayloadIDr or PayloadIDg
	IDType IDType
	Data   []byte
}

// IDi returns an initiator identification payload.
func IDi(t IDType, data []byte) *ID { return &ID{Which: PayloadIDi, IDType: t, Data: data} }

// IDr returns a responder identification payload.
func IDr(t IDType, data []byte) *ID { return &ID{Which: PayloadIDr, IDType: t, Data: data} }

func (p *ID) Type() PayloadType { return p.Which }
func (p *ID) BodyLen() int      { return 4 + len(p.Data) }
func (p *ID) AppendBody(b []byte) []byte {
	b = append(b, byte(p.IDType), 0, 0, 0)
	return append(b, p.Data...)
}

// RestOfID returns the payload body as the AUTH computation uses it
// (RFC 7296 §2.15: "RestOfInitIDPayload").
func (p *ID) RestOfID() []byte { return p.AppendBody(nil) }

// Addr returns the address of an ID_IPV4_ADDR or ID_IPV6_ADDR.
func (p *ID) Addr() (netip.Addr, bool) {
	switch {
	case p.IDType == IDIPv4Addr && len(p.Data) == 4:
		return netip.AddrFrom4([4]byte(p.Data)), true
	case p.IDType == IDIPv6Addr && len(p.Data) == 16:
		return netip.AddrFrom16([16]byte(p.Data)), true
	}
	return netip.Addr{}, false
}

func (p *ID) String() string {
	if a, ok := p.Addr(); ok {
		return fmt.Sprintf("%s %s", p.IDType, a)
	}
	switch p.IDType {
	case IDFQDN, IDRFC822Addr:
		return fmt.Sprintf("%s %q", p.IDType, p.Data)
	}
	return fmt.Sprintf("%s %x", p.IDType, p.Data)
}

func parseID(which PayloadType, b []byte) (*ID, error) {
	r := newReader(which.String()+" payload", b)
	p := &ID{Which: which, IDType: IDType(r.u8())}
	r.skip(3)
	p.Data = r.rest()
	if r.err == nil {
		want := -1
		switch p.IDType {
		case IDIPv4Addr:
			want = 4
		case IDIPv6Addr:
			want = 16
		case IDNull:
			want = 0
		}
		if want >= 0 && len(p.Data) != want {
			r.failAt(4, "%s with %d octets of data (must be %d)", p.IDType, len(p.Data), want)
		}
	}
	return p, r.done()
}
