package ks

import (
	"net/netip"
	"slices"
	"testing"
)

// proves: N1 (issue 18: a registration's lookups in the member maps) —
// the member table's index-carrying forms (getAt, addAt, touchAt) name
// the member get and add name, touchAt lists a member for the next delta
// once as touch does, and a member's sender IDs read and replaced without
// looking moreSIDs up for a member of one ID stay what setSIDs was given
// as its count goes 1, 3, 1, 0, 2.
func TestMemberTableIndexAndSIDs(t *testing.T) {
	ms := newMembers()
	a := netip.MustParseAddr("127.0.0.5")
	ms.add(netip.MustParseAddr("127.0.0.4"))
	m, i := ms.addAt(a)
	if g, gi := ms.getAt(a); g != m || gi != i || ms.get(a) != m || i != 1 {
		t.Fatalf("getAt %p %d, addAt %p %d", g, gi, m, i)
	}
	if g, gi := ms.getAt(netip.MustParseAddr("127.0.0.6")); g != nil || gi != -1 {
		t.Fatal("getAt of an address not listed")
	}
	ms.touchAt(m, i)
	ms.touch(m)
	ms.touchAt(m, i)
	if !slices.Equal(ms.unsaved, []int32{1}) {
		t.Fatalf("unsaved %v, want [1]", ms.unsaved)
	}
	for _, ids := range [][]uint32{{7}, {8, 9, 10}, {11}, nil, {12, 13}} {
		ms.setSIDs(m, ids)
		var got []uint32
		ms.eachSID(m, func(id uint32) { got = append(got, id) })
		if !slices.Equal(got, ids) || !slices.Equal(ms.sids(m), ids) {
			t.Fatalf("after setSIDs(%v): eachSID %v, sids %v", ids, got, ms.sids(m))
		}
		if _, more := ms.moreSIDs[a]; more != (len(ids) > 1) {
			t.Fatalf("after setSIDs(%v): moreSIDs entry %v", ids, more)
		}
	}
}
