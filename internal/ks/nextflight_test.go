package ks

import (
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: T1, N1 (issue 18 review: a group's rekey that falls due while
// its previous rekey is still being delivered waits for the flight, in
// Next as in Tick) — a counter-mode group passes half its sender IDs (the
// early rekey is due now) while a rekey to a silent member is in flight:
// Next is the flight's next retransmission, not the due rekey's past
// instant (which kept the loop's timer in the past for the whole flight: a
// KS reading its socket on the loop read nothing until it ended), and the
// due rekey starts in the Tick that ends the flight.
func TestNextWaitsForTheFlightLikeTick(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	cfg := groupConfig(t, RekeyPolicy{Unicast: true})
	cfg.TEKs[0].Transform, cfg.TEKs[0].AuthAlg = isakmp.ESPAESGCM16, 0
	x := newSim(t, cfg, nil, t0)
	quiet := member(0)
	x.silent[quiet.Addr()] = true
	if _, _, err := x.srv.Keys(Peer{Addr: quiet}, isakmp.GroupID(7), 1, x.now); err != nil {
		t.Fatal(err)
	}
	first := x.rekey()
	for i := 1; i <= 1<<(MinSIDBits-1)+10; i++ {
		if _, _, err := x.srv.Keys(Peer{Addr: member(i)}, isakmp.GroupID(7), 1, x.now); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	if due := x.srv.NextRekey("G"); due.After(x.now) {
		t.Fatalf("half the sender IDs handed out, the next rekey is at %s, not now (%s)", due, x.now)
	}
	if !x.d.inFlight("G") {
		t.Fatal("the first rekey is no longer in flight")
	}
	if next := x.d.Next(); !next.After(x.now) {
		t.Fatalf("Next is %s with the group's rekey in flight at %s: a timer in the past for the whole flight", next, x.now)
	}
	// The flight to the silent member ends 30 s on (3 transmissions, 10 s
	// apart); the due rekey starts then.
	x.run(t0.Add(29 * time.Second))
	if n := x.started(); n != 1 {
		t.Fatalf("%d rekeys started while the first was in flight", n)
	}
	x.run(t0.Add(31 * time.Second))
	if n := x.started(); n != 2 {
		t.Fatalf("%d rekeys started after the flight ended (first seq %d)", n, first.Seq)
	}
}

// started counts the rekeys started so far.
func (x *sim) started() int {
	n := 0
	for _, ev := range x.events {
		if _, ok := ev.(RekeyStarted); ok {
			n++
		}
	}
	return n
}
