package coop

import (
	"net/netip"
	"testing"
	"time"
)

// proves: C1 (issue 16: election, failover, partition and merge over 24 h
// of protocol time: three key servers under random partitions, crashes
// and restarts, with delivery jitter and loss; once the configured
// convergence time has passed since the last change, every connected
// component of live key servers has exactly one primary, all its members
// follow it,)
func TestDayOfRandomPartitions(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		start := time.Now()
		s := newSim(t, seed, 100, 200, 200, 50)
		s.jitter = 50 * time.Millisecond
		s.loss = 0.002
		s.startAll()
		side := map[netip.Addr]int{}
		s.cut = func(a, b netip.Addr) bool { return side[a] != side[b] }
		dead := DefaultPeriod * DefaultDeadPeriods
		// worst case: dead interval to miss the primary, then the
		// election fallback (another dead interval), plus delivery.
		conv := DefaultElectionWait + 2*dead + time.Second
		lastChange := s.now
		checks, changes := 0, 0
		check := func() {
			if s.now.Sub(lastChange) < conv {
				return
			}
			checks++
			comps := map[int][]netip.Addr{}
			for _, a := range s.order {
				if s.nodes[a].alive {
					comps[side[a]] = append(comps[side[a]], a)
				}
			}
			for c, members := range comps {
				var prim []netip.Addr
				for _, a := range members {
					if s.nodes[a].e.Role() == Primary {
						prim = append(prim, a)
					}
				}
				if len(prim) != 1 {
					t.Fatalf("seed %d at +%v (%v after the last change): component %d %v has primaries %v", seed, s.now.Sub(t0), s.now.Sub(lastChange), c, members, prim)
				}
				for _, a := range members {
					if got := s.nodes[a].e.Primary(); got != prim[0] {
						t.Fatalf("seed %d at +%v: %v follows %v, the component's primary is %v", seed, s.now.Sub(t0), a, got, prim[0])
					}
				}
			}
		}
		for s.now.Sub(t0) < 24*time.Hour {
			s.run(time.Duration(5+s.rng.IntN(55))*time.Minute, check)
			changes++
			lastChange = s.now
			switch s.rng.IntN(4) {
			case 0: // heal
				clear(side)
			case 1: // crash or restart one
				a := s.order[s.rng.IntN(len(s.order))]
				if s.nodes[a].alive {
					s.kill(a)
				} else {
					s.start(a)
				}
			default: // a new partition
				for _, a := range s.order {
					side[a] = s.rng.IntN(3)
				}
			}
		}
		if checks == 0 || changes < 20 {
			t.Fatalf("seed %d: %d checks over %d changes", seed, checks, changes)
		}
		t.Logf("seed %d: 24 h, %d changes, %d checks, %d announcements dropped, in %v", seed, changes, checks, s.dropped, time.Since(start))
	}
}
