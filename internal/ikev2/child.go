package ikev2

import (
	"encoding/binary"
	"errors"
	"fmt"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// ChildSuite is an ESP proposal for a CHILD SA: ENCR_AES_GCM_16 or
// ENCR_AES_CBC with a key length, an integrity transform with CBC, and no
// extended sequence numbers.
type ChildSuite struct {
	Encr    uint16
	KeyBits int
	Integ   uint16
}

func (s ChildSuite) ike() Suite {
	return Suite{Encr: s.Encr, KeyBits: s.KeyBits, Integ: s.Integ, PRF: wire.PRFHMACSHA2256, Group: 19}
}

func (s ChildSuite) String() string {
	n := s.ike().String()
	return n[:len(n)-len("-prfsha256-ecp256")]
}

// ChildConfig makes IKE_AUTH carry one CHILD SA (RFC 7296 §1.2): an
// initiator asks for it with Suites and its traffic selectors TSi/TSr; a
// responder accepts the first of the initiator's ESP proposals that is
// among Suites, and the selectors if Accept says so (nil: as proposed).
// The SA is reported as a ChildEstablished event with its KEYMAT (§2.17);
// installing it is the owner's business (tmd, for ikev2d). Without a
// ChildConfig no CHILD SA is asked for (RFC 6023) and one asked for is
// refused with NO_PROPOSAL_CHOSEN.
type ChildConfig struct {
	Suites   []ChildSuite
	TSi, TSr []wire.TrafficSelector
	Accept   func(tsi, tsr []wire.TrafficSelector) bool
}

// ChildSA is a negotiated CHILD SA and its keys, the initiator-to-
// responder direction's first (§2.17); with AES-GCM each encryption key
// ends with its 4-octet salt (RFC 4106 §8.1) and there are no integrity
// keys.
type ChildSA struct {
	Suite          ChildSuite
	SPIi, SPIr     uint32 // the initiator's and the responder's inbound SPI
	TSi, TSr       []wire.TrafficSelector
	EncrI, IntegI  []byte
	EncrR, IntegR  []byte
	InitiatorOwned bool // we are the IKE SA's initiator: SPIi is ours
	Encap          bool // UDP-encapsulated ESP (RFC 3948): the IKE SA runs on port 4500
}

// ChildEstablished: the CHILD SA of IKE_AUTH was negotiated.
type ChildEstablished struct{ Child ChildSA }

func (ChildEstablished) event() {}

// ChildRefused: the responder answered our CHILD SA request with an error
// notification (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, ...); the IKE SA
// stands (§1.2).
type ChildRefused struct{ Notify wire.NotifyType }

func (ChildRefused) event() {}

func childTransforms(s ChildSuite) []*wire.Transform {
	ts := []*wire.Transform{{Type: wire.TransformENCR, ID: s.Encr,
		Attributes: wire.Attributes{wire.BasicAttr(wire.AttrKeyLength, uint16(s.KeyBits))}}}
	if s.Integ != wire.IntegNone {
		ts = append(ts, &wire.Transform{Type: wire.TransformINTEG, ID: s.Integ})
	}
	return append(ts, &wire.Transform{Type: wire.TransformSN, ID: wire.SN32Bit})
}

// childSuiteOf returns the suite of ours an ESP proposal allows.
func childSuiteOf(suites []ChildSuite, p *wire.Proposal) (ChildSuite, bool) {
	if p.Protocol != wire.ProtoESP || len(p.SPI) != 4 {
		return ChildSuite{}, false
	}
	has := func(tt wire.TransformType, id uint16, keyBits int) bool {
		for _, t := range p.Transforms {
			if t.Type == tt && t.ID == id && (keyBits == 0 || int(t.KeyLength()) == keyBits) {
				return true
			}
		}
		return false
	}
	hasType := func(tt wire.TransformType) bool {
		for _, t := range p.Transforms {
			if t.Type == tt {
				return true
			}
		}
		return false
	}
	for _, t := range p.Transforms {
		switch t.Type {
		case wire.TransformENCR, wire.TransformINTEG, wire.TransformSN, wire.TransformKE:
		default:
			return ChildSuite{}, false
		}
	}
	for _, s := range suites {
		integOK := has(wire.TransformINTEG, s.Integ, 0)
		if s.Integ == wire.IntegNone {
			integOK = true
			for _, t := range p.Transforms {
				if t.Type == wire.TransformINTEG && t.ID != wire.IntegNone {
					integOK = false
				}
			}
		}
		// No SN transform, or one offering 32-bit sequence numbers.
		snOK := has(wire.TransformSN, wire.SN32Bit, 0) || !hasType(wire.TransformSN)
		if has(wire.TransformENCR, s.Encr, s.KeyBits) && integOK && snOK && (!hasType(wire.TransformKE) || has(wire.TransformKE, wire.KENone, 0)) {
			return s, true
		}
	}
	return ChildSuite{}, false
}

// childKeys splits KEYMAT = prf+(SK_d, Ni | Nr) (§2.17).
func (sa *SA) childKeys(c *ChildSA) error {
	s := c.Suite.ike()
	if err := s.Validate(); err != nil {
		return err
	}
	el := s.encrKeyLen()
	il, _ := integLen(c.Suite.Integ)
	km, err := sa.keys.ChildKeymat(nil, sa.ni, sa.nr, 2*(el+il))
	if err != nil {
		return err
	}
	c.EncrI, c.IntegI = km[:el:el], km[el:el+il:el+il]
	km = km[el+il:]
	c.EncrR, c.IntegR = km[:el:el], km[el:el+il:el+il]
	return nil
}

// newChildSPI returns a random inbound SPI above the reserved 1-255.
func (sa *SA) newChildSPI() (uint32, error) {
	for {
		b, err := sa.randBytes(4)
		if err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint32(b); v > 255 {
			return v, nil
		}
	}
}

// childRequest is the SAi2, TSi, TSr an initiator adds to IKE_AUTH.
func (sa *SA) childRequest() ([]wire.Payload, error) {
	cc := sa.cfg.Child
	if cc == nil {
		return nil, nil
	}
	if len(cc.Suites) == 0 || len(cc.TSi) == 0 || len(cc.TSr) == 0 {
		return nil, errors.New("ikev2: a CHILD SA needs suites and traffic selectors")
	}
	spi, err := sa.newChildSPI()
	if err != nil {
		return nil, err
	}
	sa.childSPI = spi
	p := &wire.SA{}
	for i, s := range cc.Suites {
		p.Proposals = append(p.Proposals, &wire.Proposal{Number: uint8(i + 1), Protocol: wire.ProtoESP,
			SPI: binary.BigEndian.AppendUint32(nil, spi), Transforms: childTransforms(s)})
	}
	return []wire.Payload{p, &wire.TS{Which: wire.PayloadTSi, Selectors: cc.TSi}, &wire.TS{Which: wire.PayloadTSr, Selectors: cc.TSr}}, nil
}

// childResponse negotiates the CHILD SA a request asks for: the payloads
// to answer with (SAr2, TSi, TSr, or an error notification) and the SA.
func (sa *SA) childResponse(ps []wire.Payload) ([]wire.Payload, *ChildSA) {
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	if saP == nil {
		return nil, nil
	}
	refuse := func(n wire.NotifyType) ([]wire.Payload, *ChildSA) {
		return []wire.Payload{&wire.Notify{NotifyType: n}}, nil
	}
	cc := sa.cfg.Child
	var tsi, tsr *wire.TS
	for _, p := range ps {
		if t, ok := p.(*wire.TS); ok {
			if t.Which == wire.PayloadTSi && tsi == nil {
				tsi = t
			} else if t.Which == wire.PayloadTSr && tsr == nil {
				tsr = t
			}
		}
	}
	if cc == nil || tsi == nil || tsr == nil {
		return refuse(wire.NotifyNoProposalChosen)
	}
	for _, p := range saP.Proposals {
		s, ok := childSuiteOf(cc.Suites, p)
		if !ok {
			continue
		}
		if cc.Accept != nil && !cc.Accept(tsi.Selectors, tsr.Selectors) {
			return refuse(wire.NotifyTSUnacceptable)
		}
		spi, err := sa.newChildSPI()
		if err != nil {
			return refuse(wire.NotifyNoProposalChosen)
		}
		c := &ChildSA{Suite: s, SPIi: binary.BigEndian.Uint32(p.SPI), SPIr: spi,
			TSi: tsi.Selectors, TSr: tsr.Selectors, Encap: sa.floated}
		if err := sa.childKeys(c); err != nil {
			return refuse(wire.NotifyNoProposalChosen)
		}
		out := &wire.SA{Proposals: []*wire.Proposal{{Number: p.Number, Protocol: wire.ProtoESP,
			SPI: binary.BigEndian.AppendUint32(nil, spi), Transforms: childTransforms(s)}}}
		return []wire.Payload{out, tsi, tsr}, c
	}
	return refuse(wire.NotifyNoProposalChosen)
}

// childAccepted reads the CHILD SA of an IKE_AUTH response to our request.
func (sa *SA) childAccepted(ps []wire.Payload) (*ChildSA, error) {
	cc := sa.cfg.Child
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	if cc == nil || saP == nil {
		return nil, nil
	}
	var tsi, tsr *wire.TS
	for _, p := range ps {
		if t, ok := p.(*wire.TS); ok {
			if t.Which == wire.PayloadTSi {
				tsi = t
			} else if t.Which == wire.PayloadTSr {
				tsr = t
			}
		}
	}
	if len(saP.Proposals) != 1 || tsi == nil || tsr == nil {
		return nil, errors.New("ikev2: CHILD SA answer without one proposal and both TS")
	}
	p := saP.Proposals[0]
	s, ok := childSuiteOf(cc.Suites, p)
	if !ok || int(p.Number) < 1 || int(p.Number) > len(cc.Suites) || cc.Suites[p.Number-1] != s {
		return nil, fmt.Errorf("ikev2: CHILD SA answer chose a proposal we did not make")
	}
	c := &ChildSA{Suite: s, SPIi: sa.childSPI, SPIr: binary.BigEndian.Uint32(p.SPI), TSi: tsi.Selectors, TSr: tsr.Selectors, InitiatorOwned: true, Encap: sa.floated}
	if err := sa.childKeys(c); err != nil {
		return nil, err
	}
	return c, nil
}
