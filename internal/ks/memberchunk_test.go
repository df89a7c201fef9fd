package ks

import (
	"net/netip"
	"testing"
	"unsafe"
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
