package store

import (
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// proves: O4 (issue 18 review of the delta saves: SaveKeys, which the
// node's loop calls for a registration's raised sender-ID mark without
// waiting for the writer, reads the members memo only under memoMu; after
// b855b4c it read s.written unlocked while the writer goroutine's whole
// SaveGroup of another group wrote it: a data race the runtime may turn
// into "fatal error: concurrent map read and map write". make test runs
// this package under -race, which reports it.)
func TestSaveKeysDoesNotRaceWithSaveGroupMemo(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ks.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	mk := func(name string, id uint32, regs int) *GroupState {
		return &GroupState{Name: name, ID: id, Seq: 1, Members: []MemberState{{Address: netip.MustParseAddr("10.0.0.1"), Registered: t0, Registrations: regs}}}
	}
	if err := s.SaveGroup(mk("A", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(mk("B", 2, 0)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the writer goroutine: whole saves of group B
		defer wg.Done()
		for i := 1; i <= 40; i++ {
			if err := s.SaveGroup(mk("B", 2, i)); err != nil {
				t.Error(err)
			}
		}
	}()
	go func() { // the loop: keys-only writes of group A
		defer wg.Done()
		for i := 1; i <= 40; i++ {
			if err := s.SaveKeys(&GroupState{Name: "A", ID: 1, Seq: 1}); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
}
