package node

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// establishPhase1 runs k main modes against kn's first socket through
// the node's datagram path (kn not running: the test is its loop), each
// from an initiator of its own address (127.64.0.0/16), and returns when
// all are established.
func establishPhase1(t testing.TB, kn *Node, k int) {
	t.Helper()
	s := kn.socks[0]
	now := time.Now()
	for i := range k {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 64, byte(i >> 8), byte(i)}), 848)
		ep, err := ike.NewEndpoint(ikeCfg("k", version.Current), from, ike.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		sa, out, err := ep.Initiate(s.local, now)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if len(out.Send) == 0 {
				break
			}
			for _, p := range out.Send {
				kn.datagram(datagram{sock: s, from: from, data: p.Data})
			}
			q := s.out.q
			s.out.q = nil
			out = ike.Output{}
			for _, o := range q {
				r := ep.Handle(s.local, o.data, now)
				out.Send = append(out.Send, r.Send...)
			}
		}
		if sa.State() != ike.StateEstablished {
			t.Fatalf("main mode %d: %v", i, sa.State())
		}
	}
}

// proves: N1 and S5 (issue 18, review: a Prometheus scrape and the show
// commands that do not list the phase-1 SAs (`show crypto gdoi ks members
// | count` among them) no longer copy every phase-1 SA on the node's loop;
// they count them) — the snapshots a scrape (StateCounts) and `show crypto
// gdoi ks members` (StateMembers) take make the same allocations on the
// loop with 1,000 and with 20,000 phase-1 SAs (and take as long), and count them all
// (Phase1Count); `show crypto isakmp sa`'s (StatePhase1) still lists every
// one. Before, both copied them all: 214 us and 37 allocations with
// 1,000, 16.5 ms and 58 with 20,000 (3 and 2 us, 17 allocations after).
func TestSnapshotCostDoesNotGrowWithPhase1SAs(t *testing.T) {
	if testing.Short() {
		t.Skip("21,000 main modes (a few seconds): skipped with -short, runs in make test")
	}
	ksAddr := netip.MustParseAddr("127.0.0.17")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	defer kn.Close()
	type cost struct {
		counts, members float64
		took            time.Duration // the least of 5 scrapes' snapshots
	}
	measure := func(k int) cost {
		c := cost{took: time.Hour}
		for range 5 {
			start := time.Now()
			kn.snapshot(false, false)
			c.took = min(c.took, time.Since(start))
		}
		c.counts = testing.AllocsPerRun(20, func() {
			if s := kn.snapshot(false, false); s.Phase1Count != k || s.Phase1 != nil {
				t.Fatalf("counted snapshot: %d phase-1 SAs counted, %d listed; %d established", s.Phase1Count, len(s.Phase1), k)
			}
		})
		c.members = testing.AllocsPerRun(20, func() {
			if s := kn.snapshot(true, false); s.Phase1Count != k || s.Phase1 != nil {
				t.Fatalf("members' snapshot: %d phase-1 SAs counted, %d listed; %d established", s.Phase1Count, len(s.Phase1), k)
			}
		})
		if s := kn.snapshot(false, true); len(s.Phase1) != k || s.Phase1Count != k {
			t.Fatalf("phase-1 snapshot: %d listed, %d counted; %d established", len(s.Phase1), s.Phase1Count, k)
		}
		return c
	}
	establishPhase1(t, kn, 1000)
	small := measure(1000)
	establishPhase1(t, kn, 20000) // 127.64.0.0 .. : the first 1,000 again (INITIAL-CONTACT replaces them)
	large := measure(20000)
	t.Logf("on the loop: scrape's snapshot %v allocations, %v with 1,000 phase-1 SAs, %v, %v with 20,000; ks members' %v, %v allocations",
		small.counts, small.took, large.counts, large.took, small.members, large.members)
	if large.counts > small.counts || large.members > small.members {
		t.Fatalf("the snapshots' allocations grow with the phase-1 SAs: %+v at 1,000, %+v at 20,000", small, large)
	}
	if large.took > 5*small.took+time.Millisecond {
		t.Fatalf("the scrape's snapshot grows with the phase-1 SAs: %v at 1,000, %v at 20,000", small.took, large.took)
	}
}
