package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S2 (issue 18 F4, review: after a COOP partition the KS that loses
// the merge, which widened its own keys to 17 bits while alone, adopts the
// winner's 16-bit keys and forwards them to its members, who carry their
// 17-bit IDs into them; the winner, which does not know those IDs, must
// not hand out an ID that puts the same octets in the IV: the KSs share the
// IDs out by their 16-bit prefix, so prefixes never cross KSs)
func TestMergeKeepsSenderIDPrefixesApart(t *testing.T) {
	pri, sec := coopPair(t)
	sec.TakeOver("G") // partitioned: it acts alone
	reg := func(s *Server, a netip.Addr, at time.Time) []heldSID {
		_, kd, err := s.Keys(Peer{Addr: netip.AddrPortFrom(a, 848)}, isakmp.GroupID(7), 1, at)
		if err != nil {
			t.Fatal(err)
		}
		return sidsOf(t, kd)
	}
	for i := 0; i < 13_200; i++ {
		reg(sec, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now)
	}
	if _, err := sec.Rekey("G", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var late []heldSID
	for i := 0; i < 64; i++ {
		late = append(late, reg(sec, netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), now.Add(2*time.Second))...)
	}
	if sec.SIDBits("G") <= MinSIDBits {
		t.Fatalf("the secondary alone hands out %d-bit IDs: the test needs it wider", sec.SIDBits("G"))
	}
	sa, kd, seq, err := pri.Announce("G", now.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	var fresh []heldSID
	for i := 0; i < 64; i++ {
		fresh = append(fresh, reg(pri, netip.AddrFrom4([4]byte{10, 3, 0, byte(i)}), now.Add(4*time.Second))...)
	}
	for _, a := range late {
		for _, b := range fresh {
			w := min(a.bits, b.bits)
			if a.id>>(a.bits-w) == b.id>>(b.bits-w) {
				t.Errorf("one a prefix of the other under one key: %d-bit ID %d (secondary's member) and %d-bit ID %d (primary's)", a.bits, a.id, b.bits, b.id)
			}
		}
	}
}

// proves: S2 (issue 18 F4: whatever widths two KSs choose, an ID and the
// IDs it is a prefix of fall in one KS's share, and no KS owns an ID with
// a 16-bit prefix of 0)
func TestSIDShareKeepsPrefixesTogether(t *testing.T) {
	for stride := uint32(1); stride <= 3; stride++ {
		owner := map[uint32]uint32{} // 16-bit ID -> rank
		for rank := uint32(0); rank < stride; rank++ {
			for bits := MinSIDBits; bits <= MinSIDBits+2; bits++ {
				n := 0
				for id := sidShareFrom(0, bits, stride, rank); id < 1<<bits && n < 5000; id = sidShareFrom(id+1, bits, stride, rank) {
					n++
					p := id >> (bits - MinSIDBits)
					if p == 0 {
						t.Fatalf("stride %d rank %d: %d-bit ID %d has a 16-bit prefix of 0", stride, rank, bits, id)
					}
					if o, ok := owner[p]; ok && o != rank {
						t.Fatalf("stride %d: %d-bit ID %d (rank %d) extends 16-bit %d of rank %d", stride, bits, id, rank, p, o)
					}
					owner[p] = rank
				}
				if n == 0 {
					t.Fatalf("stride %d rank %d: no %d-bit ID", stride, rank, bits)
				}
			}
		}
	}
}

// proves: N1 (issue 18 F4: docs/coop.md's threshold: a scheduled rekey widens
// a group's IDs from 16 to 17 bits at 13,107 members, four times the
// members' need in what their 16-bit IDs leave free)
func TestSIDWidthThreshold(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ten := netip.MustParsePrefix("10.0.0.0/8")
	cfg := GroupConfig{Name: "W", ID: 12, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	for _, c := range []struct{ members, bits int }{{13_100, 16}, {13_200, 17}} {
		s := New(Options{})
		if err := s.AddGroup(cfg, now); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < c.members; i++ {
			if _, _, err := s.Keys(Peer{Addr: netip.AddrPortFrom(memberAddr(i), 848)}, isakmp.GroupID(12), 1, now); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Rekey("W", now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := s.SIDBits("W"); got != c.bits {
			t.Errorf("%d members: after a scheduled rekey %d-bit IDs, want %d", c.members, got, c.bits)
		}
	}
}
