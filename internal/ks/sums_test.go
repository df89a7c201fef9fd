package ks

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: O3 (issue 18: the sums a scrape exports are kept by ks, equal to
// the members' counters summed, without the member list) — after
// registrations, ACKs, misses and a restart.
func TestGroupSumsFollowMembers(t *testing.T) {
	ten := netip.MustParsePrefix("10.0.0.0/8")
	cfg := GroupConfig{Name: "S", ID: 5, TEKs: []TEKPolicy{{Transform: isakmp.ESPAESCBC, KeyBits: 128, AuthAlg: isakmp.AuthAlgHMACSHA256,
		Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, _, err := s.Keys(peer(memberAddr(i%20).String()), isakmp.GroupID(5), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 7 {
		s.Acked("S", memberAddr(i), 1)
		s.Missed("S", memberAddr(i+10))
	}
	s.Acked("S", netip.MustParseAddr("192.0.2.99"), 1) // no such member
	check := func(srv *Server, what string) {
		t.Helper()
		full, counted := srv.SnapshotOf(now, true)[0], srv.SnapshotOf(now, false)[0]
		var regs, acked, missed int
		for _, m := range full.Members {
			regs, acked, missed = regs+m.Registrations, acked+m.AcksReceived, missed+m.AcksMissed
		}
		if counted.Members != nil || counted.Registrations != regs || counted.AcksReceived != acked || counted.AcksMissed != missed ||
			full.Registrations != regs {
			t.Errorf("%s: sums %d/%d/%d, members summed %d/%d/%d", what, counted.Registrations, counted.AcksReceived, counted.AcksMissed, regs, acked, missed)
		}
	}
	check(s, "running")
	if got := s.SnapshotOf(now, false)[0]; got.Registrations != 30 || got.AcksReceived != 7 || got.AcksMissed != 7 {
		t.Fatalf("sums %d/%d/%d, want 30/7/7", got.Registrations, got.AcksReceived, got.AcksMissed)
	}
	st, err := s.State("S", now)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	if err := r.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(st, now); err != nil {
		t.Fatal(err)
	}
	check(r, "restored")
}
