package gm

import (
	"testing"
	"time"
)

// proves: groundwork (one GM, two groups, one KS: one phase-1 SA) — a
// member's main mode in flight is offered to another group's member only
// in its first JoinWithin, with the time it began; a member that joined
// it offers it with that time, not its own, so a main mode its first
// member gave up on is not joined again and again.
func TestPhase1InFlightOfferedWithinJoinWithin(t *testing.T) {
	w := newWorld(t, "10.0.0.1:848")
	ks := w.kss[0].addr
	sa, _, err := w.gmEP.Initiate(ks, w.now)
	if err != nil {
		t.Fatal(err)
	}
	w.m.ks = ks // as the Connect that asked for the main mode set it
	w.m.Phase1Started(sa, w.now)
	if p1, began := w.m.Phase1InFlight(ks, w.now.Add(JoinWithin-time.Millisecond)); p1 != sa || !began.Equal(w.now) {
		t.Fatalf("in flight %v since %s, want the SA since %s", p1, began, w.now)
	}
	if p1, _ := w.m.Phase1InFlight(ks, w.now.Add(JoinWithin)); p1 != nil {
		t.Fatal("a main mode offered JoinWithin after it began")
	}
	other := NewMember(Config{Name: "SECOND", ID: 5678, Servers: w.m.cfg.Servers, SIDs: 1}, Options{Dataplane: w.dp, KEKs: w.dp, Rand: w.rnd})
	other.ks = ks
	other.Phase1Joined(sa, w.now, w.now.Add(4*time.Second))
	if !other.AwaitsPhase1(ks) {
		t.Fatal("the joining member does not wait for the phase 1")
	}
	if p1, began := other.Phase1InFlight(ks, w.now.Add(JoinWithin-time.Millisecond)); p1 != sa || !began.Equal(w.now) {
		t.Fatalf("the joining member offers %v since %s, want the SA since %s", p1, began, w.now)
	}
	if p1, _ := other.Phase1InFlight(ks, w.now.Add(JoinWithin)); p1 != nil {
		t.Fatal("a joined main mode offered again past JoinWithin from its start")
	}
}
