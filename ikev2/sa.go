package ikev2

import "strconv"

// ProtocolID names a security protocol in Proposal, Notify and Delete
// payloads (RFC 7296 §3.3.1; IANA "IKEv2 Security Protocol Identifiers").
type ProtocolID uint8

const (
	ProtoIKE ProtocolID = 1
	ProtoAH  ProtocolID = 2
	ProtoESP ProtocolID = 3
	// ProtoGIKEUpdate is RFC 9838's GIKE_UPDATE, the protocol of the
	// Rekey SA (the SA that protects GSA_REKEY messages). Value 6 from a
	// copy of IANA's "IKEv2 Security Protocol Identifiers" registry (4 and
	// 5 are RFC 4595's FC_ESP_HEADER and FC_CT_AUTHENTICATION).
	ProtoGIKEUpdate ProtocolID = 6
)

// TransformType is a Transform Type (RFC 7296 §3.3.2; IANA "Transform
// Type Values").
type TransformType uint8

const (
	TransformENCR  TransformType = 1 // Encryption Algorithm
	TransformPRF   TransformType = 2 // Pseudorandom Function
	TransformINTEG TransformType = 3 // Integrity Algorithm
	TransformKE    TransformType = 4 // Key Exchange Method (was D-H Group)
	TransformSN    TransformType = 5 // Sequence Numbers (was ESN)
	// RFC 9370 additional key exchanges.
	TransformADDKE1 TransformType = 6
	TransformADDKE2 TransformType = 7
	TransformADDKE3 TransformType = 8
	TransformADDKE4 TransformType = 9
	TransformADDKE5 TransformType = 10
	TransformADDKE6 TransformType = 11
	TransformADDKE7 TransformType = 12
	// RFC 9838: Key Wrap Algorithm (KWA, §4.4.2.1.1 of the RFC's transform
	// list) and Group Controller Authentication Method (GCAUTH). Values from
	// libreswan's include/ietf_constants.h (IKEv2_TRANS_TYPE_KWA = 13,
	// IKEv2_TRANS_TYPE_GCAUTH = 14) and a copy of IANA's registry.
	TransformKWA    TransformType = 13
	TransformGCAUTH TransformType = 14
)

// Transform IDs of the registries the SA layer uses (IANA "IKEv2 Transform
// Attribute Types" and the per-type Transform ID registries).
const (
	// Transform Type 1, encryption.
	EncrDES              uint16 = 2
	Encr3DES             uint16 = 3
	EncrNULL             uint16 = 11
	EncrAESCBC           uint16 = 12
	EncrAESCTR           uint16 = 13
	EncrAESCCM8          uint16 = 14
	EncrAESCCM12         uint16 = 15
	EncrAESCCM16         uint16 = 16
	EncrAESGCM8          uint16 = 18
	EncrAESGCM12         uint16 = 19
	EncrAESGCM16         uint16 = 20
	EncrNullAuthAESGMAC  uint16 = 21
	EncrChaCha20Poly1305 uint16 = 28
	// Transform Type 2, pseudorandom functions.
	PRFHMACMD5     uint16 = 1
	PRFHMACSHA1    uint16 = 2
	PRFAES128XCBC  uint16 = 4
	PRFHMACSHA2256 uint16 = 5
	PRFHMACSHA2384 uint16 = 6
	PRFHMACSHA2512 uint16 = 7
	PRFAES128CMAC  uint16 = 8
	// Transform Type 3, integrity.
	IntegNone           uint16 = 0
	IntegHMACMD596      uint16 = 1
	IntegHMACSHA196     uint16 = 2
	IntegAESXCBC96      uint16 = 5
	IntegAESCMAC96      uint16 = 8
	IntegAES128GMAC     uint16 = 9
	IntegAES192GMAC     uint16 = 10
	IntegAES256GMAC     uint16 = 11
	IntegHMACSHA2256128 uint16 = 12
	IntegHMACSHA2384192 uint16 = 13
	IntegHMACSHA2512256 uint16 = 14
	// Transform Type 4, key exchange methods.
	KENone       uint16 = 0
	KEMODP1024   uint16 = 2
	KEMODP1536   uint16 = 5
	KEMODP2048   uint16 = 14
	KEMODP3072   uint16 = 15
	KEMODP4096   uint16 = 16
	KEMODP6144   uint16 = 17
	KEMODP8192   uint16 = 18
	KEECP256     uint16 = 19
	KEECP384     uint16 = 20
	KEECP521     uint16 = 21
	KECurve25519 uint16 = 31
	KECurve448   uint16 = 32
	KEMLKEM512   uint16 = 35
	KEMLKEM768   uint16 = 36
	KEMLKEM1024  uint16 = 37
	// Transform Type 5, sequence numbers.
	SN32Bit            uint16 = 0
	SN64Bit            uint16 = 1 // ESN
	SN32BitUnspecified uint16 = 2 // RFC 9827, for multicast senders
	// Transform Type 13, key wrap (RFC 9838; RFC 5649 AES key wrap with
	// padding, libreswan's IKEv2_KWA_KW_5649_*; KW_ARX is another
	// specification's).
	KWA5649AES128 uint16 = 1
	KWA5649AES192 uint16 = 2
	KWA5649AES256 uint16 = 3
	KWAARX        uint16 = 4
	// Transform Type 14, group controller authentication (RFC 9838;
	// libreswan's IKEv2_GCAUTH_*).
	GCAuthImplicit         uint16 = 1
	GCAuthDigitalSignature uint16 = 2
)

// Transform attribute types (IANA "IKEv2 Transform Attribute Types").
const (
	AttrKeyLength uint16 = 14 // RFC 7296 §3.3.5, TV, in bits
)

// Bounds on the SA payload.
const (
	MaxProposals  = 64  // proposals in one SA payload
	MaxTransforms = 255 // transforms in one proposal (the count field is one octet)
)

// Substructure "Last Substruc" values (RFC 7296 §3.3.1, §3.3.2).
const (
	lastSubstruc      = 0
	moreProposals     = 2
	moreTransforms    = 3
	proposalHeaderLen = 8
	transformLen      = 8
)

// SA is the Security Association payload (RFC 7296 §3.3, Figure 6): one or
// more proposals.
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                          <Proposals>                          ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type SA struct {
	Proposals []*Proposal
}

func (*SA) Type() PayloadType { return PayloadSA }

func (p *SA) BodyLen() int {
	n := 0
	for _, pr := range p.Proposals {
		n += pr.len()
	}
	return n
}

func (p *SA) AppendBody(b []byte) []byte {
	for i, pr := range p.Proposals {
		last := byte(moreProposals)
		if i+1 == len(p.Proposals) {
			last = lastSubstruc
		}
		b = pr.append(b, last)
	}
	return b
}

// Proposal is a proposal substructure (RFC 7296 §3.3.1, Figure 7):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |         Proposal Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        SPI (variable)                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        <Transforms>                           ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Last Substruc is 0 for the last proposal and 2 otherwise; parsing checks
// that it agrees with the proposal's position. Numbering is the SA layer's
// to check (it differs between request and response).
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []*Transform
}

func (pr *Proposal) len() int {
	n := proposalHeaderLen + len(pr.SPI)
	for _, t := range pr.Transforms {
		n += t.len()
	}
	return n
}

func (pr *Proposal) append(b []byte, last byte) []byte {
	b = append(b, last, 0)
	b = appendU16(b, uint16(pr.len()))
	b = append(b, pr.Number, byte(pr.Protocol), byte(len(pr.SPI)), byte(len(pr.Transforms)))
	b = append(b, pr.SPI...)
	for i, t := range pr.Transforms {
		l := byte(moreTransforms)
		if i+1 == len(pr.Transforms) {
			l = lastSubstruc
		}
		b = t.append(b, l)
	}
	return b
}

// Transform is a transform substructure (RFC 7296 §3.3.2, Figure 8):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |        Transform Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Transform Type |   RESERVED    |          Transform ID         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Transform Attributes                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes Attributes
}

// KeyLength returns the Key Length attribute (bits), or 0.
func (t *Transform) KeyLength() uint16 {
	if a, ok := t.Attributes.Get(AttrKeyLength); ok && a.Basic {
		return a.Value
	}
	return 0
}

func (t *Transform) String() string {
	s := t.Type.String() + "=" + TransformIDName(t.Type, t.ID)
	if kl := t.KeyLength(); kl != 0 {
		s += "/" + itoa(int(kl))
	}
	return s
}

func (t *Transform) len() int { return transformLen + t.Attributes.Len() }

func (t *Transform) append(b []byte, last byte) []byte {
	b = append(b, last, 0)
	b = appendU16(b, uint16(t.len()))
	b = append(b, byte(t.Type), 0)
	b = appendU16(b, t.ID)
	return t.Attributes.Append(b)
}

func parseSA(b []byte) (*SA, error) {
	r := newReader("SA payload", b)
	p := &SA{}
	if len(b) == 0 {
		r.fail("no proposal")
	}
	for r.err == nil && r.left() > 0 {
		if len(p.Proposals) == MaxProposals {
			r.fail("more than %d proposals", MaxProposals)
			break
		}
		at := r.off
		s := r.sub(2, proposalHeaderLen)
		if r.err != nil {
			break
		}
		pr, err := parseProposal(s)
		if err == nil {
			last := s[0] == lastSubstruc
			switch {
			case s[0] != lastSubstruc && s[0] != moreProposals:
				err = errMalformed("proposal", 0, "Last Substruc %d (must be 0 or 2)", s[0])
			case last != (r.left() == 0):
				err = errMalformed("proposal", 0, "Last Substruc %d disagrees with %d octets after the proposal", s[0], r.left())
			}
		}
		if err != nil {
			r.err = wrapAt("SA payload: proposal "+itoa(len(p.Proposals)+1), at, err)
			break
		}
		p.Proposals = append(p.Proposals, pr)
	}
	return p, r.err
}

func parseProposal(b []byte) (*Proposal, error) {
	r := newReader("proposal", b)
	r.skip(4) // Last Substruc, RESERVED, Proposal Length: checked by the caller
	pr := &Proposal{Number: r.u8(), Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	count := int(r.u8())
	pr.SPI = r.bytes(spiSize)
	if r.err == nil && count == 0 {
		r.failAt(7, "Num Transforms is 0")
	}
	for r.err == nil && r.left() > 0 {
		at := r.off
		s := r.sub(2, transformLen)
		if r.err != nil {
			break
		}
		t, err := parseTransform(s)
		if err == nil {
			last := s[0] == lastSubstruc
			switch {
			case s[0] != lastSubstruc && s[0] != moreTransforms:
				err = errMalformed("transform", 0, "Last Substruc %d (must be 0 or 3)", s[0])
			case last != (r.left() == 0):
				err = errMalformed("transform", 0, "Last Substruc %d disagrees with %d octets after the transform", s[0], r.left())
			}
		}
		if err != nil {
			r.err = wrapAt("transform "+itoa(len(pr.Transforms)+1), at, err)
			break
		}
		pr.Transforms = append(pr.Transforms, t)
	}
	if r.err == nil && len(pr.Transforms) != count {
		r.failAt(7, "Num Transforms is %d but %d are present", count, len(pr.Transforms))
	}
	return pr, r.err
}

func parseTransform(b []byte) (*Transform, error) {
	r := newReader("transform", b)
	r.skip(4)
	t := &Transform{Type: TransformType(r.u8())}
	r.skip(1)
	t.ID = r.u16()
	if r.err != nil {
		return t, r.err
	}
	as, err := parseAttributes("transform attributes", b[transformLen:])
	if err != nil {
		return t, wrapAt("transform", transformLen, err)
	}
	t.Attributes = as
	return t, nil
}

func itoa(n int) string { return strconv.Itoa(n) }
