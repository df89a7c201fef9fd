package ks

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// deltaAddrs is the addresses a periodic save lists, sorted; whole when
// it is no delta.
func deltaAddrs(t *testing.T, res Result) (addrs []netip.Addr, whole bool) {
	t.Helper()
	if len(res.Save) != 1 {
		t.Fatalf("%d states saved, want 1", len(res.Save))
	}
	for _, m := range res.Save[0].Members {
		addrs = append(addrs, m.Address)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, !res.Save[0].Delta
}

// proves: O4 (issue 18: the periodic save lists the members changed
// since the last state handed out, and a write that must carry every
// member still does) — after the first whole write, each periodic save
// is a delta of the members registered or missing rekeys since; a rekey
// whose write before send fails leaves them listed for the next (the
// failed write's members were not written); one whose write succeeds
// wrote every member with its keys, so the next delta starts from it; a
// GM removal marks every member changed (the next save is whole when its
// write failed), and a restart makes the first save whole.
func TestPeriodicSaveIsDeltaOfChangedMembers(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x, st := failedSaveSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), t0)
	x.join(0, 5)
	tick := func() Result {
		x.now = x.now.Add(2 * SaveInterval)
		res := x.d.Tick(x.now)
		for _, gs := range res.Save {
			if err := st.SaveGroup(gs); err != nil {
				t.Fatal(err)
			}
		}
		return res
	}
	if got, whole := deltaAddrs(t, tick()); whole || len(got) != 5 {
		t.Fatalf("first periodic save after Restore's whole write: %v (whole %v), want a delta of the 5 registered", got, whole)
	}
	x.join(3, 1)
	x.srv.Missed("G", member(4).Addr())
	if got, whole := deltaAddrs(t, tick()); whole || !slices.Equal(got, []netip.Addr{member(3).Addr(), member(4).Addr()}) {
		t.Fatalf("periodic save after one registration and one missed rekey: %v (whole %v)", got, whole)
	}
	// An acknowledgement changes a stored field only when it ends misses.
	x.srv.Acked("G", member(0).Addr(), 1)
	x.srv.Acked("G", member(4).Addr(), 1)
	if got, _ := deltaAddrs(t, tick()); !slices.Equal(got, []netip.Addr{member(4).Addr()}) {
		t.Fatalf("periodic save after two acknowledgements: %v, want the member whose misses ended", got)
	}

	x.join(1, 1)
	st.fail = true
	if _, err := x.d.Rekey("G", x.now); err == nil {
		t.Fatal("a rekey was sent though its keys were not saved")
	}
	st.fail = false
	if got, whole := deltaAddrs(t, tick()); whole || !slices.Equal(got, []netip.Addr{member(1).Addr()}) {
		t.Fatalf("periodic save after a failed rekey write: %v (whole %v), want the member registered before it", got, whole)
	}
	x.join(2, 1)
	if _, err := x.d.Rekey("G", x.now); err != nil {
		t.Fatal(err)
	}
	if got := st.groups["G"].Members; len(got) != 5 {
		t.Fatalf("the rekey's write holds %d members, want all 5", len(got))
	}
	x.srv.Acked("G", member(0).Addr(), 2) // something to save, no stored field changed
	if got, whole := deltaAddrs(t, tick()); whole || len(got) != 0 {
		t.Fatalf("periodic save after a rekey wrote every member: %v (whole %v), want none", got, whole)
	}

	st.fail = true
	if _, _, err := x.d.Remove("G", false, x.now); err == nil {
		t.Fatal("a removal was sent though its keys were not saved")
	}
	st.fail = false
	x.srv.Acked("G", member(0).Addr(), 2)
	if got, whole := deltaAddrs(t, tick()); !whole || len(got) != 5 {
		t.Fatalf("periodic save after a failed GM removal: %d members (whole %v), want all 5", len(got), whole)
	}
	for _, m := range st.groups["G"].Members {
		if m.Removed {
			t.Fatalf("member %s saved off the rekey list by a removal that was not sent", m.Address)
		}
	}

	// A restart: the first periodic save after Restore's whole write is
	// a delta; the server's own first state after Restore is whole.
	srv := New(Options{})
	if err := srv.AddGroup(x.srv.byName["G"].cfg, x.now); err != nil {
		t.Fatal(err)
	}
	stored, _ := st.LoadGroups()
	if err := srv.Restore(stored[0], x.now); err != nil {
		t.Fatal(err)
	}
	gs, err := srv.DeltaState("G", x.now)
	if err != nil || gs.Delta || len(gs.Members) != 5 {
		t.Fatalf("first DeltaState after Restore: %v, %v; want all 5 members, whole", gs, err)
	}
	if gs, _ = srv.DeltaState("G", x.now); !gs.Delta || len(gs.Members) != 0 {
		t.Fatalf("second DeltaState, nothing changed: %v", gs)
	}
}
