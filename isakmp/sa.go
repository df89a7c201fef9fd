package isakmp

import "encoding/binary"

// parseSAPayload chooses the SA layout: the GDOI SA (RFC 6407 §5.2) for
// the GDOI DOI outside phase 1, else the RFC 2408 §3.4 SA with proposals.
func parseSAPayload(phase1 bool, b []byte) (Payload, error) {
	if len(b) < 4 {
		return nil, errShort("SA payload", 0, 4, len(b))
	}
	if !phase1 && DOI(binary.BigEndian.Uint32(b)) == DOIGDOI {
		return parseGroupSA(b)
	}
	return parseSA(b)
}

// SA is the Security Association payload of the ISAKMP and IPsec DOIs
// (RFC 2408 §3.4, RFC 2407 §4.6.1):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!              Domain of Interpretation  (DOI)                  !
//	~                           Situation                           ~
//	~                  Proposal payloads (RFC 2408 §3.5)             ~
//
// Only the 4-octet SIT_IDENTITY_ONLY situation is supported: SIT_SECRECY
// and SIT_INTEGRITY (labelled domains) are rejected as malformed.
type SA struct {
	DOI       DOI
	Situation uint32
	Proposals []*Proposal
}

func (*SA) Type() PayloadType { return PayloadSA }

func (p *SA) BodyLen() int {
	n := 8
	for _, pr := range p.Proposals {
		n += GenericHeaderLen + pr.bodyLen()
	}
	return n
}

func (p *SA) AppendBody(b []byte) []byte {
	b = appendU32(appendU32(b, uint32(p.DOI)), p.Situation)
	for i, pr := range p.Proposals {
		b = appendFramed(b, nextOf(i, len(p.Proposals), PayloadProposal), pr.bodyLen(), pr.appendBody)
	}
	return b
}

func parseSA(b []byte) (*SA, error) {
	r := newReader("SA payload", b)
	p := &SA{DOI: DOI(r.u32()), Situation: r.u32()}
	if r.err == nil && p.Situation&^SituationIdentityOnly != 0 {
		r.fail("situation 0x%x is not supported (only SIT_IDENTITY_ONLY)", p.Situation)
	}
	r.chain(PayloadProposal, is(PayloadProposal), func(_ PayloadType, body []byte) error {
		pr, err := parseProposal(body)
		p.Proposals = append(p.Proposals, pr)
		return err
	})
	return p, r.done()
}

// Proposal is a Proposal payload inside an SA payload (RFC 2408 §3.5):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!  Proposal #   !  Protocol-Id  !    SPI Size   !# of Transforms!
//	~                        SPI (variable)                         ~
//	~                 Transform payloads (RFC 2408 §3.6)             ~
//
// Its generic header's Next Payload is 2 (another proposal) or 0; the
// header and the SPI Size and # of Transforms fields are derived on Append.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []*Transform
}

func (pr *Proposal) bodyLen() int {
	n := 4 + len(pr.SPI)
	for _, t := range pr.Transforms {
		n += GenericHeaderLen + t.bodyLen()
	}
	return n
}

func (pr *Proposal) appendBody(b []byte) []byte {
	b = append(b, pr.Number, byte(pr.Protocol), byte(len(pr.SPI)), byte(len(pr.Transforms)))
	b = append(b, pr.SPI...)
	for i, t := range pr.Transforms {
		b = appendFramed(b, nextOf(i, len(pr.Transforms), PayloadTransform), t.bodyLen(), t.appendBody)
	}
	return b
}

func parseProposal(b []byte) (*Proposal, error) {
	r := newReader("proposal", b)
	pr := &Proposal{Number: r.u8(), Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	count := int(r.u8())
	pr.SPI = r.bytes(spiSize)
	r.chain(PayloadTransform, is(PayloadTransform), func(_ PayloadType, body []byte) error {
		t, err := parseTransform(body)
		pr.Transforms = append(pr.Transforms, t)
		return err
	})
	if r.err == nil && len(pr.Transforms) != count {
		r.fail("# of transforms is %d but %d transforms are present", count, len(pr.Transforms))
	}
	return pr, r.done()
}

// Transform is a Transform payload inside a Proposal (RFC 2408 §3.6):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!  Transform #  !  Transform-Id !           RESERVED2           !
//	~                        SA Attributes                          ~
//
// Transform-Id is KEY_IKE (1) in phase 1 (RFC 2407 §4.4.2) and an ESP or AH
// transform in phase 2; the attributes are IKEAttr or IPsecAttr types.
type Transform struct {
	Number     uint8
	ID         uint8
	Attributes Attributes
}

// TransformKeyIKE is the phase-1 Transform-Id KEY_IKE (RFC 2407 §4.4.2).
const TransformKeyIKE = 1

func (t *Transform) bodyLen() int { return 4 + t.Attributes.Len() }

func (t *Transform) appendBody(b []byte) []byte {
	b = append(b, t.Number, t.ID, 0, 0)
	return t.Attributes.Append(b)
}

func parseTransform(b []byte) (*Transform, error) {
	r := newReader("transform", b)
	t := &Transform{Number: r.u8(), ID: r.u8()}
	r.reserved(2, "RESERVED2")
	if r.err != nil {
		return t, r.err
	}
	as, err := parseAttributes(b[r.off:])
	if err != nil {
		return t, wrapAt("transform", r.off, err)
	}
	t.Attributes = as
	return t, nil
}
