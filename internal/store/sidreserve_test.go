package store

import (
	"path/filepath"
	"testing"
)

// proves: O4 (issue 18 F4, review: a node writes a key's raised sender-ID
// high-water mark with SaveKeys before the answer whose IDs raised it
// leaves, without waiting for the writer; a periodic save taken before the
// raise, of the same Seq, may land after it and must not lower the mark,
// or a restart hands out again IDs that left), at a wider width too.
func TestOlderSaveKeepsSIDReservation(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	old := fullGroup("G", 7)
	old.TEKs[0].SIDNext, old.TEKs[0].SIDReserved = 10, 1025
	if err := s.SaveGroup(old); err != nil {
		t.Fatal(err)
	}
	raised := fullGroup("G", 7)
	raised.Members = nil
	raised.TEKs[0].SIDNext, raised.TEKs[0].SIDReserved = 1026, 2049
	if err := s.SaveKeys(raised); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(old); err != nil { // the writer's, taken before
		t.Fatal(err)
	}
	got := load(t, s)["G"]
	if r := got.TEKs[0].SIDReserved; r != 2049 {
		t.Fatalf("stored mark %d after an older periodic save, want 2049", r)
	}
	if len(got.Members) != 2 {
		t.Fatalf("the periodic save's members not written: %d", len(got.Members))
	}
	// The keys' width grew since (18 bits): the stored 16-bit mark
	// counts four times as many IDs.
	wide := fullGroup("G", 7)
	wide.TEKs[0].SIDBits, wide.TEKs[0].SIDNext, wide.TEKs[0].SIDReserved = 18, 100, 200
	if err := s.SaveGroup(wide); err != nil {
		t.Fatal(err)
	}
	if r := load(t, s)["G"].TEKs[0].SIDReserved; r != 2049<<2 {
		t.Fatalf("stored mark %d at 18 bits, want %d", r, 2049<<2)
	}
}
