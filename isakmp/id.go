package isakmp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IDType is an Identification Type of the IPsec DOI (RFC 2407 §4.6.2.1),
// which the GDOI reuses (RFC 6407 §5.1) and ID_LIST (RFC 3554 §5).
type IDType uint8

const (
	IDIPv4Addr       IDType = 1
	IDFQDN           IDType = 2
	IDUserFQDN       IDType = 3
	IDIPv4AddrSubnet IDType = 4
	IDIPv6Addr       IDType = 5
	IDIPv6AddrSubnet IDType = 6
	IDIPv4AddrRange  IDType = 7
	IDIPv6AddrRange  IDType = 8
	IDDERASN1DN      IDType = 9
	IDDERASN1GN      IDType = 10
	IDKeyID          IDType = 11
	IDList           IDType = 12
)

var idTypeNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDUserFQDN: "ID_USER_FQDN",
	IDIPv4AddrSubnet: "ID_IPV4_ADDR_SUBNET", IDIPv6Addr: "ID_IPV6_ADDR",
	IDIPv6AddrSubnet: "ID_IPV6_ADDR_SUBNET", IDIPv4AddrRange: "ID_IPV4_ADDR_RANGE",
	IDIPv6AddrRange: "ID_IPV6_ADDR_RANGE", IDDERASN1DN: "ID_DER_ASN1_DN",
	IDDERASN1GN: "ID_DER_ASN1_GN", IDKeyID: "ID_KEY_ID", IDList: "ID_LIST",
}

func (t IDType) String() string { return nameOf(idTypeNames, t, "ID") }

// addrDataLen is the exact data length an address-bearing ID type needs;
// 0 means the type's data is free-form.
func (t IDType) addrDataLen() int {
	switch t {
	case IDIPv4Addr:
		return 4
	case IDIPv4AddrSubnet, IDIPv4AddrRange:
		return 8
	case IDIPv6Addr:
		return 16
	case IDIPv6AddrSubnet, IDIPv6AddrRange:
		return 32
	}
	return 0
}

// ID is the Identification payload in its IPsec DOI form (RFC 2407 §4.6.2):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!   ID Type     !  Protocol ID  !             Port              !
//	~                     Identification Data                       ~
//
// The GDOI uses the same layout (RFC 6407 §5.1): in GROUPKEY-PULL the
// initiator names the group with ID_KEY_ID (the group number, see GroupID)
// or another type, and Protocol ID and Port are zero. The same type also
// serves as the SRC/DST identities inside SAK and SAT payloads, whose
// framing differs (see SAK and SAT).
type ID struct {
	IDType     IDType
	ProtocolID uint8  // IP protocol, 0 for any
	Port       uint16 // 0 for any
	Data       []byte
}

func (*ID) Type() PayloadType { return PayloadID }
func (p *ID) BodyLen() int    { return 4 + len(p.Data) }

func (p *ID) AppendBody(b []byte) []byte {
	b = append(b, byte(p.IDType), p.ProtocolID)
	return append(appendU16(b, p.Port), p.Data...)
}

func parseID(b []byte) (*ID, error) {
	r := newReader("ID payload", b)
	p := &ID{IDType: IDType(r.u8()), ProtocolID: r.u8(), Port: r.u16()}
	p.Data = r.rest()
	if r.err == nil {
		if err := p.IDType.checkData(p.Data); err != nil {
			r.err = errMalformed("ID payload", 4, "%v", err)
		}
	}
	return p, r.done()
}

// checkData rejects address-bearing identities of the wrong length.
func (t IDType) checkData(d []byte) error {
	if n := t.addrDataLen(); n != 0 && len(d) != n {
		return fmt.Errorf("%s needs %d octets of data, has %d", t, n, len(d))
	}
	return nil
}

// GroupID returns the GDOI group identity for group number n as an
// ID_KEY_ID with a 4-octet big-endian number, the form Cisco's
// "identity number N" uses.
func GroupID(n uint32) *ID {
	return &ID{IDType: IDKeyID, Data: binary.BigEndian.AppendUint32(nil, n)}
}

// AddrID returns an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func AddrID(a netip.Addr) *ID {
	if a.Is4() {
		b := a.As4()
		return &ID{IDType: IDIPv4Addr, Data: b[:]}
	}
	b := a.As16()
	return &ID{IDType: IDIPv6Addr, Data: b[:]}
}

// PrefixID returns an ID_IPV4_ADDR_SUBNET or ID_IPV6_ADDR_SUBNET identity
// (address followed by its mask) for the traffic selector p with the given
// IP protocol and port.
func PrefixID(p netip.Prefix, proto uint8, port uint16) *ID {
	p = p.Masked()
	id := &ID{ProtocolID: proto, Port: port}
	if p.Addr().Is4() {
		id.IDType = IDIPv4AddrSubnet
		a := p.Addr().As4()
		id.Data = append(a[:], maskBytes(p.Bits(), 4)...)
		return id
	}
	id.IDType = IDIPv6AddrSubnet
	a := p.Addr().As16()
	id.Data = append(a[:], maskBytes(p.Bits(), 16)...)
	return id
}

func maskBytes(bits, n int) []byte { return appendMask(make([]byte, 0, n), bits, n) }

// appendMask appends the n-octet mask of a prefix of bits bits to b.
func appendMask(b []byte, bits, n int) []byte {
	start := len(b)
	b = append(b, make([]byte, n)...)
	m := b[start:]
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// Prefix returns the traffic selector an address or subnet identity names.
func (p *ID) Prefix() (netip.Prefix, error) {
	if err := p.IDType.checkData(p.Data); err != nil {
		return netip.Prefix{}, err
	}
	switch p.IDType {
	case IDIPv4Addr, IDIPv6Addr:
		a, _ := netip.AddrFromSlice(p.Data)
		return netip.PrefixFrom(a, a.BitLen()), nil
	case IDIPv4AddrSubnet, IDIPv6AddrSubnet:
		half := len(p.Data) / 2
		a, _ := netip.AddrFromSlice(p.Data[:half])
		bits, err := maskLen(p.Data[half:])
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: %w", p.IDType, err)
		}
		return netip.PrefixFrom(a, bits).Masked(), nil
	}
	return netip.Prefix{}, fmt.Errorf("isakmp: %s is not an address or subnet identity", p.IDType)
}

// maskLen converts a contiguous netmask to a prefix length.
func maskLen(m []byte) (int, error) {
	bits, ended := 0, false
	for _, c := range m {
		for i := 7; i >= 0; i-- {
			switch set := c>>i&1 == 1; {
			case set && ended:
				return 0, fmt.Errorf("netmask %x is not contiguous", m)
			case set:
				bits++
			default:
				ended = true
			}
		}
	}
	return bits, nil
}

func (p *ID) String() string {
	s := p.IDType.dataString(p.Data)
	if p.ProtocolID != 0 || p.Port != 0 {
		s += fmt.Sprintf(" proto=%d port=%d", p.ProtocolID, p.Port)
	}
	return s
}

// dataString renders identification data of type t.
func (t IDType) dataString(d []byte) string {
	if pfx, err := (&ID{IDType: t, Data: d}).Prefix(); err == nil {
		// What fmt's "%s %s" writes, without fmt and in one allocation:
		// a key server names each member's identity per registration
		// (issue 18).
		var buf [64]byte
		b := append(append(buf[:0], t.String()...), ' ')
		return string(pfx.AppendTo(b))
	}
	switch t {
	case IDFQDN, IDUserFQDN:
		return fmt.Sprintf("%s %q", t, d)
	case IDKeyID:
		if len(d) == 4 {
			return fmt.Sprintf("%s %d", t, binary.BigEndian.Uint32(d))
		}
	}
	return fmt.Sprintf("%s %x", t, d)
}
