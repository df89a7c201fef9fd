package store

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
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

// proves: O4 (issue 18 review: a key's sender-ID floor, the highest mark
// of the keys it replaced, is kept with it; a state record written before
// floors were kept, without the field, still loads, with no floor)
func TestSIDFloorKeptAndOlderRecordsLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	s := mustOpen(t, path)
	g := fullGroup("G", 7)
	if err := s.SaveKeys(g); err != nil {
		t.Fatal(err)
	}
	if f := load(t, s)["G"].TEKs[1].SIDFloor; f != 30050 {
		t.Fatalf("stored floor %d, want 30050", f)
	}
	// The record as the previous version wrote it: no sid_floor.
	old := fullGroup("G", 7)
	old.TEKs[1].SIDFloor = 0
	rec, err := json.Marshal(groupRecord{Name: old.Name, ID: old.ID, SigningKey: old.SigningKey, KEK: old.KEK, TEKs: old.TEKs, Seq: old.Seq + 1, UpdatedAt: old.UpdatedAt})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte("sid_floor")) {
		t.Fatalf("a zero floor is written: %s", rec)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		l := groupLoc([]byte("G"), keyState)
		return tx.Bucket(bucketGroups).Bucket([]byte("G")).Put(keyState, seal(l, rec))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	defer s.Close()
	got := load(t, s)["G"]
	if got.TEKs[1].SIDFloor != 0 || got.TEKs[1].SIDReserved != 1025 || got.Seq != old.Seq+1 {
		t.Fatalf("previous version's record: floor %d, mark %d, seq %d", got.TEKs[1].SIDFloor, got.TEKs[1].SIDReserved, got.Seq)
	}
}
