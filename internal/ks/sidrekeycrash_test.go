package ks

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: E1, O4 (issue 18 review: members register after the last
// periodic save, a rekey follows (its write is keys-only: Delivery.start,
// SaveKeys), the KS crashes before the next members save. The lost
// members enter the rekey's key with their IDs (carrySIDs marked them in
// memory only); the restarted KS restored the new key (mark 1, no ghosts:
// the old key and its mark were gone) and handed the same IDs out under
// it, identical AES-GCM nonces. Now the new key carries the old key's
// mark as its floor, written with it.)
func TestSenderIDsSurviveRekeyThenCrash(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now) // the last periodic save: no members
	var lost []heldSID
	for i := 0; i < 50; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now)...)
	}
	// The scheduled/early rekey: new keys, written keys-only before the
	// push leaves (Delivery.start with members=false).
	if _, err := a.Rekey("G", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ks, err := a.KeysState("G", now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c := *ks
	c.Members = d.st.Members // a keys-only write leaves the stored members
	d.st = &c
	// Crash; restart from what is on disk.
	b := server(t)
	if err := b.Restore(d.st, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		for _, x := range d.register(t, b, addrOf(3, i), now.Add(2*time.Second)) {
			for _, y := range lost {
				w := min(x.bits, y.bits)
				if x.id>>(x.bits-w) == y.id>>(y.bits-w) {
					t.Fatalf("ID %d (%d bits) handed out under the rekey's key after restart; a lost member carries %d (%d bits) into that key", x.id, x.bits, y.id, y.bits)
				}
			}
		}
	}
}

// proves: E1, O4 (issue 18 review: the ghosts a restart computes lived
// only in memory. A member lost by a crash (registered after the last
// save) keeps its ID across rekeys without registering again; after the
// restart, a rekey and a clean, fully saved shutdown later, the next
// restart handed its ID out under the key it holds.)
func TestSenderIDsOfLostMembersSurviveSecondRestart(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now)
	var lost []heldSID
	for i := 0; i < 50; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now)...)
	}
	// Crash 1: restart from the disk (the lost members are not in it).
	b := server(t)
	if err := b.Restore(d.st, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Hours later: a scheduled rekey (the lost members get it and keep
	// their IDs), then a clean shutdown with everything saved.
	at := now.Add(30 * time.Minute)
	if _, err := b.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	full := saveAll(t, b, at)
	c := server(t)
	if err := c.Restore(full.st, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		for _, x := range full.register(t, c, addrOf(3, i), at.Add(time.Second)) {
			for _, y := range lost {
				w := min(x.bits, y.bits)
				if x.id>>(x.bits-w) == y.id>>(y.bits-w) {
					t.Fatalf("ID %d (%d bits) handed out again under the rekey's key after a clean restart; a member lost at the first crash carries %d into it", x.id, x.bits, y.id)
				}
			}
		}
	}
}

// proves: E1, O4 (issue 18 review, variant with registrations under the
// rekey's key before the crash: they raise its mark, but only to the
// lowest free ID plus a block. Members re-registered under the old key
// hold high IDs, the old ones below are free in the new key; the new
// key's mark covered the low ones only, and the lost members' IDs above
// it were handed out again.)
func TestSenderIDsSurviveRekeyRegistrationsThenCrash(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now)
	for r := 0; r < 2; r++ { // every member registers twice: holds 1101..2200
		for i := 0; i < 1100; i++ {
			d.register(t, a, addrOf(1, i), now)
		}
	}
	d = saveAll(t, a, now) // the periodic save with those members
	var lost []heldSID
	for i := 0; i < 50; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now)...)
	}
	at := now.Add(time.Second)
	if _, err := a.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	ks, err := a.KeysState("G", at)
	if err != nil {
		t.Fatal(err)
	}
	c := *ks
	c.Members = d.st.Members // keys-only write
	d.st = &c
	for i := 0; i < 10; i++ {
		d.register(t, a, addrOf(4, i), at) // raises the new key's mark, written
	}
	b := server(t)
	if err := b.Restore(d.st, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		for _, x := range d.register(t, b, addrOf(3, i), at.Add(time.Second)) {
			for _, y := range lost {
				if x.bits == y.bits && x.id == y.id {
					t.Fatalf("registration %d after restart: ID %d handed out again under the rekey's key; a lost member carries it", i, x.id)
				}
			}
		}
	}
}

// collide fails when x and a lost member's ID are one another's prefix.
func collide(t *testing.T, x heldSID, lost []heldSID, what string) {
	t.Helper()
	for _, y := range lost {
		w := min(x.bits, y.bits)
		if x.id>>(x.bits-w) == y.id>>(y.bits-w) {
			t.Fatalf("%s: ID %d (%d bits) handed out; a lost member carries %d (%d bits) into the key", what, x.id, x.bits, y.id, y.bits)
		}
	}
}

// keysOnly is the stored state after a keys-only write of s's group over d.
func keysOnly(t *testing.T, s *Server, d *disk, at time.Time) {
	t.Helper()
	ks, err := s.KeysState("G", at)
	if err != nil {
		t.Fatal(err)
	}
	c := *ks
	c.Members = d.st.Members
	d.st = &c
}

// proves: E1, O4 (issue 18 review, variant: the stored keys expired while
// the KS was down but their KEK did not; the restarted KS makes fresh
// keys, which the next rekey brings to the members the store lost, with
// their IDs: those are kept out of the fresh keys' hands too)
func TestSenderIDsSurviveRestartAfterKeysExpired(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now)
	var lost []heldSID
	for i := 0; i < 50; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now)...)
	}
	at := now.Add(2 * time.Hour) // the TEK (1 h) expired, the KEK (24 h) not
	b := server(t)
	if err := b.Restore(d.st, at); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		for _, x := range d.register(t, b, addrOf(3, i), at) {
			collide(t, x, lost, "fresh keys after a restart")
		}
	}
	// The floor is written with the fresh keys: a second restart keeps it.
	if _, err := b.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	keysOnly(t, b, d, at)
	c := server(t)
	if err := c.Restore(d.st, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		for _, x := range d.register(t, c, addrOf(4, i), at.Add(time.Second)) {
			collide(t, x, lost, "the rekey's keys after a second restart")
		}
	}
}

// proves: E1, O4 (issue 18 review, width: the rekey that loses members'
// IDs is the one that widens the group's IDs (16 to 17 bits); the floor
// the new key carries is the old key's mark at the new width, so that no
// wider ID a lost member's 16-bit ID is a prefix of is handed out)
func TestSenderIDsSurviveWideningRekeyThenCrash(t *testing.T) {
	a := server(t)
	for i := 0; i < 14000; i++ { // past 13,107: the next keys are 17 bits wide
		_, _, err := a.Keys(Peer{Addr: netip.AddrPortFrom(addrOf(1, i), 848)}, isakmp.GroupID(7), 1, now)
		if err != nil {
			t.Fatal(err)
		}
	}
	d := saveAll(t, a, now)
	var lost []heldSID
	for i := 0; i < 50; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now)...)
	}
	at := now.Add(time.Second)
	if _, err := a.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if a.SIDBits("G") <= MinSIDBits {
		t.Fatalf("the rekey kept %d-bit IDs: the test needs a wider generation", a.SIDBits("G"))
	}
	keysOnly(t, a, d, at)
	b := server(t)
	if err := b.Restore(d.st, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		for _, x := range d.register(t, b, addrOf(3, i), at.Add(time.Second)) {
			if x.bits <= MinSIDBits {
				t.Fatalf("a %d-bit ID under the wider keys", x.bits)
			}
			collide(t, x, lost, "wider keys after a restart")
		}
	}
}

// proves: O4 (issue 18 review: the IDs a restart keeps out of hands, for
// members the store may have lost, are kept until a GM removal, whose new
// keys only a registration hands out, with new IDs: then they are free
// again)
func TestRemovalFreesLostMembersIDs(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now)
	for i := 0; i < 50; i++ {
		d.register(t, a, addrOf(2, i), now)
	}
	b := server(t)
	if err := b.Restore(d.st, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	at := now.Add(time.Minute)
	if _, err := b.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	if ids := d.register(t, b, addrOf(3, 0), at); ids[0].id < 50 {
		t.Fatalf("ID %d handed out after the rekey: a lost member may carry it", ids[0].id)
	}
	if _, err := b.Remove("G", false, at); err != nil {
		t.Fatal(err)
	}
	st, err := b.KeysState("G", at)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range st.TEKs {
		if k.SIDFloor != 0 {
			t.Fatalf("the removal's keys carry a floor of %d", k.SIDFloor)
		}
	}
	// Every member registers again (the store's records: only the one
	// registered after the restart holds an ID).
	if ids := d.register(t, b, addrOf(4, 0), at); ids[0].id != 1 {
		t.Fatalf("first ID after the removal is %d, not 1", ids[0].id)
	}
}

// proves: O4 (issue 18 review: a stored floor, mark, count or width out
// of range, from a damaged or hostile state, neither panics nor hands out
// an ID below what it claims; at worst the key's IDs are all kept and
// registrations are refused until new keys come)
func TestRestoreHostileSIDFloor(t *testing.T) {
	for _, k := range []TEKState{
		{SIDFloor: math.MaxUint32, SIDBits: 255, SIDReserved: math.MaxUint32, SIDNext: math.MaxUint32},
		{SIDFloor: math.MaxUint32, SIDBits: 24},
		{SIDFloor: 1 << 20, SIDBits: 16, SIDReserved: 0, SIDNext: math.MaxUint32 - 1},
		{SIDFloor: 5000, SIDBits: 0},
		{SIDFloor: 5000, SIDBits: 9},
	} {
		a := server(t)
		d := saveAll(t, a, now)
		for i := range d.st.TEKs {
			t0 := d.st.TEKs[i]
			t0.SIDFloor, t0.SIDBits, t0.SIDReserved, t0.SIDNext = k.SIDFloor, k.SIDBits, k.SIDReserved, k.SIDNext
			d.st.TEKs[i] = t0
		}
		b := server(t)
		if err := b.Restore(d.st, now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		_, kd, err := b.Keys(Peer{Addr: netip.AddrPortFrom(addrOf(3, 0), 848)}, isakmp.GroupID(7), 1, now.Add(time.Second))
		if err != nil {
			continue // every ID kept: refused
		}
		for _, x := range sidsOf(t, kd) {
			if k.SIDBits == 0 || k.SIDBits == 9 { // read as 16 bits
				if x.bits != 16 || x.id < 5000 {
					t.Fatalf("floor 5000 (width %d): ID %d (%d bits) handed out", k.SIDBits, x.id, x.bits)
				}
			}
		}
	}
}
