package ks

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: O4 (issue 18 F4: a GDOI registration hands out sender IDs
// without a write first; a KS that crashes within a save interval and
// restarts from the last save must not hand those IDs out again under the
// same key, nor, once the members it lost carry them into a rekey's keys,
// under the new key)
func TestRestartSkipsIDsHandedOutAfterTheLastSave(t *testing.T) {
	a := server(t)
	reg := func(s *Server, net byte, i int, at time.Time) []heldSID {
		_, kd, err := s.Keys(Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, net, byte(i >> 8), byte(i)}), 848)}, isakmp.GroupID(7), 1, at)
		if err != nil {
			t.Fatal(err)
		}
		return sidsOf(t, kd)
	}
	for i := 0; i < 100; i++ {
		reg(a, 1, i, now)
	}
	d := saveAll(t, a, now)
	// Registered after the last save: the crash loses them (the keys the
	// node wrote before an answer that raised a mark survive: this test
	// leaned on the first block's 1,024 IDs before blocks grew from 16).
	var lost []heldSID
	for i := 0; i < 300; i++ {
		lost = append(lost, d.register(t, a, netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), now)...)
	}
	b := server(t)
	if err := b.Restore(d.st, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	collide := func(when string, got []heldSID) {
		t.Helper()
		for _, x := range got {
			for _, y := range lost {
				w := min(x.bits, y.bits)
				if x.id>>(x.bits-w) == y.id>>(y.bits-w) {
					t.Fatalf("%s: %d-bit ID %d handed out again (a lost member holds %d-bit %d)", when, x.bits, x.id, y.bits, y.id)
				}
			}
		}
	}
	var after []heldSID
	for i := 0; i < 300; i++ {
		after = append(after, reg(b, 3, i, now.Add(time.Second))...)
	}
	collide("under the restored key", after)
	if _, err := b.Rekey("G", now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	after = after[:0]
	for i := 0; i < 300; i++ {
		after = append(after, reg(b, 4, i, now.Add(2*time.Second))...)
	}
	collide("under the rekey's key", after)
}
