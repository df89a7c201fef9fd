package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// heldSID is a sender ID as a member holds it: its value and width.
type heldSID struct {
	id   uint32
	bits int
}

// prefix is the ID as the top bits of a 32-bit value (the IV's top half)
// and how many of those it fixes.
func (h heldSID) prefix() (uint64, uint64) { return uint64(h.id) << (32 - h.bits), 1 << (32 - h.bits) }

// checkPrefixFree fails when one held ID is a prefix of another (equal
// ones included): two senders whose IVs can be equal under one key.
func checkPrefixFree(t *testing.T, held map[netip.Addr][]heldSID) {
	t.Helper()
	type span struct {
		lo, n uint64
		who   netip.Addr
	}
	var all []span
	for a, ids := range held {
		for _, h := range ids {
			lo, n := h.prefix()
			all = append(all, span{lo, n, a})
		}
	}
	slices.SortFunc(all, func(x, y span) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	for i := 1; i < len(all); i++ {
		if p := all[i-1]; p.lo+p.n > all[i].lo {
			t.Fatalf("sender IDs collide: %s's covers %#x..%#x, %s's starts at %#x", p.who, p.lo, p.lo+p.n-1, all[i].who, all[i].lo)
		}
	}
}

// sidsOf reads a registration's SID key packet: the width and the IDs.
func sidsOf(t *testing.T, kd *isakmp.KD) []heldSID {
	t.Helper()
	p := kd.Packet(isakmp.KDSID, nil)
	if p == nil {
		t.Fatal("no SID key packet for a counter-mode TEK")
	}
	bits := 0
	var ids []uint32
	for _, a := range p.Attributes {
		v, err := a.Uint()
		if err != nil {
			t.Fatal(err)
		}
		switch a.Type {
		case isakmp.SIDNumberOfBits:
			bits = int(v)
		case isakmp.SIDValue:
			ids = append(ids, uint32(v))
		}
	}
	if bits < MinSIDBits || bits > MaxSIDBits {
		t.Fatalf("NUMBER_OF_SID_BITS %d outside %d..%d", bits, MinSIDBits, MaxSIDBits)
	}
	var out []heldSID
	for _, id := range ids {
		if id == 0 || id>>bits != 0 {
			t.Fatalf("sender ID %d does not fit %d bits", id, bits)
		}
		out = append(out, heldSID{id, bits})
	}
	return out
}

func memberAddr(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0x0a000000+uint32(i)+1)
	return netip.AddrFrom4(b)
}

// A group with a counter-mode (GCM) TEK registered its 65,536th member
// only to refuse it (ks.SIDBits was 16 for every group). Now the width is
// the group's: when half of what its keys were sized for is handed out,
// the KS rekeys early (NextRekey) and the next keys get IDs wide enough
// for the group, while the members keep the IDs they hold (RFC 6054
// App. B). 100,000 members register one after the other, each rekey
// carried out as the delivery would when NextRekey comes: none is
// refused, every registration's SID key packet says the width its IDs
// have, no two IDs held are prefixes of one another (equal IVs under one
// key), and a restarted KS keeps the width and the IDs in use.
// proves: E1, T1, O4 (issue 18 F4: a GCM group past 65,535 members, sender-ID width per group)
func TestSenderIDWidthGrowsWithGroup(t *testing.T) {
	const members = 100_000
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ten := netip.MustParsePrefix("10.0.0.0/8")
	cfg := GroupConfig{Name: "W", ID: 12, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	if got := s.SIDBits("W"); got != MinSIDBits {
		t.Fatalf("a new group's width is %d, want %d", got, MinSIDBits)
	}
	held := map[netip.Addr][]heldSID{}
	clock := now
	rekeys, widths := 0, map[int]int{}
	register := func(srv *Server, a netip.Addr) {
		t.Helper()
		_, kd, err := srv.Keys(Peer{Addr: netip.AddrPortFrom(a, 848), Identity: a.String()}, isakmp.GroupID(12), 1, clock)
		if err != nil {
			t.Fatalf("member %d (%s) refused: %v", len(held)+1, a, err)
		}
		ids := sidsOf(t, kd)
		if w := srv.SIDBits("W"); ids[0].bits != w {
			t.Fatalf("member %s told %d bits, the group hands out %d", a, ids[0].bits, w)
		}
		if m, _ := srv.Member("W", a); int(m.SIDBits) != ids[0].bits {
			t.Fatalf("the KS records %d bits for %s, told it %d", m.SIDBits, a, ids[0].bits)
		}
		held[a] = ids
		widths[ids[0].bits]++
	}
	for i := 0; i < members; i++ {
		clock = clock.Add(time.Millisecond)
		if at := s.NextRekey("W"); !at.After(clock) {
			if at.After(now.Add(30 * time.Minute)) {
				t.Fatalf("rekey due at %s: not the early one the sender IDs asked for", at)
			}
			if _, err := s.Rekey("W", clock); err != nil {
				t.Fatal(err)
			}
			rekeys++
			// Every member holds the new keys with the IDs it has:
			// checked below with the IDs of the members who register
			// under them.
		}
		register(s, memberAddr(i))
		if i%10_000 == 0 || i == members-1 {
			checkPrefixFree(t, held)
		}
	}
	if rekeys == 0 || s.SIDBits("W") <= MinSIDBits {
		t.Fatalf("%d early rekeys, width %d: the group never widened", rekeys, s.SIDBits("W"))
	}
	t.Logf("%d members: %d early rekeys, widths handed out %v, now %d bits", members, rekeys, widths, s.SIDBits("W"))

	// A restart: the width and every ID in use come back from the state.
	st, err := s.State("W", clock)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	if err := r.AddGroup(cfg, clock); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(st, clock); err != nil {
		t.Fatal(err)
	}
	if r.SIDBits("W") != s.SIDBits("W") {
		t.Fatalf("restarted KS hands out %d bits, was %d", r.SIDBits("W"), s.SIDBits("W"))
	}
	for i := members; i < members+1000; i++ {
		register(r, memberAddr(i))
	}
	checkPrefixFree(t, held)
}

// proves: E1 (issue 18 F4: the ID set is sized by what is in it, not by
// 2^width) — a key with a few members holds one page of each width used.
func TestSIDSetIsLazy(t *testing.T) {
	var s sidSet
	s.add(5, 16)
	s.add(1<<24-1, 24)
	pages := 0
	for _, b := range s.byWidth {
		if b != nil {
			for _, p := range b.pages {
				if p != nil {
					pages++
				}
			}
		}
	}
	if pages != 2 {
		t.Fatalf("%d pages for two IDs, want 2", pages)
	}
	// Prefixes both ways: 16-bit 5 covers 24-bit 5<<8..5<<8+255; the
	// 24-bit ID is a suffix of 16-bit 0xffff.
	for _, c := range []struct {
		id   uint32
		bits int
		want bool
	}{{5 << 8, 24, true}, {5<<8 + 255, 24, true}, {6 << 8, 24, false}, {5 << 1, 17, true}, {0xffff, 16, true}, {0xfffe, 16, false}, {4, 16, false}} {
		if got := s.has(c.id, c.bits); got != c.want {
			t.Errorf("has(%#x, %d) = %v, want %v", c.id, c.bits, got, c.want)
		}
	}
}

// A group without a KEK cannot rekey early: its keys are replaced when a
// registration finds them near their end (refresh), and that is where its
// width grows. 40,000 members hold 16-bit IDs; the registration that
// replaces the key starts a generation sized for the group, and 60,000
// more register under the new key: none refused, no two IDs held
// prefixes of one another.
// proves: E1 (issue 18 F4: a group without rekeys widens with its keys)
func TestSenderIDWidthGrowsWithoutKEK(t *testing.T) {
	ten := netip.MustParsePrefix("10.0.0.0/8")
	cfg := GroupConfig{Name: "N", ID: 13, Address: netip.MustParseAddr("192.0.2.1"),
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	held := map[netip.Addr][]heldSID{}
	register := func(i int, at time.Time) {
		t.Helper()
		a := memberAddr(i)
		if _, err := s.Join(Peer{Addr: netip.AddrPortFrom(a, 848)}, isakmp.GroupID(13), at); err != nil {
			t.Fatal(err)
		}
		_, kd, err := s.Keys(Peer{Addr: netip.AddrPortFrom(a, 848)}, isakmp.GroupID(13), 1, at)
		if err != nil {
			t.Fatalf("member %d refused: %v", i, err)
		}
		held[a] = sidsOf(t, kd)
	}
	for i := range 40_000 {
		register(i, now)
	}
	if w := s.SIDBits("N"); w != MinSIDBits {
		t.Fatalf("width %d before the key is replaced", w)
	}
	late := now.Add(55 * time.Minute) // within the key's last tenth: Join refreshes it
	for i := 40_000; i < 100_000; i++ {
		register(i, late)
	}
	checkPrefixFree(t, held)
	if w := s.SIDBits("N"); w <= MinSIDBits {
		t.Fatalf("width %d after the key was replaced with 40,000 members", w)
	}
	t.Logf("width after the refresh: %d bits", s.SIDBits("N"))
}
