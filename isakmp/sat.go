package isakmp

// TEKProtocol is the Protocol-ID of a SAT payload (RFC 6407 §5.5). It is a
// GDOI registry of its own: ESP is 1 here but 3 in the IPsec DOI.
type TEKProtocol uint8

const (
	TEKProtoESP TEKProtocol = 1 // GDOI_PROTO_IPSEC_ESP
	TEKProtoAH  TEKProtocol = 2 // GDOI_PROTO_IPSEC_AH
)

var tekProtoNames = map[TEKProtocol]string{TEKProtoESP: "GDOI_PROTO_IPSEC_ESP", TEKProtoAH: "GDOI_PROTO_IPSEC_AH"}

func (p TEKProtocol) String() string { return nameOf(tekProtoNames, p, "TEK_PROTO") }

// SAT is the SA TEK payload (RFC 6407 §5.5, Figure 7) with, for ESP and AH,
// the TEK protocol-specific layout of §5.5.1 (Figure 8):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	! Protocol-ID   !       TEK Protocol-Specific Payload           ~
//
//	!    Protocol   !  SRC ID Type  !         SRC ID Port           !
//	!SRC ID Data Len!          SRC Identification Data              ~
//	! DST ID Type   !         DST ID Port           !DST ID Data Len!
//	! DST Identification Data                                       ~
//	! Transform ID  !                        SPI                    !
//	!      SPI      !       RFC 2407 SA Attributes                  ~
//
// The SRC/DST ID Data Len fields are 1 octet here exactly as in the SAK (see
// Selector). The attributes are IPsecAttr types, including RFC 6407's
// Address Preservation and SA Direction (§5.5.1.1). For any other
// Protocol-ID the protocol-specific octets are kept in Raw.
type SAT struct {
	Protocol    TEKProtocol
	Selector               // ESP/AH: the traffic the TEK protects
	TransformID uint8      // ESP/AH: an ESPTransform or AHTransform value
	SPI         uint32     // ESP/AH
	Attributes  Attributes // ESP/AH: IPsecAttr types
	Raw         []byte     // other protocols: the protocol-specific payload
}

func (*SAT) Type() PayloadType { return PayloadSAT }

func (p *SAT) isIPsec() bool { return p.Protocol == TEKProtoESP || p.Protocol == TEKProtoAH }

func (p *SAT) BodyLen() int {
	if !p.isIPsec() {
		return 1 + len(p.Raw)
	}
	return 1 + p.Selector.len() + 5 + p.Attributes.Len()
}

func (p *SAT) AppendBody(b []byte) []byte {
	b = append(b, byte(p.Protocol))
	if !p.isIPsec() {
		return append(b, p.Raw...)
	}
	b = p.Selector.append(b)
	b = appendU32(append(b, p.TransformID), p.SPI)
	return p.Attributes.Append(b)
}

func parseSAT(b []byte) (*SAT, error) {
	r := newReader("SAT payload", b)
	p := &SAT{Protocol: TEKProtocol(r.u8())}
	if r.err == nil && !p.isIPsec() {
		p.Raw = r.rest()
		return p, r.done()
	}
	p.Selector.parse(r)
	p.TransformID = r.u8()
	p.SPI = r.u32()
	if r.err != nil {
		return p, r.err
	}
	as, err := parseAttributes(b[r.off:])
	if err != nil {
		return p, wrapAt("SAT payload", r.off, err)
	}
	p.Attributes = as
	return p, nil
}
