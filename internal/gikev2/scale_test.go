package gikev2

import (
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// registerAllocs registers members GMs through GCKS.Register, then
// returns the heap allocations of one more registration (the average over
// 50, each a new member). Allocations are counted, not timed: the figure
// does not move with the machine's load.
func registerAllocs(t *testing.T, members int) float64 {
	t.Helper()
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	kwk := KWK{Alg: DefaultKWA, Key: make([]byte, 32)}
	n := 0
	register := func() {
		n++
		// 127.1.0.0 upward: never 127.0.0.66, which keyServer refuses.
		peer := ks.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(n >> 8), byte(n)}), 848), Identity: "gm"}
		if _, err := gcks.Register(peer, Request{Group: groupID, Sender: true, SenderIDs: 1}, kwk, t0); err != nil {
			t.Fatalf("registration %d: %v", n, err)
		}
	}
	for range members {
		register()
	}
	allocs := testing.AllocsPerRun(50, register)
	if got := srv.SnapshotOf(t0, false)[0].MemberCount; got != n {
		t.Fatalf("%d members registered, ks lists %d", n, got)
	}
	return allocs
}

// proves: N1, G2 (issue 17/18: a G-IKEv2 registration costs the same with
// 2,000 members as with 200: GCKS.Register reads ks's keys from a
// members-free snapshot and builds the group's GSA and KD values again only
// when ks's keys change, instead of copying and sorting the whole member
// table (ks.Server.State, Snapshot) on every registration; without the
// cache a registration at 2,000 members allocates over ten times what it
// does at 200)
func TestGIKEv2RegisterCostFlatInMembers(t *testing.T) {
	small, large := registerAllocs(t, 200), registerAllocs(t, 2000)
	t.Logf("allocations per registration: %.0f at 200 members, %.0f at 2,000", small, large)
	if large > small*1.2+5 {
		t.Fatalf("a registration allocates %.0f times at 2,000 members, %.0f at 200: its cost grows with the members", large, small)
	}
}
