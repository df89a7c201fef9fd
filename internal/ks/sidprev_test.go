package ks

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// The issue 18 review's gap: a re-registration replaced the member's
// stored sender IDs with new ones before the GM had them. GDOI tells the
// KS nothing of message 4's fate: when the answer is lost (or refused by
// the GM) and a rekey comes before the GM's retry gets through, the GM
// carries its old ID into the rekey's keys, where the KS no longer
// counted it as held and handed it out again (identical AES-GCM nonces).

// proves: E1, O4 (issue 18 review: a member's previous sender IDs stay
// counted as held after its re-registration; a rekey carries them into
// its keys and no registration under them gets one)
func TestPreviousSenderIDsCarriedIntoRekey(t *testing.T) {
	transports(t, func(t *testing.T, mc bool) {
		st := newMemStore()
		a, d := delivered(t, st, mc, now)
		m := addrOf(1, 0)
		old := regTo(t, a, st, m, now) // ID A: the GM holds it
		// Re-registrations whose answers are lost: the KS records new
		// IDs, the GM goes on with A.
		at := now.Add(time.Second)
		for i := 0; i < 3; i++ {
			regTo(t, a, st, m, at)
		}
		if _, err := d.Rekey("G", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		at = at.Add(2 * time.Second)
		for i := 0; i < 200; i++ {
			for _, x := range regTo(t, a, st, addrOf(3, i), at) {
				collide(t, x, old, "the rekey's keys")
			}
		}
		// A second rekey: the GM may still hold A (it got the first
		// rekey's keys with it).
		if _, err := d.Rekey("G", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		at = at.Add(2 * time.Second)
		for i := 0; i < 200; i++ {
			for _, x := range regTo(t, a, st, addrOf(4, i), at) {
				collide(t, x, old, "the second rekey's keys")
			}
		}
		// And after a restart from what the rekeys wrote.
		if _, err := d.Rekey("G", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		at = at.Add(2 * time.Second)
		b, _ := delivered(t, st, mc, at)
		for i := 0; i < 200; i++ {
			for _, x := range regTo(t, b, st, addrOf(5, i), at) {
				collide(t, x, old, "the rekey's keys after a restart")
			}
		}
	})
}

// proves: E1, O4 (issue 18 review: the previous IDs kept per member are
// bounded (MaxPrevSIDsPerMember, the oldest forgotten and counted), do
// not count toward the member's bound of IDs under the same keys
// (a member's normal re-registrations are not refused), and are kept
// only in groups with rekeys)
func TestPreviousSenderIDsBounded(t *testing.T) {
	s := server(t)
	m := addrOf(1, 0)
	at := now
	for round := 0; round < 5; round++ {
		for i := 0; i < SIDsPerMemberPerKeys/MaxSIDsPerMember; i++ {
			if _, _, err := s.Keys(Peer{Addr: netip.AddrPortFrom(m, 848)}, isakmp.GroupID(7), MaxSIDsPerMember, at); err != nil {
				t.Fatalf("round %d, registration %d: %v", round, i, err)
			}
			if n := len(s.byName["G"].members.prevSIDs[m]); n > MaxPrevSIDsPerMember {
				t.Fatalf("%d previous IDs kept", n)
			}
		}
		at = at.Add(time.Second)
		if _, err := s.Rekey("G", at); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.SIDRefusedMemberBound(); n != 0 {
		t.Fatalf("%d registrations refused at the member's bound", n)
	}
	if n := len(s.byName["G"].members.prevSIDs[m]); n != MaxPrevSIDsPerMember {
		t.Fatalf("%d previous IDs kept, want %d", n, MaxPrevSIDsPerMember)
	}
	// 20 registrations of 16 IDs: the last one's are current, 64 of the
	// 304 before are kept.
	if n := s.SIDPreviousForgotten(); n != 19*MaxSIDsPerMember-MaxPrevSIDsPerMember {
		t.Fatalf("%d previous IDs forgotten, want %d", n, 19*MaxSIDsPerMember-MaxPrevSIDsPerMember)
	}
	st, err := s.State("G", at)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Members[0].PrevSenderIDs); n != MaxPrevSIDsPerMember {
		t.Fatalf("%d previous IDs written, want %d", n, MaxPrevSIDsPerMember)
	}

	// A group without a KEK: a GM gets new keys only by registering, with
	// new IDs: none kept.
	ten := netip.MustParsePrefix("10.0.0.0/8")
	n := New(Options{})
	if err := n.AddGroup(GroupConfig{Name: "N", ID: 13, Address: netip.MustParseAddr("192.0.2.1"),
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}, now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, err := n.Keys(Peer{Addr: netip.AddrPortFrom(m, 848)}, isakmp.GroupID(13), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	if k := len(n.byName["N"].members.prevSIDs); k != 0 {
		t.Fatalf("a group without rekeys kept previous IDs of %d members", k)
	}
}

// proves: E1, O4 (issue 18 review: previous IDs read from a store are
// hostile: values that are no IDs are dropped, at most
// MaxPrevSIDsPerMember kept (the newest), no panic; the valid ones are
// carried into new keys)
func TestRestoreHostilePrevSenderIDs(t *testing.T) {
	a := server(t)
	m := addrOf(1, 0)
	if _, _, err := a.Keys(Peer{Addr: netip.AddrPortFrom(m, 848)}, isakmp.GroupID(7), 1, now); err != nil {
		t.Fatal(err)
	}
	st, err := a.State("G", now)
	if err != nil {
		t.Fatal(err)
	}
	hostile := []uint32{0, 0xffffffff, packPrevSID(0, 16), packPrevSID(1<<16, 16) /* too wide */, 5<<8 | 15, 5<<8 | 25, 5<<8 | 0xff}
	for i := 0; i < 10_000; i++ {
		hostile = append(hostile, packPrevSID(uint32(100+i%50), 16))
	}
	hostile = append(hostile, packPrevSID(40_000, 16), packPrevSID(3<<3|1, 19)) // the newest, valid
	st.Members[0].PrevSenderIDs = hostile
	b := server(t)
	if err := b.Restore(st, now); err != nil {
		t.Fatal(err)
	}
	prev := b.byName["G"].members.prevSIDs[m]
	if len(prev) != MaxPrevSIDsPerMember {
		t.Fatalf("%d previous IDs restored, want %d", len(prev), MaxPrevSIDsPerMember)
	}
	for _, v := range prev {
		if _, _, ok := unpackPrevSID(v); !ok {
			t.Fatalf("restored a previous ID %#x that is none", v)
		}
	}
	if _, err := b.Rekey("G", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	carried := []heldSID{{40_000, 16}, {3<<3 | 1, 19}, {100, 16}}
	for i := 0; i < 300; i++ {
		_, kd, err := b.Keys(Peer{Addr: netip.AddrPortFrom(addrOf(3, i), 848)}, isakmp.GroupID(7), 1, now.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range sidsOf(t, kd) {
			collide(t, x, carried, "the rekey's keys after a restore")
		}
	}
}

// proves: E1, O4 (issue 18 review: after a GM removal a member's old
// IDs are given up when it registers again: the removal's new KEK
// reaches it only by a registration, so no rekey carries them; before
// that they stay kept, and a re-registration before a removal keeps
// them)
func TestRemovalEndsPreviousSenderIDs(t *testing.T) {
	s := server(t)
	m := Peer{Addr: netip.AddrPortFrom(addrOf(1, 0), 848)}
	for i := 0; i < 2; i++ {
		if _, _, err := s.Keys(m, isakmp.GroupID(7), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	g := s.byName["G"]
	if n := len(g.members.prevSIDs[m.Addr.Addr()]); n != 1 {
		t.Fatalf("%d previous IDs after a re-registration, want 1", n)
	}
	at := now.Add(time.Second)
	if _, err := s.Remove("G", true, at); err != nil {
		t.Fatal(err)
	}
	if n := len(g.members.prevSIDs[m.Addr.Addr()]); n != 1 {
		t.Fatalf("%d previous IDs after the removal, want 1 (the member has not registered again)", n)
	}
	at = at.Add(time.Second)
	if _, _, err := s.Keys(m, isakmp.GroupID(7), 1, at); err != nil {
		t.Fatal(err)
	}
	if n := len(g.members.prevSIDs); n != 0 {
		t.Fatalf("previous IDs of %d members kept after they registered again since a removal", n)
	}
	if _, _, err := s.Keys(m, isakmp.GroupID(7), 1, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(g.members.prevSIDs[m.Addr.Addr()]); n != 1 {
		t.Fatalf("%d previous IDs after a re-registration since the removal, want 1", n)
	}
}

// proves: E1, O4 (issue 18 review 3, HIGH 2: the cut-off after a GM
// removal is by the group's removal count, not by wall-clock instants: a
// clock stepped back past a removal does not make a member's second
// registration since the removal drop the ID its first one gave it, which
// the GM keeps when the second answer is lost and carries into the next
// rekey's keys)
func TestPreviousIDsCutOffByRemovalNotByClock(t *testing.T) {
	s := server(t)
	m := addrOf(1, 0)
	for i := 0; i < 5; i++ {
		regTo(t, s, newMemStore(), addrOf(1, i), now)
	}
	rm := now.Add(time.Hour)
	if _, err := s.Remove("G", false, rm); err != nil {
		t.Fatal(err)
	}
	back := rm.Add(-30 * time.Second)                    // NTP steps the clock back
	held := regTo(t, s, newMemStore(), m, back)          // R1: the GM gets B and the new KEK
	regTo(t, s, newMemStore(), m, back.Add(time.Second)) // R2: its answer is lost; the GM keeps B
	at := back.Add(time.Minute)
	if _, err := s.Rekey("G", at); err != nil { // the GM enters the new key with B
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		for _, x := range regTo(t, s, newMemStore(), addrOf(3, i), at) {
			collide(t, x, held, "the rekey after a removal and a clock step back")
		}
	}
}
