package gikev2

import (
	"crypto"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
)

// KEK is a group's Rekey SA as the GCKS describes and keys it (RFC 9838
// §4.4.2 GIKE_UPDATE policy, §3.4 its keying material).
type KEK struct {
	SPI    [16]byte // SPIi | SPIr of the GSA_REKEY header
	Suite  RekeySuite
	Keymat []byte // GSK_e | GSK_a | GSK_w
	// Src and Dst are the rekeys' source (the GCKS) and destination (the
	// multicast group, or any address for unicast rekeys).
	Src, Dst wire.TrafficSelector
	Expires  time.Time
}

// TEK is one Data-Security SA (an ESP policy with its keys).
type TEK struct {
	SPI      uint32
	Encr     uint16 // IKEv2 ENCR ID
	KeyBits  int
	Integ    uint16 // IKEv2 INTEG ID; IntegNone for AEAD and GMAC
	SN       uint16 // SN32Bit or SN32BitUnspecified
	Selector ks.Selector
	// Keymat is the encryption key (with its salt for GCM, GMAC, CTR)
	// followed by the integrity key: RFC 7296 §2.17's order (RFC 9838 §3.4).
	Keymat   []byte
	Expires  time.Time
	Lifetime time.Duration // configured
}

// Group is what a GCKS serves a G-IKEv2 group: its policy and keys, from
// ks values (FromKS).
type Group struct {
	ID   uint32
	KEK  *KEK // nil: no Rekey SA
	TEKs []TEK
	// ATD and DTD are GWP_ATD and GWP_DTD of rekeys (0: not sent; a
	// registration installs at once, as GDOI's does); SIDBits is
	// GWP_SENDER_ID_BITS, sent to senders when a TEK is a counter mode.
	ATD, DTD time.Duration
	SIDBits  int
	// Signer is the group's rekey key: GCAUTH Digital Signature (RFC
	// 7427, RSA or ECDSA) with it; nil: Implicit.
	Signer crypto.Signer
}

// counterMode reports a TEK whose cipher needs Sender-IDs (RFC 9838 §2.5).
func (t *TEK) counterMode() bool {
	switch t.Encr {
	case wire.EncrAESCTR, wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16, wire.EncrNullAuthAESGMAC, wire.EncrAESCCM8, wire.EncrAESCCM12, wire.EncrAESCCM16:
		return true
	}
	return false
}

func (g *Group) counterMode() bool {
	for i := range g.TEKs {
		if g.TEKs[i].counterMode() {
			return true
		}
	}
	return false
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func lifetime(exp, now time.Time) []byte {
	s := exp.Sub(now).Seconds()
	if s < 1 {
		s = 1
	}
	if s > math.MaxUint32 {
		s = math.MaxUint32
	}
	return u32(uint32(s))
}

func keyLenAttr(bits int) wire.Attributes {
	return wire.Attributes{wire.BasicAttr(wire.AttrKeyLength, uint16(bits))}
}

// kekPolicy is the GIKE_UPDATE policy (§4.4.2): ENCR, INTEG without AEAD,
// KWA, and at registration GCAUTH and GSA_INITIAL_MESSAGE_ID when not 0.
func (g *Group) kekPolicy(now time.Time, registration bool, initialMID uint32) (*wire.GroupPolicy, error) {
	k := g.KEK
	p := &wire.GroupPolicy{Protocol: wire.ProtoGIKEUpdate, SPI: append([]byte(nil), k.SPI[:]...), Src: k.Src, Dst: k.Dst}
	p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformENCR, ID: k.Suite.Encr, Attributes: keyLenAttr(k.Suite.KeyBits)})
	if k.Suite.Integ != wire.IntegNone {
		p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformINTEG, ID: k.Suite.Integ})
	}
	p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformKWA, ID: k.Suite.KWA})
	if registration {
		if g.Signer != nil {
			alg, err := sigAlgOf(g.Signer.Public())
			if err != nil {
				return nil, err
			}
			p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformGCAUTH, ID: wire.GCAuthDigitalSignature,
				Attributes: wire.Attributes{wire.VarAttr(wire.AttrSignatureAlgorithmID, alg.der)}})
		} else {
			p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformGCAUTH, ID: wire.GCAuthImplicit})
		}
	}
	p.Attributes = wire.Attributes{wire.VarAttr(wire.GSAKeyLifetime, lifetime(k.Expires, now))}
	if initialMID != 0 {
		p.Attributes = append(p.Attributes, wire.VarAttr(wire.GSAInitialMessageID, u32(initialMID)))
	}
	return p, p.Check(registration)
}

// selectorTS is a ks.Selector's source and destination as traffic
// selectors (one protocol, one port or any).
func selectorTS(s ks.Selector) (src, dst wire.TrafficSelector) {
	ts := func(p netip.Prefix, port uint16) wire.TrafficSelector {
		t := wire.PrefixTS(p)
		t.IPProtocol = s.Proto
		if port != 0 {
			t.StartPort, t.EndPort = port, port
		}
		return t
	}
	return ts(s.Src, s.SrcPort), ts(s.Dst, s.DstPort)
}

func (t *TEK) policy(now time.Time) (*wire.GroupPolicy, error) {
	p := &wire.GroupPolicy{Protocol: wire.ProtoESP, SPI: u32(t.SPI)}
	p.Src, p.Dst = selectorTS(t.Selector)
	p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformENCR, ID: t.Encr, Attributes: keyLenAttr(t.KeyBits)})
	if t.Integ != wire.IntegNone {
		p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformINTEG, ID: t.Integ})
	}
	p.Transforms = append(p.Transforms, &wire.Transform{Type: wire.TransformSN, ID: t.SN})
	p.Attributes = wire.Attributes{wire.VarAttr(wire.GSAKeyLifetime, lifetime(t.Expires, now))}
	return p, p.Check(false)
}

func secs16(d time.Duration) uint16 {
	s := d / time.Second
	if s > math.MaxUint16 {
		s = math.MaxUint16
	}
	return uint16(s)
}

// gwPolicy is the group-wide policy: GWP_ATD and GWP_DTD as configured, and
// GWP_SENDER_ID_BITS for a sender at registration when a TEK is a counter
// mode (RFC 9838 §5 table, note 1). nil when it would be empty.
func (g *Group) gwPolicy(senderBits bool, atd, dtd time.Duration) *wire.GroupPolicy {
	var as wire.Attributes
	if atd > 0 {
		as = append(as, wire.BasicAttr(wire.GWPATD, secs16(atd)))
	}
	if dtd > 0 {
		as = append(as, wire.BasicAttr(wire.GWPDTD, secs16(dtd)))
	}
	if senderBits {
		as = append(as, wire.BasicAttr(wire.GWPSenderIDBits, uint16(g.SIDBits)))
	}
	if as == nil {
		return nil
	}
	return &wire.GroupPolicy{Attributes: as}
}

// gsa builds the GSA payload: the KEK policy (if any and kek), the TEKs,
// the GW policy.
func (g *Group) gsa(now time.Time, registration, kek, senderBits bool, initialMID uint32, atd, dtd time.Duration) (*wire.GSA, error) {
	out := &wire.GSA{}
	if kek && g.KEK != nil {
		p, err := g.kekPolicy(now, registration, initialMID)
		if err != nil {
			return nil, err
		}
		out.Policies = append(out.Policies, p)
	}
	for i := range g.TEKs {
		p, err := g.TEKs[i].policy(now)
		if err != nil {
			return nil, err
		}
		out.Policies = append(out.Policies, p)
	}
	if gw := g.gwPolicy(senderBits, atd, dtd); gw != nil {
		out.Policies = append(out.Policies, gw)
	}
	if len(out.Policies) == 0 || (len(out.Policies) == 1 && out.Policies[0].IsGW()) {
		return nil, fmt.Errorf("gikev2: group %d has no KEK or TEK policy to send (RFC 9838 §4.4.1)", g.ID)
	}
	return out, nil
}

// keyBags wraps the group's keys under kwk (KWK ID 0: the default KWK of
// the SA they travel over, §3.3): the KEK's (if kek) and every TEK's.
func (g *Group) keyBags(kwk KWK, kek bool) ([]*wire.KeyBag, error) {
	var bags []*wire.KeyBag
	add := func(proto wire.ProtocolID, spi, keymat []byte) error {
		w, err := kwk.Wrap(keymat)
		if err != nil {
			return err
		}
		bags = append(bags, &wire.KeyBag{Protocol: proto, SPI: spi, Attributes: wire.Attributes{wire.WrappedKey{Encrypted: w}.Attr(wire.KBSAKey)}})
		return nil
	}
	if kek && g.KEK != nil {
		if len(g.KEK.Keymat) != g.KEK.Suite.KeymatLen() {
			return nil, fmt.Errorf("gikev2: KEK keying material of %d octets (want %d)", len(g.KEK.Keymat), g.KEK.Suite.KeymatLen())
		}
		if err := add(wire.ProtoGIKEUpdate, append([]byte(nil), g.KEK.SPI[:]...), g.KEK.Keymat); err != nil {
			return nil, err
		}
	}
	for i := range g.TEKs {
		t := &g.TEKs[i]
		if len(t.Keymat) != tekKeymatLen(t.Encr, t.KeyBits, t.Integ) {
			return nil, fmt.Errorf("gikev2: TEK 0x%08x keying material of %d octets", t.SPI, len(t.Keymat))
		}
		if err := add(wire.ProtoESP, u32(t.SPI), t.Keymat); err != nil {
			return nil, err
		}
	}
	return bags, nil
}

// tekKeymatLen is the keying material of an ESP SA (RFC 7296 §2.17 with
// the salts of RFC 4106 §8.1, RFC 4543 §8.1, RFC 3686 §5.1); -1 for a
// transform this package does not carry.
func tekKeymatLen(encr uint16, bits int, integ uint16) int {
	n := bits / 8
	switch encr {
	case wire.EncrAESCBC:
	case wire.EncrAESGCM8, wire.EncrAESGCM12, wire.EncrAESGCM16, wire.EncrNullAuthAESGMAC, wire.EncrAESCTR:
		n += 4
	default:
		return -1
	}
	if bits != 128 && bits != 192 && bits != 256 {
		return -1
	}
	switch integ {
	case wire.IntegNone:
	case wire.IntegHMACSHA196:
		n += 20
	default:
		k, _, _ := integParams(integ)
		if k == 0 {
			return -1
		}
		n += k
	}
	return n
}
