package node

import (
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1 (issue 18: allocations per registration) — the KS's
// description of a phase-1 peer identified by an ID carries the ID, not
// its text, which ks formats only when it needs it (a member's identity,
// a refusal's log line): none per GROUPKEY-PULL message (one each before).
func TestKSPeerFormatsNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	info := ike.Info{Peer: netip.MustParseAddrPort("10.0.0.9:848"), PeerID: &isakmp.ID{IDType: isakmp.IDIPv4Addr, Data: []byte{10, 0, 0, 9}}}
	if p := ksPeer(info); p.ID != info.PeerID || p.Identity != "" || p.Addr != info.Peer {
		t.Fatalf("ksPeer: %+v", p)
	}
	if n := testing.AllocsPerRun(100, func() { ksPeer(info) }); n != 0 {
		t.Fatalf("ksPeer: %.0f allocations, want 0", n)
	}
}
