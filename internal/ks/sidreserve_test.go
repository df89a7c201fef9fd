package ks

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// disk is what a store holds of group G: the last periodic save, with the
// keys of every keys-only write the owner made since (a node writes the
// keys before an answer whose IDs raised a high-water mark:
// SIDReservationsUnwritten).
type disk struct{ st *GroupState }

func saveAll(t *testing.T, s *Server, at time.Time) *disk {
	t.Helper()
	st, err := s.State("G", at)
	if err != nil {
		t.Fatal(err)
	}
	return &disk{st: st}
}

// register is a registration at s as the node makes it: the keys written
// first when the answer's IDs raised a mark.
func (d *disk) register(t *testing.T, s *Server, addr netip.Addr, at time.Time) []heldSID {
	t.Helper()
	_, kd, err := s.Keys(Peer{Addr: netip.AddrPortFrom(addr, 848)}, isakmp.GroupID(7), 1, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range s.SIDReservationsUnwritten() {
		ks, err := s.KeysState(name, at)
		if err != nil {
			t.Fatal(err)
		}
		c := *d.st
		c.TEKs, c.Seq = ks.TEKs, ks.Seq
		d.st = &c
		s.SIDReservationWritten(ks)
	}
	if n := len(s.SIDReservationsUnwritten()); n != 0 {
		t.Fatalf("%d groups' reservations unwritten after the write", n)
	}
	return sidsOf(t, kd)
}

func addrOf(net byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, net, byte(i >> 8), byte(i)})
}

// proves: O4 (issue 18 F4, review: 5,000 one-ID registrations after the
// last periodic save, more than the 4,096-ID restart margin, then a crash:
// the restarted KS handed 904 of those IDs out again under the same key,
// identical AES-GCM nonces; now no ID leaves above the written high-water
// mark, and the restarted KS goes on from it)
func TestReview2RestartMarginExceeded(t *testing.T) {
	a := server(t)
	d := saveAll(t, a, now)
	var lost []heldSID
	for i := 0; i < 5000; i++ {
		lost = append(lost, d.register(t, a, addrOf(2, i), now.Add(time.Duration(i)*200*time.Microsecond))...)
	}
	b := server(t)
	if err := b.Restore(d.st, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	held := map[uint32]bool{}
	for _, y := range lost {
		held[y.id] = true
	}
	dup := 0
	for i := 0; i < 1000; i++ {
		for _, x := range d.register(t, b, addrOf(3, i), now.Add(time.Second)) {
			if held[x.id] {
				dup++
			}
		}
	}
	if dup > 0 {
		t.Fatalf("%d IDs handed out again under the restored key", dup)
	}
	// And under the keys of a rekey, which the lost members enter with
	// the IDs they hold.
	if _, err := b.Rekey("G", now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		for _, x := range d.register(t, b, addrOf(4, i), now.Add(2*time.Second)) {
			if held[x.id] {
				t.Fatalf("ID %d a lost member holds handed out under the rekey's key", x.id)
			}
		}
	}
}

// proves: O4 (issue 18 F4, review: each restart skipped a margin of 1/16
// of the key's IDs for good, so about 16 restarts used up a group's IDs
// without a rekey; now a restart loses at most one reservation block)
func TestRepeatedRestartsDoNotExhaustSIDs(t *testing.T) {
	s := server(t)
	d := saveAll(t, s, now)
	seen := map[uint32]netip.Addr{}
	at := now
	for r := 0; r < 20; r++ {
		for i := 0; i < 10; i++ {
			a := addrOf(byte(10+r), i)
			for _, x := range d.register(t, s, a, at) {
				if o, ok := seen[x.id]; ok {
					t.Fatalf("restart %d: ID %d handed out to %s and %s", r, x.id, o, a)
				}
				seen[x.id] = a
			}
		}
		// Crash: nothing but what was written survives.
		at = at.Add(time.Second)
		s = server(t)
		if err := s.Restore(d.st, at); err != nil {
			t.Fatal(err)
		}
	}
	g := s.byName["G"]
	for _, k := range g.teks {
		if k.counter() && k.sidNext > 20*(sidReserveMax+1) {
			t.Fatalf("after 20 restarts the key's next ID is %d: more than a block lost per restart", k.sidNext)
		}
	}
}
