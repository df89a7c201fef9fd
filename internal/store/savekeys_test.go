package store

import (
	"path/filepath"
	"testing"
)

// proves: O4, T1 (issue 15: the write before a rekey is sent saves the
// keys, the sequence number and the rekey in flight without rewriting the
// members; a group not saved yet is saved whole; the mark never lowers)
func TestSaveKeysLeavesMembers(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	g := fullGroup("G", 7)
	if err := s.SaveKeys(g); err != nil { // never saved: whole
		t.Fatal(err)
	}
	if got := load(t, s)["G"]; len(got.Members) != 2 {
		t.Fatalf("a first SaveKeys saved %d members, want the group whole", len(got.Members))
	}
	next := fullGroup("G", 7)
	next.Seq, next.SeqReserved = 42, 0
	next.KEK.SPI[0] ^= 0xff
	next.Members = nil // not read
	next.InFlight = &PushState{Seq: 42, Data: []byte("push"), Pending: nil}
	if err := s.SaveKeys(next); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)["G"]
	if got.Seq != 42 || got.SeqReserved != 100 || got.KEK.SPI != next.KEK.SPI || got.InFlight == nil || got.InFlight.Seq != 42 {
		t.Fatalf("after SaveKeys: seq %d reserved %d KEK %x in flight %v", got.Seq, got.SeqReserved, got.KEK.SPI, got.InFlight)
	}
	if len(got.Members) != 2 || got.Members[0].Registrations == 0 && got.Members[1].Registrations == 0 {
		t.Fatalf("SaveKeys changed the members: %+v", got.Members)
	}
	next.Seq = 150
	if err := s.SaveKeys(next); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s)["G"]; got.SeqReserved != 150 {
		t.Fatalf("reserved %d after a save of seq 150", got.SeqReserved)
	}
}

// proves: O4, T1 (issue 15: a periodic save of the members taken before a
// rekey may land after the rekey's SaveKeys: the node's writer does not
// hold SaveKeys behind it) — a SaveGroup with a lower Seq than the stored
// one writes its members and leaves the stored keys, Seq and rekey in
// flight; a SaveKeys with a lower Seq writes nothing of it either.
func TestOlderSaveKeepsNewerKeys(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	old := fullGroup("G", 7)
	old.Seq = 5
	if err := s.SaveGroup(old); err != nil {
		t.Fatal(err)
	}
	next := fullGroup("G", 7)
	next.Seq = 6
	next.KEK.SPI[0] ^= 0xff
	next.Members = nil
	next.InFlight = &PushState{Seq: 6, Data: []byte("push")}
	if err := s.SaveKeys(next); err != nil {
		t.Fatal(err)
	}
	older := fullGroup("G", 7) // the periodic save taken before the rekey
	older.Seq = 5
	older.Members = older.Members[:1]
	if err := s.SaveGroup(older); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)["G"]
	if got.Seq != 6 || got.KEK.SPI != next.KEK.SPI || got.InFlight == nil || got.InFlight.Seq != 6 {
		t.Fatalf("an older SaveGroup brought back seq %d KEK %x in flight %v", got.Seq, got.KEK.SPI, got.InFlight)
	}
	if len(got.Members) != 1 {
		t.Fatalf("the older SaveGroup's members were not written: %d members", len(got.Members))
	}
	stale := fullGroup("G", 7)
	stale.Seq = 4
	if err := s.SaveKeys(stale); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s)["G"]; got.Seq != 6 || got.KEK.SPI != next.KEK.SPI {
		t.Fatalf("an older SaveKeys brought back seq %d KEK %x", got.Seq, got.KEK.SPI)
	}
}

// proves: O4 (issue 18 review: a registration's raised sender-ID mark is
// written with SaveKeys from ks.KeysState, which has no rekey in flight;
// it erased the stored one, so a crash during a unicast rekey's delivery
// did not resume it) — a SaveKeys of the same Seq without a rekey in
// flight keeps the stored one and writes its keys; a SaveGroup (the
// periodic save, which says when a delivery ended) clears it.
func TestSaveKeysKeepsRekeyInFlight(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	g := fullGroup("G", 7)
	g.InFlight = &PushState{Seq: g.Seq, Data: []byte("push")}
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	raised := fullGroup("G", 7)
	raised.Members = nil
	raised.TEKs[1].SIDReserved = 2049
	if err := s.SaveKeys(raised); err != nil {
		t.Fatal(err)
	}
	got := load(t, s)["G"]
	if got.InFlight == nil || string(got.InFlight.Data) != "push" || got.TEKs[1].SIDReserved != 2049 {
		t.Fatalf("after a keys-only write of the same seq: in flight %v, mark %d", got.InFlight, got.TEKs[1].SIDReserved)
	}
	ended := fullGroup("G", 7)
	ended.TEKs[1].SIDReserved = 2049
	if err := s.SaveGroup(ended); err != nil {
		t.Fatal(err)
	}
	if got := load(t, s)["G"]; got.InFlight != nil {
		t.Fatalf("a save of the members saying the delivery ended kept it: %v", got.InFlight)
	}
}
