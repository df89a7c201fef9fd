package gikev2

import (
	"fmt"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// SupportedSAg is the SAg payload of a groupvpn GM (RFC 9838 §4.3): the
// transforms its data plane and this package run, one proposal per
// protocol, all numbered 1 (no dependency between them, §2.3.3), SPI
// empty. The GIKE_UPDATE proposal names the key wrap algorithms, as "MUST"
// when SAg is sent (§4.5.4).
func SupportedSAg() *wire.SA {
	enc := func(id uint16, bits ...int) []*wire.Transform {
		var ts []*wire.Transform
		for _, b := range bits {
			ts = append(ts, &wire.Transform{Type: wire.TransformENCR, ID: id, Attributes: keyLenAttr(b)})
		}
		return ts
	}
	var esp []*wire.Transform
	esp = append(esp, enc(wire.EncrAESGCM16, 256, 192, 128)...)
	esp = append(esp, enc(wire.EncrAESGCM12, 256, 192, 128)...)
	esp = append(esp, enc(wire.EncrAESGCM8, 256, 192, 128)...)
	esp = append(esp, enc(wire.EncrNullAuthAESGMAC, 256, 192, 128)...)
	esp = append(esp, enc(wire.EncrAESCBC, 256, 192, 128)...)
	for _, i := range []uint16{wire.IntegHMACSHA2256128, wire.IntegHMACSHA2384192, wire.IntegHMACSHA2512256, wire.IntegHMACSHA196} {
		esp = append(esp, &wire.Transform{Type: wire.TransformINTEG, ID: i})
	}
	esp = append(esp, &wire.Transform{Type: wire.TransformSN, ID: wire.SN32Bit}, &wire.Transform{Type: wire.TransformSN, ID: wire.SN32BitUnspecified})
	var kek []*wire.Transform
	kek = append(kek, enc(wire.EncrAESGCM16, 256, 192, 128)...)
	kek = append(kek, enc(wire.EncrAESCBC, 256, 192, 128)...)
	for _, i := range []uint16{wire.IntegHMACSHA2256128, wire.IntegHMACSHA2384192, wire.IntegHMACSHA2512256} {
		kek = append(kek, &wire.Transform{Type: wire.TransformINTEG, ID: i})
	}
	for _, k := range []uint16{wire.KWA5649AES256, wire.KWA5649AES192, wire.KWA5649AES128} {
		kek = append(kek, &wire.Transform{Type: wire.TransformKWA, ID: k})
	}
	kek = append(kek, &wire.Transform{Type: wire.TransformGCAUTH, ID: wire.GCAuthDigitalSignature}, &wire.Transform{Type: wire.TransformGCAUTH, ID: wire.GCAuthImplicit})
	return &wire.SA{Proposals: []*wire.Proposal{
		{Number: 1, Protocol: wire.ProtoESP, Transforms: esp},
		{Number: 1, Protocol: wire.ProtoGIKEUpdate, Transforms: kek},
	}}
}

// CheckSAg is the GCKS's evaluation of a GM's SAg (§2.3.4, §4.3): every
// transform of the group's policies must be in some proposal for its
// protocol (proposals of the same number taken together, §2.3.3), else the
// registration is refused with NO_PROPOSAL_CHOSEN. Protocols the SAg does
// not mention are not restricted.
func (g *Group) CheckSAg(sag *wire.SA) error {
	if sag == nil {
		return nil
	}
	type want struct {
		proto wire.ProtocolID
		ts    []*wire.Transform
	}
	var wants []want
	if k := g.KEK; k != nil {
		ts := []*wire.Transform{{Type: wire.TransformENCR, ID: k.Suite.Encr, Attributes: keyLenAttr(k.Suite.KeyBits)}, {Type: wire.TransformKWA, ID: k.Suite.KWA}}
		if k.Suite.Integ != wire.IntegNone {
			ts = append(ts, &wire.Transform{Type: wire.TransformINTEG, ID: k.Suite.Integ})
		}
		gc := uint16(wire.GCAuthImplicit)
		if g.Signer != nil {
			gc = wire.GCAuthDigitalSignature
		}
		wants = append(wants, want{wire.ProtoGIKEUpdate, append(ts, &wire.Transform{Type: wire.TransformGCAUTH, ID: gc})})
	}
	for _, t := range g.TEKs {
		ts := []*wire.Transform{{Type: wire.TransformENCR, ID: t.Encr, Attributes: keyLenAttr(t.KeyBits)}, {Type: wire.TransformSN, ID: t.SN}}
		if t.Integ != wire.IntegNone {
			ts = append(ts, &wire.Transform{Type: wire.TransformINTEG, ID: t.Integ})
		}
		wants = append(wants, want{wire.ProtoESP, ts})
	}
	// Proposal numbers: a set of proposals sharing one must hold every
	// protocol's transforms the SAg restricts.
	nums := map[uint8]bool{}
	for _, p := range sag.Proposals {
		nums[p.Number] = true
	}
	var last error
	for n := range nums {
		ok := true
		for _, w := range wants {
			mentioned, found := false, false
			for _, p := range sag.Proposals {
				if p.Protocol != w.proto {
					continue
				}
				mentioned = true
				if p.Number == n && hasAll(p.Transforms, w.ts) {
					found = true
				}
			}
			if mentioned && !found {
				ok = false
				last = fmt.Errorf("the GM's SAg has no %s proposal with the group's %v", w.proto, w.ts)
			}
		}
		if ok {
			return nil
		}
	}
	return refuse(wire.NotifyNoProposalChosen, "%v", last)
}

func hasAll(have, want []*wire.Transform) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h.Type == w.Type && h.ID == w.ID && (w.KeyLength() == 0 || h.KeyLength() == w.KeyLength()) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
