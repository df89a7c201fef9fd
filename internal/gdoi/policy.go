package gdoi

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// The payloads a key server sends, built from plain values: the key
// server (internal/ks) decides what they say, this file how GDOI says it
// (RFC 6407 §5.3-5.6, RFC 8263, and groupvpn's notifications: wire.md).

// KEKPolicy is what a SAK payload describes: the rekey SA (RFC 6407
// §5.3).
type KEKPolicy struct {
	Src       netip.Addr     // the KS address rekeys come from
	Multicast netip.AddrPort // the group multicast rekeys go to; invalid: unicast
	SPI       [isakmp.KEKSPILen]byte
	KeyBits   int           // AES key length
	Remaining time.Duration // lifetime left
	SigAlg    isakmp.SigAlg
	SigBits   int
	Ack       bool // unicast rekeys: the KS asks for acknowledgements (RFC 8263)
}

// SAK is the SA KEK payload of p.
func (p KEKPolicy) SAK() *isakmp.SAK {
	sak := &isakmp.SAK{
		Selector: isakmp.Selector{Protocol: 17,
			Src: isakmp.PrefixEndpoint(netip.PrefixFrom(p.Src, p.Src.BitLen()), 848),
			Dst: rekeyDst(p.Src, p.Multicast)},
		SPI: p.SPI,
		Attributes: isakmp.Attributes{
			isakmp.BasicAttr(isakmp.KEKAlgorithm, uint16(isakmp.KEKAlgAES)),
			isakmp.BasicAttr(isakmp.KEKKeyLength, uint16(p.KeyBits)),
			isakmp.VarAttr(isakmp.KEKKeyLifetime, binary.BigEndian.AppendUint32(nil, seconds(p.Remaining))),
			isakmp.BasicAttr(isakmp.KEKSigHashAlgorithm, uint16(isakmp.SigHashSHA256)),
			isakmp.BasicAttr(isakmp.KEKSigAlgorithm, uint16(p.SigAlg)),
			isakmp.BasicAttr(isakmp.KEKSigKeyLength, uint16(p.SigBits)),
		}}
	if p.Ack {
		sak.Attributes = append(sak.Attributes, isakmp.BasicAttr(isakmp.KEKAckRequested, isakmp.AckKEKSHA256))
	}
	return sak
}

// rekeyDst is the SAK's destination: the multicast group rekeys go to,
// which GMs join, or any address for unicast rekeys.
func rekeyDst(ks netip.Addr, mc netip.AddrPort) isakmp.Endpoint {
	if mc.IsValid() {
		return isakmp.PrefixEndpoint(netip.PrefixFrom(mc.Addr(), 32), mc.Port())
	}
	return isakmp.PrefixEndpoint(netip.PrefixFrom(unspecified(ks), 0), 848)
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// seconds is a lifetime left as the attributes carry it: whole seconds,
// at least 1.
func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s < 1 {
		return 1
	}
	return uint32(s)
}

// TEKPolicy is what a SAT payload describes: one TEK's transform and the
// traffic it protects (RFC 6407 §5.4).
type TEKPolicy struct {
	Selector    isakmp.Selector
	Transform   isakmp.ESPTransform
	SPI         uint32
	KeyBits     int
	AuthAlg     uint16        // 0 for GCM/GMAC
	Remaining   time.Duration // lifetime left
	Lifetime    time.Duration // configured lifetime (groupvpn's attribute: wire.md)
	ReceiveOnly bool
	// Replay method and window; Pseudotime with time-based anti-replay.
	Replay       uint16
	ReplayWindow int
	Pseudotime   time.Duration
	// BypassBefore and BypassAfter are the deny entries around Selector,
	// in ACL order (wire.md).
	BypassBefore, BypassAfter []isakmp.Selector
}

// SAT is the SA TEK payload of p.
//
// A key server lays it out once per TEK per change of the group
// (laidout.go), not per registration; the attributes and their values are
// laid out in one allocation each (issue 18).
func (p TEKPolicy) SAT() *isakmp.SAT {
	vals := make([]byte, 0, 16) // the values of the variable-length attributes: 4 + 4 + 8 octets
	attrs := make(isakmp.Attributes, 0, p.satAttrs())
	vals = binary.BigEndian.AppendUint32(vals, seconds(p.Remaining))
	attrs = append(attrs,
		isakmp.BasicAttr(isakmp.IPsecSALifeType, isakmp.LifeSeconds),
		isakmp.VarAttr(isakmp.IPsecSALifeDuration, vals[0:4:4]),
		isakmp.BasicAttr(isakmp.IPsecEncapsulationMode, isakmp.EncapTunnel))
	if p.AuthAlg != 0 {
		attrs = append(attrs, isakmp.BasicAttr(isakmp.IPsecAuthAlgorithm, p.AuthAlg))
	}
	attrs = append(attrs, isakmp.BasicAttr(isakmp.IPsecKeyLength, uint16(p.KeyBits)))
	if p.ReceiveOnly {
		attrs = append(attrs, isakmp.BasicAttr(isakmp.IPsecSADirection, isakmp.SADirReceiverOnly))
	}
	vals = binary.BigEndian.AppendUint32(vals, uint32(p.Lifetime/time.Second))
	attrs = append(attrs, isakmp.VarAttr(isakmp.IPsecConfiguredLifetime, vals[4:8:8]))
	if m := p.Replay; m != 0 {
		attrs = append(attrs, isakmp.BasicAttr(isakmp.IPsecReplayMethod, m))
		if m != isakmp.ReplayNone {
			attrs = append(attrs, isakmp.BasicAttr(isakmp.IPsecReplayWindow, uint16(p.ReplayWindow)))
		}
		if m == isakmp.ReplayTime {
			vals = binary.BigEndian.AppendUint64(vals, uint64(p.Pseudotime/time.Millisecond))
			attrs = append(attrs, isakmp.VarAttr(isakmp.IPsecPseudotime, vals[8:16:16]))
		}
	}
	if len(p.BypassBefore) > 0 {
		attrs = append(attrs, isakmp.VarAttr(isakmp.IPsecBypassBefore, BypassList(p.BypassBefore)))
	}
	if len(p.BypassAfter) > 0 {
		attrs = append(attrs, isakmp.VarAttr(isakmp.IPsecBypassAfter, BypassList(p.BypassAfter)))
	}
	return &isakmp.SAT{Protocol: isakmp.TEKProtoESP, Selector: p.Selector, TransformID: uint8(p.Transform), SPI: p.SPI, Attributes: attrs}
}

// satAttrs is the number of attributes SAT lays out: its slice is made
// to measure (12 * 32 octets for every TEK of every registration, before).
func (p TEKPolicy) satAttrs() int {
	n := 5 // life type and duration, encapsulation, key length, configured lifetime
	for _, b := range []bool{p.AuthAlg != 0, p.ReceiveOnly, p.Replay != 0, p.Replay != 0 && p.Replay != isakmp.ReplayNone,
		p.Replay == isakmp.ReplayTime, len(p.BypassBefore) > 0, len(p.BypassAfter) > 0} {
		if b {
			n++
		}
	}
	return n
}

// BypassList is the value of IPsecBypassBefore/After (wire.md); more than
// 65,535 octets do not fit an attribute.
func BypassList(ss []isakmp.Selector) []byte { return isakmp.AppendSelectors(nil, ss) }

// TEKKeyPacket is a TEK's key packet (RFC 6407 §5.6.1); auth is nil for
// GCM/GMAC.
func TEKKeyPacket(spi uint32, enc, auth []byte) *isakmp.KeyPacket {
	attrs := append(make(isakmp.Attributes, 0, 2), isakmp.VarAttr(isakmp.TEKAlgorithmKey, enc))
	if auth != nil {
		attrs = append(attrs, isakmp.VarAttr(isakmp.TEKIntegrityKey, auth))
	}
	return &isakmp.KeyPacket{KDType: isakmp.KDTEK, SPI: binary.BigEndian.AppendUint32(nil, spi), Attributes: attrs}
}

// KEKKeyPacket is the KEK's key packet (RFC 6407 §5.6.2): its key (IV
// then AES key) and the KS's public signing key.
func KEKKeyPacket(spi [isakmp.KEKSPILen]byte, key, sigPub []byte) *isakmp.KeyPacket {
	return &isakmp.KeyPacket{KDType: isakmp.KDKEK, SPI: append([]byte{}, spi[:]...), Attributes: isakmp.Attributes{
		isakmp.VarAttr(isakmp.KEKAlgorithmKey, key), isakmp.VarAttr(isakmp.KEKSigKey, sigPub)}}
}

// SIDKeyPacket hands out sender IDs of bits bits (RFC 6407 §5.6.4).
func SIDKeyPacket(bits int, sids []uint32) *isakmp.KeyPacket {
	p := &isakmp.KeyPacket{KDType: isakmp.KDSID, Attributes: make(isakmp.Attributes, 0, 1+len(sids))}
	p.Attributes = append(p.Attributes, isakmp.BasicAttr(isakmp.SIDNumberOfBits, uint16(bits)))
	vals := make([]byte, 0, 4*len(sids)) // one allocation for the values
	for _, sid := range sids {
		vals = binary.BigEndian.AppendUint32(vals, sid)
		p.Attributes = append(p.Attributes, isakmp.VarAttr(isakmp.SIDValue, vals[len(vals)-4:len(vals):len(vals)]))
	}
	return p
}

// RekeyGAP is a rekey's GAP payload: the activation and deactivation time
// delays (RFC 6407 §5.4.1).
func RekeyGAP(atd, dtd time.Duration) *isakmp.GAP {
	return &isakmp.GAP{Attributes: isakmp.Attributes{
		isakmp.BasicAttr(isakmp.GAPActivationTimeDelay, uint16(atd/time.Second)),
		isakmp.BasicAttr(isakmp.GAPDeactivationTimeDelay, uint16(dtd/time.Second))}}
}

// PolicyReplace is groupvpn's POLICY-REPLACE notification under the KEK
// spi, mode isakmp.ModeShorten or ModeNow (wire.md, SPEC P2-P6).
func PolicyReplace(spi [isakmp.KEKSPILen]byte, mode byte) *isakmp.Notify {
	return &isakmp.Notify{DOI: isakmp.DOIGDOI, Protocol: isakmp.ProtoGDOIKEK, NotifyType: isakmp.NotifyPolicyReplace,
		SPI: append([]byte{}, spi[:]...), Data: []byte{mode}}
}

// Removal is groupvpn's GM-removal rekey (wire.md, SPEC R1-R4): the
// GM-REMOVAL notification under the KEK spi and the KEK's Delete; with
// now (isakmp.ModeNow) every TEK's Delete too.
func Removal(seq uint32, spi [isakmp.KEKSPILen]byte, now bool) *Rekey {
	mode := isakmp.ModeShorten
	if now {
		mode = isakmp.ModeNow
	}
	r := &Rekey{Seq: seq,
		Notifies: []*isakmp.Notify{{DOI: isakmp.DOIGDOI, Protocol: isakmp.ProtoGDOIKEK, NotifyType: isakmp.NotifyGMRemoval,
			SPI: append([]byte{}, spi[:]...), Data: []byte{mode}}},
		Deletes: []*isakmp.Delete{{DOI: isakmp.DOIGDOI, Protocol: isakmp.ProtoGDOIKEK, SPISize: isakmp.KEKSPILen, SPIs: [][]byte{append([]byte{}, spi[:]...)}}}}
	if now {
		r.Deletes = append(r.Deletes, &isakmp.Delete{DOI: isakmp.DOIGDOI, Protocol: isakmp.ProtocolID(isakmp.TEKProtoESP), SPISize: 4, SPIs: [][]byte{{0, 0, 0, 0}}})
	}
	return r
}

// ReregistrationWindow is how long before its keys end a GM registers
// again, one to two of these (SPEC T4): 5% of the TEK lifetime, at least
// 30 s and at most 10 min. The KS rekeys three of them before keys end,
// so that GMs hear the rekey before they would register again.
func ReregistrationWindow(lifetime time.Duration) time.Duration {
	return min(max(lifetime/20, 30*time.Second), 10*time.Minute)
}
