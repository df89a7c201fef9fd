package isakmp

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// bypassSelectors are the deny entries `deny udp any eq 848 any eq 848`
// and `deny 89 any any` (OSPF) as a KS encodes them.
func bypassSelectors() []Selector {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	return []Selector{
		{Protocol: 17, Src: PrefixEndpoint(any4, 848), Dst: PrefixEndpoint(any4, 848)},
		{Protocol: 89, Src: PrefixEndpoint(any4, 0), Dst: PrefixEndpoint(any4, 0)},
	}
}

// The value of groupvpn-Bypass-Before for bypassSelectors, byte by byte
// as docs/wire.md lays it out.
const bypassGolden = "" +
	"11" + "04" + "0350" + "08" + "0000000000000000" + "04" + "0350" + "08" + "0000000000000000" +
	"59" + "04" + "0000" + "08" + "0000000000000000" + "04" + "0000" + "08" + "0000000000000000"

// proves: E3 (wire) — the deny entries of the match ACL are encoded as
// RFC 6407 Figure 8 selectors back to back, byte for byte as docs/wire.md
// says, and decode to the same selectors in the same order.
func TestBypassSelectorsGolden(t *testing.T) {
	b := AppendSelectors(nil, bypassSelectors())
	if got := hex.EncodeToString(b); got != bypassGolden {
		t.Fatalf("encoding\n got %s\nwant %s", got, bypassGolden)
	}
	got, err := ParseSelectors(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(AppendSelectors(nil, got), b) || got[0].Protocol != 17 || got[1].Protocol != 89 ||
		got[0].Src.Port != 848 || got[0].Dst.Port != 848 {
		t.Fatalf("round trip %+v", got)
	}
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(append([]byte{}, b...), 0),
		{17, 4, 3, 0x50, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}} { // subnet with 9 octets
		if _, err := ParseSelectors(bad); err == nil {
			t.Errorf("ParseSelectors(%x) accepted", bad)
		}
	}
}

// satWithBypass is a SAT for `permit ip 10.1.0.0 0.0.255.255 10.2.0.0
// 0.0.255.255` preceded by bypassSelectors in its ACL.
func satWithBypass() *SAT {
	s := goldenGroupSA().TEKs[0]
	s.Attributes = append(s.Attributes, VarAttr(IPsecBypassBefore, AppendSelectors(nil, bypassSelectors())))
	return s
}

// proves: E3 (wire) — a SAT carrying groupvpn-Bypass-Before (32005,
// variable form) survives the SA payload codec unchanged, and the
// attribute header is 7d05 then the 2-octet length.
func TestSATBypassRoundTrip(t *testing.T) {
	sa := &GroupSA{TEKs: []*SAT{satWithBypass()}}
	b := sa.AppendBody(nil)
	hdr := "7d05" + "0032" // AF=0, type 32005, 50 octets
	if !strings.Contains(hex.EncodeToString(b), hdr+bypassGolden) {
		t.Fatalf("SA body lacks %s%s:\n%x", hdr, bypassGolden, b)
	}
	got, err := parseGroupSA(b)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := got.TEKs[0].Attributes.Find(uint16(IPsecBypassBefore))
	if !ok || a.Basic || hex.EncodeToString(a.Data) != bypassGolden {
		t.Fatalf("attribute after round trip: %+v %v", a, ok)
	}
	if IPsecBypassBefore.String() != "groupvpn-Bypass-Before" || IPsecBypassAfter.String() != "groupvpn-Bypass-After" {
		t.Error("names")
	}
}

// proves: E3 (wire, third party) — tshark (Wireshark 4.0) decodes a
// GROUPKEY-PUSH and a GROUPKEY-PULL message 2 whose SAT carries the bypass
// attributes with nothing malformed beyond Wireshark's own pinned SAT
// length defect (wiresharkSATDefect, docs/wire.md): in the push, whose SA
// opens with a GAP, Wireshark shows the SA header, decodes none of its
// inner payloads and goes on to the KD and SIG without complaint;
// in the pull it reaches the SAT and fails on the selector exactly as it
// does without the attributes (one expert info), so the new attribute
// adds no malformation of its own.
func TestTsharkDecodesBypass(t *testing.T) {
	pushSA := goldenGroupSA()
	pushSA.KEK = nil
	pushSA.TEKs = []*SAT{satWithBypass()}
	pullSA := goldenGroupSA()
	pullSA.GAP = nil
	s := satWithBypass()
	s.Attributes = append(s.Attributes, VarAttr(IPsecBypassAfter, AppendSelectors(nil, bypassSelectors()[1:])))
	pullSA.TEKs = []*SAT{s}
	hash := &Hash{Data: bytes.Repeat([]byte{0x48}, 32)}
	msgs := []*Message{
		{Header: hdr(ExchangePush, 0), Payloads: []Payload{&SEQ{Number: 12}, pushSA, goldenKD(), &Sig{Data: bytes.Repeat([]byte{0x53}, 64)}}},
		{Header: hdr(ExchangePull, 0x0a0b0c0d), Payloads: []Payload{hash, &Nonce{Data: bytes.Repeat([]byte{0x4f}, 16)}, pullSA}},
	}
	var bs [][]byte
	for _, m := range msgs {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	frames := tsharkFrames(t, bs)
	push, pull := frames[0], frames[1]
	for _, w := range []string{"Sequence Number: 12", "SA Attribute Next Payload: 0016", "Number of Key Packets: 4"} {
		if !strings.Contains(push, w) {
			t.Errorf("push: tshark output lacks %q:\n%s", w, push)
		}
	}
	if strings.Contains(push, "Malformed") || strings.Contains(push, "Expert Info") {
		t.Errorf("push: tshark reports a malformation:\n%s", push)
	}
	if !strings.Contains(pull, wiresharkSATDefect) || strings.Count(pull, "Expert Info") != 1 {
		t.Errorf("pull: want exactly Wireshark's pinned SAT defect:\n%s", pull)
	}
}

// proves: E3 (hostile input) — no selector list panics the decoder, and
// whatever it accepts re-encodes to the same octets.
func FuzzParseSelectors(f *testing.F) {
	b, _ := hex.DecodeString(bypassGolden)
	f.Add(b)
	f.Add(b[:18])
	f.Add([]byte{0, 1, 0, 0, 4, 10, 0, 0, 1, 1, 0, 0, 4, 10, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := ParseSelectors(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendSelectors(nil, ss), b) {
			t.Fatalf("re-encoding differs: %x", b)
		}
	})
}
