package gdoi

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1 (issue 18: the KS builds its group policy and key download
// per registration) — a TEK's SAT payload with time-based anti-replay and
// a member's sender-ID key packet with 8 IDs are built with at most 4
// and 3 allocations (3 each here: the payload, its attribute list, its
// values; 7 and 13 before: the list grown by append, each value a slice
// of its own).
func TestPolicyPayloadAllocations(t *testing.T) {
	p := TEKPolicy{Selector: isakmp.Selector{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0),
		Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0)},
		Transform: isakmp.ESPAESGCM16, SPI: 9, KeyBits: 256, Remaining: time.Hour, Lifetime: time.Hour,
		ReceiveOnly: true, Replay: isakmp.ReplayTime, ReplayWindow: 64, Pseudotime: time.Minute}
	sat := testing.AllocsPerRun(100, func() { p.SAT() })
	sids := []uint32{1, 2, 3, 4, 5, 6, 7, 8}
	sid := testing.AllocsPerRun(100, func() { SIDKeyPacket(16, sids) })
	t.Logf("SAT: %.0f allocations, SID key packet: %.0f", sat, sid)
	if sat > 4 || sid > 3 {
		t.Fatalf("SAT: %.0f allocations (want at most 4), SID key packet: %.0f (want at most 3)", sat, sid)
	}
}

// proves: N1 (issue 18: the KS builds a SAT per TEK per registration) —
// SAT's attribute list is made to measure whatever options the policy has
// (satAttrs counts what SAT appends), so it is never grown nor oversized.
func TestSATAttributesToMeasure(t *testing.T) {
	base := TEKPolicy{Transform: isakmp.ESPAESCBC, SPI: 9, KeyBits: 128, Remaining: time.Hour, Lifetime: time.Hour}
	bypass := []isakmp.Selector{{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.9.0.0/16"), 0), Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("0.0.0.0/0"), 0)}}
	for mask := range 1 << 6 {
		p := base
		if mask&1 != 0 {
			p.AuthAlg = 2 // HMAC-SHA1
		}
		if mask&2 != 0 {
			p.ReceiveOnly = true
		}
		switch mask >> 2 & 3 {
		case 1:
			p.Replay = isakmp.ReplayNone
		case 2:
			p.Replay, p.ReplayWindow = isakmp.ReplayCounter, 64
		case 3:
			p.Replay, p.ReplayWindow, p.Pseudotime = isakmp.ReplayTime, 64, time.Minute
		}
		if mask&16 != 0 {
			p.BypassBefore = bypass
		}
		if mask&32 != 0 {
			p.BypassAfter = bypass
		}
		if a := p.SAT().Attributes; len(a) != cap(a) {
			t.Fatalf("policy %#v: %d attributes in a list of %d", p, len(a), cap(a))
		}
	}
}
