package store

import (
	"hash/maphash"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// members returns n members from 10.0.0.1 on.
func manyMembers(n int) []MemberState {
	ms := make([]MemberState, n)
	for i := range ms {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).Next()
		ms[i] = MemberState{Address: a, Identity: a.String(), Version: "1.1.0", Registered: t0, LastRegister: t0,
			Registrations: 1, SenderIDs: []uint32{uint32(i + 1)}, Port: 848}
	}
	return ms
}

// pagesWritten is how many pages the store's transactions have written.
func pagesWritten(s *Store) int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }

// proves: O4 (issue 18: store write amplification) — the periodic save of
// a group of 10,000 members after one member re-registered, one left and
// one joined writes a handful of pages, not every member's (the save
// rewrote the whole member bucket: hundreds of pages a second while
// members register, 100,000 members' worth at scale), and the stored group
// is exactly the saved one.
func TestSaveGroupWritesOnlyChangedMembers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	g.Members = manyMembers(10000)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	whole := pagesWritten(s)
	g.Members[5000].LastRegister = t0.Add(time.Hour)
	g.Members[5000].Registrations++
	gone := g.Members[42].Address
	g.Members = append(g.Members[:42], g.Members[43:]...)
	g.Members = append(g.Members, MemberState{Address: netip.MustParseAddr("10.200.0.1"), Registered: t0, LastRegister: t0, Registrations: 1})
	before := pagesWritten(s)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	if n := pagesWritten(s) - before; n > 16 || n*20 > whole {
		t.Fatalf("a save changing 3 of 10,000 members wrote %d pages (the first save of all of them: %d)", n, whole)
	}
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	got := load(t, s)["G"]
	if len(got.Members) != len(g.Members) {
		t.Fatalf("%d members stored, %d saved", len(got.Members), len(g.Members))
	}
	byAddr := map[netip.Addr]MemberState{}
	for _, m := range got.Members {
		byAddr[m.Address] = m
	}
	if _, ok := byAddr[gone]; ok {
		t.Fatalf("member %s left but is still stored", gone)
	}
	for _, m := range g.Members {
		if !reflect.DeepEqual(byAddr[m.Address], m) {
			t.Fatalf("member %s: stored %+v, saved %+v", m.Address, byAddr[m.Address], m)
		}
	}
}

// proves: O4 (issue 18) — a save after SaveMember or DeleteMember changed
// the stored members, or after the store was opened again, writes what it
// is given: what the Store remembers of its last save is not trusted
// once something else wrote the members.
func TestSaveGroupAfterOtherMemberWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	g.Members = manyMembers(10)
	save := func() {
		t.Helper()
		if err := s.SaveGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	save()
	changed := g.Members[3]
	changed.Registrations = 99
	if err := s.SaveMember("G", changed); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMember("G", g.Members[4].Address); err != nil {
		t.Fatal(err)
	}
	save() // the same members as the first save: member 3 back to 1 registration, member 4 back
	check := func(what string) {
		t.Helper()
		got := load(t, s)["G"]
		if !reflect.DeepEqual(got.Members, g.Members) {
			t.Fatalf("%s: stored %+v,\nsaved %+v", what, got.Members, g.Members)
		}
	}
	check("after SaveMember and DeleteMember")
	s.Close()
	s = mustOpen(t, path)
	defer s.Close()
	if err := s.SaveMember("G", changed); err != nil {
		t.Fatal(err)
	}
	save()
	check("after a new Open")
}

// proves: O4 (issue 18) — every field of a member is in its digest: a
// member that changes in any field is written again.
func TestMemberDigestCoversEveryField(t *testing.T) {
	seed := maphash.MakeSeed()
	base := manyMembers(1)[0]
	d0 := memberDigest(seed, &base)
	v := reflect.ValueOf(&base).Elem()
	for i := 0; i < v.NumField(); i++ {
		m := base
		f := reflect.ValueOf(&m).Elem().Field(i)
		switch f.Interface().(type) {
		case netip.Addr:
			f.Set(reflect.ValueOf(netip.MustParseAddr("10.9.9.9")))
		case string:
			f.SetString(f.String() + "x")
		case time.Time:
			f.Set(reflect.ValueOf(t0.Add(time.Second)))
		case int:
			f.SetInt(f.Int() + 1)
		case uint16, uint8:
			f.SetUint(f.Uint() + 1)
		case bool:
			f.SetBool(!f.Bool())
		case []uint32:
			f.Set(reflect.ValueOf([]uint32{1, 2}))
		default:
			t.Fatalf("field %s of type %s: the digest test does not know it", v.Type().Field(i).Name, f.Type())
		}
		if memberDigest(seed, &m) == d0 {
			t.Errorf("field %s changed but the digest did not", v.Type().Field(i).Name)
		}
	}
}
