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
