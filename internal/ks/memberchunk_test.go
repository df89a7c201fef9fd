package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/groupvpn/groupvpn/isakmp"
)

func stormAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 64, byte(i >> 8), byte(i)}).Next()
}

// proves: N1 (issue 18: the KS's CPU per registration) — a member's
// record past the first memberChunk never moves while members are added
// (the list grows by chunks, not by copying every member into a slice
// twice its size), each member
// is where its index and address say, in registration order, and a
// table of 20,000 members allocates less than 1.1 times its records for
// its list (a slice doubling would hold up to twice them, and copied them
// at each growth).
func TestMemberTableGrowsWithoutMoving(t *testing.T) {
	const n = 20000
	ms := newMembers()
	var first *memberRec // the first of the second chunk
	for i := 0; i < n; i++ {
		m, j := ms.addAt(stormAddr(i))
		if int(j) != i || ms.at(j) != m || m.addr != stormAddr(i) {
			t.Fatalf("member %d: index %d, at %p, add %p, addr %s", i, j, ms.at(j), m, m.addr)
		}
		if i == memberChunk {
			first = m
			first.registrations = 7
		}
	}
	if ms.len() != n || ms.get(stormAddr(memberChunk)) != first || first.registrations != 7 {
		t.Fatalf("%d members; member %d at %p, was %p", ms.len(), memberChunk, ms.get(stormAddr(memberChunk)), first)
	}
	for i := range int32(n) {
		if m := ms.at(i); m.addr != stormAddr(int(i)) || ms.get(m.addr) != m {
			t.Fatalf("member %d is %s", i, m.addr)
		}
	}
	list := 0
	for _, c := range ms.chunks {
		list += cap(c)
	}
	if limit := n * 11 / 10; list > limit {
		t.Fatalf("room for %d records, want at most %d (%d B each)", list, limit, unsafe.Sizeof(memberRec{}))
	}
}

// BenchmarkMemberTableAdd is a registration storm's new members into a
// group's table (its list and index): an operation is one member added,
// 100,000 to a table.
func BenchmarkMemberTableAdd(b *testing.B) {
	const n = 100000
	ms := newMembers()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			ms, i = newMembers(), 0
		}
		ms.add(stormAddr(i))
		i++
	}
}

// BenchmarkKeysStorm is a registration storm's bookkeeping on the key
// server's loop (issue 18): each operation a new member's Keys (CBC keys,
// a peer known by its address ID, as the load generator's), and every
// 1,000 the periodic save's DeltaState; up to 100,000 members a server.
func BenchmarkKeysStorm(b *testing.B) {
	const n, perSave = 100000, 1000
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	newServer := func() *Server {
		s := New(Options{Logger: slog.New(slog.DiscardHandler)})
		err := s.AddGroup(GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
			TEKs: []TEKPolicy{{Transform: isakmp.ESPAESCBC, KeyBits: 256, AuthAlg: isakmp.AuthAlgHMACSHA256, Lifetime: time.Hour,
				Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	peers := make([]Peer, n)
	for i := range peers {
		a := stormAddr(i).As4()
		peers[i] = Peer{Addr: netip.AddrPortFrom(stormAddr(i), 848), ID: &isakmp.ID{IDType: isakmp.IDIPv4Addr, Data: a[:]}}
	}
	gid := isakmp.GroupID(7)
	s := newServer()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == n {
			b.StopTimer()
			s, i = newServer(), 0
			b.StartTimer()
		}
		if _, _, err := s.KeysPayload(peers[i], gid, 1, now); err != nil {
			b.Fatal(err)
		}
		if i++; i%perSave == 0 {
			if _, err := s.DeltaState("G", now); err != nil {
				b.Fatal(err)
			}
		}
	}
}
