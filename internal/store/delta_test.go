package store

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// byAddress is a loaded group's members by address.
func byAddress(g *GroupState) map[netip.Addr]MemberState {
	out := map[netip.Addr]MemberState{}
	for _, m := range g.Members {
		out[m.Address] = m
	}
	return out
}

// proves: O4 (issue 18: a routine save costs the members changed) — a
// delta (GroupState.Delta) of a group of 10,000 members writes the two
// members it changes and the one it adds, deletes the one gone, in a
// handful of pages, and leaves every other stored member exactly as the
// whole save wrote it, across a reopen.
func TestSaveGroupDeltaWritesOnlyListed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	g.Members = manyMembers(10000)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	whole := pagesWritten(s)
	want := byAddress(g)
	d := *g
	d.Delta, d.Seq = true, g.Seq+1
	a, b := g.Members[17], g.Members[9000]
	a.Registrations, a.LastRegister = 2, t0.Add(time.Hour)
	b.Removed, b.MissedRekeys = true, 3
	added := MemberState{Address: netip.MustParseAddr("10.200.0.1"), Registered: t0, LastRegister: t0, Registrations: 1}
	d.Members = []MemberState{a, b, added}
	gone := g.Members[42].Address
	d.MembersGone = []netip.Addr{gone}
	before := pagesWritten(s)
	if err := s.SaveGroup(&d); err != nil {
		t.Fatal(err)
	}
	if n := pagesWritten(s) - before; n > 16 || n*20 > whole {
		t.Fatalf("a delta of 4 members of 10,000 wrote %d pages (the whole save: %d)", n, whole)
	}
	want[a.Address], want[b.Address], want[added.Address] = a, b, added
	delete(want, gone)
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	got := load(t, s)["G"]
	if got.Seq != d.Seq || got.Delta {
		t.Fatalf("stored seq %d (delta %v), want %d as a group", got.Seq, got.Delta, d.Seq)
	}
	if !reflect.DeepEqual(byAddress(got), want) {
		t.Fatalf("stored members differ from the whole save with the delta applied (%d stored, %d expected)", len(got.Members), len(want))
	}
}

// proves: O4 (issue 18) — a delta updates what the Store remembers of the
// members it wrote: a whole save after it that brings a member back to
// what the whole save before wrote (MissedRekeys 0 -> 1 by a delta -> 0)
// writes that member again (with the memory of the first whole save
// alone it would be skipped as unchanged, and the delta's value kept on
// disk); and a member a delta deleted is written again by a whole save
// that lists it.
func TestWholeSaveAfterDeltaWritesRevertedMember(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	g.Members = manyMembers(100)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	x := g.Members[5]
	x.MissedRekeys = 1
	if err := s.SaveGroup(&GroupState{Name: "G", ID: 7, Seq: g.Seq, Delta: true, Members: []MemberState{x},
		MembersGone: []netip.Addr{g.Members[6].Address}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(g); err != nil { // member 5 as first saved, member 6 listed again
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	got := byAddress(load(t, s)["G"])
	if !reflect.DeepEqual(got, byAddress(g)) {
		t.Fatalf("stored %d members: member 5 %+v, member 6 present %v; want the whole save's", len(got), got[x.Address], len(got) == len(g.Members))
	}
}

// proves: O4 (issue 18) — a delta is refused for a group the store does
// not hold (its other members would be missing: ErrNoGroup), and when it
// lists a member twice or as both changed and gone; nothing is written.
func TestSaveGroupDeltaRefused(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	a := MemberState{Address: netip.MustParseAddr("10.0.0.1"), Registered: t0}
	err := s.SaveGroup(&GroupState{Name: "G", ID: 7, Delta: true, Members: []MemberState{a}})
	if !errors.Is(err, ErrNoGroup) {
		t.Fatalf("a delta of a group never saved: %v, want ErrNoGroup", err)
	}
	if len(load(t, s)) != 0 {
		t.Fatal("the refused delta created the group")
	}
	// SaveKeys of a delta never saves it as a whole new group.
	if err := s.SaveKeys(&GroupState{Name: "G", ID: 7, Delta: true, Members: []MemberState{a}}); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("SaveKeys of a delta of a group never saved: %v, want ErrNoGroup", err)
	}
	g := fullGroup("G", 7)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*GroupState{
		{Name: "G", ID: 7, Seq: g.Seq, Delta: true, Members: []MemberState{a, a}},
		{Name: "G", ID: 7, Seq: g.Seq, Delta: true, Members: []MemberState{a}, MembersGone: []netip.Addr{a.Address}},
		{Name: "G", ID: 7, Seq: g.Seq, Delta: true, Members: []MemberState{{}}},
	} {
		if err := s.SaveGroup(d); err == nil {
			t.Fatalf("delta %v accepted", d)
		}
	}
	if got := load(t, s)["G"]; !reflect.DeepEqual(got.Members, g.Members) {
		t.Fatalf("a refused delta changed the members: %v", got.Members)
	}
}
