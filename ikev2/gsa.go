package ikev2

import "fmt"

// GSA attribute types (RFC 9838 §4.4.2.2, IANA "GSA Attributes"); all TLV.
const (
	GSAKeyLifetime      uint16 = 1 // 4 octets, seconds (§4.4.2.2.1)
	GSAInitialMessageID uint16 = 2 // 4 octets, GIKE_UPDATE only (§4.4.2.2.2)
	GSANextSPI          uint16 = 3 // SPI Size octets, multi-valued (§4.4.2.2.3)
)

// Group-wide policy attribute types (RFC 9838 §4.4.3.1, IANA "Group-wide
// Policy Attributes"); all TV (16-bit values).
const (
	GWPATD          uint16 = 1 // Activation Time Delay, seconds (§4.4.3.1.1)
	GWPDTD          uint16 = 2 // Deactivation Time Delay, seconds (§4.4.3.1.1)
	GWPSenderIDBits uint16 = 3 // Sender-ID bits of the IV (§4.4.3.1.2, RFC 6054)
)

// AttrSignatureAlgorithmID is the transform attribute "Signature Algorithm
// Identifier" (TLV) of a GCAUTH Digital Signature transform: a DER
// AlgorithmIdentifier (RFC 9838 §4.4.2.1.1). The draft says "<TBA by
// IANA>"; 18 is the value of IANA's "IKEv2 Transform Attribute Types"
// registry as copied in two public repositories (a Python and a Rust table
// of IANA's IKEv2 parameters).
const AttrSignatureAlgorithmID uint16 = 18

// Bounds on the GSA payload.
const (
	MaxGroupPolicies = 32 // policies in one GSA payload
)

var gsaAttrNames = map[uint16]string{GSAKeyLifetime: "GSA_KEY_LIFETIME", GSAInitialMessageID: "GSA_INITIAL_MESSAGE_ID", GSANextSPI: "GSA_NEXT_SPI"}
var gwpAttrNames = map[uint16]string{GWPATD: "GWP_ATD", GWPDTD: "GWP_DTD", GWPSenderIDBits: "GWP_SENDER_ID_BITS"}

// GSAAttrName and GWPAttrName name attribute types of the two registries.
func GSAAttrName(t uint16) string { return nameOf(gsaAttrNames, t, "GSA_ATTR") }
func GWPAttrName(t uint16) string { return nameOf(gwpAttrNames, t, "GWP_ATTR") }

// GSA is the Group Security Association payload (RFC 9838 §4.4, Figure 16):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|   RESERVED  |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <Group Policies>                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// "GSA payload may contain zero or one GSA KEK policy, zero or more GSA TEK
// policies, and zero or one GW policy, where either one GSA KEK or GSA TEK
// policy MUST be present" (§4.4.1); parsing enforces exactly that and keeps
// the policies in wire order. "The first octet of the substructure
// unambiguously determines its type -- it is zero for GW policy and
// non-zero (actually, it is a security protocol ID) for GSA policies."
type GSA struct {
	Policies []*GroupPolicy
}

func (*GSA) Type() PayloadType { return PayloadGSA }

func (p *GSA) BodyLen() int {
	n := 0
	for _, g := range p.Policies {
		n += g.len()
	}
	return n
}

func (p *GSA) AppendBody(b []byte) []byte {
	for _, g := range p.Policies {
		b = g.append(b)
	}
	return b
}

// KEK returns the Rekey SA policy (protocol GIKE_UPDATE), or nil.
func (p *GSA) KEK() *GroupPolicy { return p.first(ProtoGIKEUpdate) }

// GW returns the group-wide policy, or nil.
func (p *GSA) GW() *GroupPolicy { return p.first(0) }

// TEKs returns the Data-Security SA policies (AH and ESP).
func (p *GSA) TEKs() []*GroupPolicy {
	var out []*GroupPolicy
	for _, g := range p.Policies {
		if g.Protocol == ProtoESP || g.Protocol == ProtoAH {
			out = append(out, g)
		}
	}
	return out
}

func (p *GSA) first(proto ProtocolID) *GroupPolicy {
	for _, g := range p.Policies {
		if g.Protocol == proto {
			return g
		}
	}
	return nil
}

// GroupPolicy is one policy substructure of a GSA payload: a GSA policy
// (Protocol GIKE_UPDATE for the Rekey SA, AH or ESP for a Data-Security SA)
// or, when Protocol is 0, the group-wide (GW) policy, which has only
// Attributes.
//
// GSA policy substructure (RFC 9838 §4.4.2, Figure 17):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    Protocol   |   SPI Size    |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                              SPI                              ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                  Source Traffic Selector                      ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                Destination Traffic Selector                   ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <GSA Transforms>                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <GSA Attributes>                        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The selectors have the format of RFC 7296 §3.13.1; the transforms that of
// §3.3.2 ("Last Substruc" 3, 0 for the last one), which is how parsing
// finds where the attributes start; the attributes that of §3.3.5. The SPI
// of a GIKE_UPDATE policy is 16 octets (the Rekey SA's IKE header SPI pair),
// of AH and ESP 4 octets: parsing enforces both sizes.
//
// GW policy substructure (RFC 9838 §4.4.3, Figure 18):
//
//	|    Protocol   |   RESERVED    |            Length             |
//	~                      <GW Policy Attributes>                   ~
//
// Which transforms a policy must hold (§4.4.2.1's table) is checked by
// Check, not by parsing, so a GM can still name what it refuses.
type GroupPolicy struct {
	Protocol   ProtocolID // 0: group-wide policy
	SPI        []byte
	Src, Dst   TrafficSelector
	Transforms []*Transform
	Attributes Attributes
}

// IsGW reports a group-wide policy.
func (g *GroupPolicy) IsGW() bool { return g.Protocol == 0 }

// Transform returns the policy's transform of type t, or nil.
func (g *GroupPolicy) Transform(t TransformType) *Transform {
	for _, tr := range g.Transforms {
		if tr.Type == t {
			return tr
		}
	}
	return nil
}

// SignatureAlgorithm returns the DER AlgorithmIdentifier of a GCAUTH
// Digital Signature transform (RFC 9838 §4.4.2.1.1).
func (t *Transform) SignatureAlgorithm() ([]byte, bool) {
	a, ok := t.Attributes.Get(AttrSignatureAlgorithmID)
	if !ok || a.Basic {
		return nil, false
	}
	return a.Data, true
}

func (g *GroupPolicy) len() int {
	if g.IsGW() {
		return 4 + g.Attributes.Len()
	}
	n := 4 + len(g.SPI) + g.Src.len() + g.Dst.len()
	for _, t := range g.Transforms {
		n += t.len()
	}
	return n + g.Attributes.Len()
}

func (g *GroupPolicy) append(b []byte) []byte {
	if g.IsGW() {
		b = append(b, 0, 0)
		b = appendU16(b, uint16(g.len()))
		return g.Attributes.Append(b)
	}
	b = append(b, byte(g.Protocol), byte(len(g.SPI)))
	b = appendU16(b, uint16(g.len()))
	b = append(b, g.SPI...)
	b = g.Src.append(b)
	b = g.Dst.append(b)
	for i, t := range g.Transforms {
		l := byte(moreTransforms)
		if i+1 == len(g.Transforms) {
			l = lastSubstruc
		}
		b = t.append(b, l)
	}
	return g.Attributes.Append(b)
}

// policySPISize is the SPI Size §4.4.2 gives a protocol, or -1 for one it
// does not define.
func policySPISize(p ProtocolID) int {
	switch p {
	case ProtoGIKEUpdate:
		return 16
	case ProtoAH, ProtoESP:
		return 4
	}
	return -1
}

func parseGSA(b []byte) (*GSA, error) {
	r := newReader("GSA payload", b)
	p := &GSA{}
	var kek, gw, sas int
	for r.err == nil && r.left() > 0 {
		if len(p.Policies) == MaxGroupPolicies {
			r.fail("more than %d policies", MaxGroupPolicies)
			break
		}
		at := r.off
		s := r.sub(2, 4)
		if r.err != nil {
			break
		}
		g, err := parseGroupPolicy(s)
		if err == nil {
			switch g.Protocol {
			case 0:
				gw++
			case ProtoGIKEUpdate:
				kek++
				sas++
			default:
				sas++
			}
			switch {
			case kek > 1:
				err = errMalformed("policy", 0, "a second GSA KEK policy (RFC 9838 §4.4.1: zero or one)")
			case gw > 1:
				err = errMalformed("policy", 0, "a second GW policy (RFC 9838 §4.4.1: zero or one)")
			}
		}
		if err != nil {
			r.err = wrapAt("GSA payload: policy "+itoa(len(p.Policies)+1), at, err)
			break
		}
		p.Policies = append(p.Policies, g)
	}
	if r.err == nil && sas == 0 {
		r.failAt(0, "no GSA KEK or GSA TEK policy (RFC 9838 §4.4.1)")
	}
	return p, r.err
}

func parseGroupPolicy(b []byte) (*GroupPolicy, error) {
	r := newReader("policy", b)
	g := &GroupPolicy{Protocol: ProtocolID(r.u8())}
	spiSize := int(r.u8())
	r.skip(2) // Length, checked by the caller
	if g.IsGW() {
		// The second octet is RESERVED in a GW policy: ignored.
		as, err := parseAttributes("GW policy attributes", b[4:])
		if err != nil {
			return g, wrapAt("GW policy", 4, err)
		}
		g.Attributes = as
		return g, checkGWPAttributes(g.Attributes)
	}
	if want := policySPISize(g.Protocol); want >= 0 && spiSize != want {
		return g, errMalformed("GSA policy", 1, "%s policy with SPI Size %d (must be %d)", g.Protocol, spiSize, want)
	}
	g.SPI = r.bytes(spiSize)
	if r.err != nil {
		return g, r.err
	}
	var err error
	var n int
	if g.Src, n, err = parseTrafficSelector(b[r.off:]); err != nil {
		return g, wrapAt("GSA policy: source selector", r.off, err)
	}
	r.take(n)
	if g.Dst, n, err = parseTrafficSelector(b[r.off:]); err != nil {
		return g, wrapAt("GSA policy: destination selector", r.off, err)
	}
	r.take(n)
	// Transforms up to the one whose Last Substruc is 0.
	for last := false; !last && r.err == nil; {
		if len(g.Transforms) == MaxTransforms {
			r.fail("more than %d transforms", MaxTransforms)
			break
		}
		at := r.off
		s := r.sub(2, transformLen)
		if r.err != nil {
			break
		}
		t, err := parseTransform(s)
		if err == nil && s[0] != lastSubstruc && s[0] != moreTransforms {
			err = errMalformed("transform", 0, "Last Substruc %d (must be 0 or 3)", s[0])
		}
		if err != nil {
			r.err = wrapAt("GSA policy: transform "+itoa(len(g.Transforms)+1), at, err)
			break
		}
		last = s[0] == lastSubstruc
		g.Transforms = append(g.Transforms, t)
	}
	if r.err != nil {
		return g, r.err
	}
	at := r.off
	as, err := parseAttributes("GSA attributes", b[at:])
	if err != nil {
		return g, wrapAt("GSA policy", at, err)
	}
	g.Attributes = as
	if err := checkGSAAttributes(g.Attributes, spiSize); err != nil {
		return g, wrapAt("GSA policy", at, err)
	}
	return g, nil
}

// checkGSAAttributes enforces the registry's Format and Multi-Valued columns
// (RFC 9838 §4.4.2.2) and the value sizes of §4.4.2.2.1-3.
func checkGSAAttributes(as Attributes, spiSize int) error {
	seen := map[uint16]bool{}
	for i, a := range as {
		known := a.Type == GSAKeyLifetime || a.Type == GSAInitialMessageID || a.Type == GSANextSPI
		if !known {
			continue
		}
		name := GSAAttrName(a.Type)
		want := 4
		if a.Type == GSANextSPI {
			want = spiSize
		}
		switch {
		case a.Basic:
			return errMalformed("GSA attributes", 0, "attribute %d: %s in TV format (must be TLV)", i+1, name)
		case len(a.Data) != want:
			return errMalformed("GSA attributes", 0, "attribute %d: %s of %d octets (must be %d)", i+1, name, len(a.Data), want)
		case seen[a.Type] && a.Type != GSANextSPI:
			return errMalformed("GSA attributes", 0, "attribute %d: a second %s", i+1, name)
		}
		seen[a.Type] = true
	}
	return nil
}

// checkGWPAttributes enforces the registry's Format and Multi-Valued columns
// (RFC 9838 §4.4.3.1): the three known attributes are TV, at most once.
func checkGWPAttributes(as Attributes) error {
	seen := map[uint16]bool{}
	for i, a := range as {
		if a.Type != GWPATD && a.Type != GWPDTD && a.Type != GWPSenderIDBits {
			continue
		}
		switch {
		case !a.Basic:
			return errMalformed("GW policy attributes", 0, "attribute %d: %s in TLV format (must be TV)", i+1, GWPAttrName(a.Type))
		case seen[a.Type]:
			return errMalformed("GW policy attributes", 0, "attribute %d: a second %s", i+1, GWPAttrName(a.Type))
		}
		seen[a.Type] = true
	}
	return nil
}

// Check verifies a GSA policy against RFC 9838 §4.4.2.1's table: "Exactly
// one instance of each mandatory transform type and at most one instance of
// each optional transform type MUST be present":
//
//	Protocol    Mandatory Types                       Optional Types
//	GIKE_UPDATE ENCR, INTEG*, GCAUTH**, KWA
//	ESP         ENCR, SN                              INTEG
//	AH          INTEG, SN
//
// (*) INTEG is absent or NONE with an AEAD cipher, present and not NONE
// otherwise; (**) GCAUTH only at registration (registration true: GSA_AUTH,
// GSA_REGISTRATION), never in a rekey. A GW policy and protocols the RFC does
// not define pass.
func (g *GroupPolicy) Check(registration bool) error {
	var mandatory, optional []TransformType
	switch g.Protocol {
	case ProtoGIKEUpdate:
		mandatory = []TransformType{TransformENCR, TransformKWA}
		if registration {
			mandatory = append(mandatory, TransformGCAUTH)
		}
		optional = []TransformType{TransformINTEG}
	case ProtoESP:
		mandatory = []TransformType{TransformENCR, TransformSN}
		optional = []TransformType{TransformINTEG}
	case ProtoAH:
		mandatory = []TransformType{TransformINTEG, TransformSN}
	default:
		return nil
	}
	count := map[TransformType]int{}
	for _, t := range g.Transforms {
		count[t.Type]++
	}
	for _, t := range mandatory {
		if count[t] != 1 {
			return fmt.Errorf("ikev2: %s policy has %d %s transforms (RFC 9838 §4.4.2.1: exactly one)", g.Protocol, count[t], t)
		}
		delete(count, t)
	}
	for _, t := range optional {
		if count[t] > 1 {
			return fmt.Errorf("ikev2: %s policy has %d %s transforms (RFC 9838 §4.4.2.1: at most one)", g.Protocol, count[t], t)
		}
		delete(count, t)
	}
	for t := range count {
		return fmt.Errorf("ikev2: %s policy has a %s transform, which RFC 9838 §4.4.2.1 does not allow there", g.Protocol, t)
	}
	if g.Protocol == ProtoGIKEUpdate {
		enc := g.Transform(TransformENCR)
		integ := g.Transform(TransformINTEG)
		hasInteg := integ != nil && integ.ID != IntegNone
		if aead := isAEAD(enc.ID); aead == hasInteg {
			return fmt.Errorf("ikev2: GIKE_UPDATE policy with %s and integrity %v (RFC 9838 §4.4.2.1: INTEG only without an AEAD cipher)", TransformIDName(TransformENCR, enc.ID), hasInteg)
		}
		if gc := g.Transform(TransformGCAUTH); gc != nil {
			_, hasAlg := gc.SignatureAlgorithm()
			if (gc.ID == GCAuthDigitalSignature) != hasAlg {
				return fmt.Errorf("ikev2: GCAUTH %s with Signature Algorithm Identifier %v (RFC 9838 §4.4.2.1.1: present with Digital Signature only)", TransformIDName(TransformGCAUTH, gc.ID), hasAlg)
			}
		}
	}
	return nil
}

func isAEAD(encr uint16) bool {
	switch encr {
	case EncrAESCCM8, EncrAESCCM12, EncrAESCCM16, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16, EncrChaCha20Poly1305:
		return true
	}
	return false
}
