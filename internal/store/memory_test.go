package store

import (
	"path/filepath"
	"runtime"
	"testing"
)

// storeHeapPerMember saves a group of n members whole and returns the
// heap the Store keeps per member afterwards (what it remembers of them).
func storeHeapPerMember(t testing.TB, n int) float64 {
	s := mustOpen(t, filepath.Join(t.TempDir(), "ks.db"))
	defer s.Close()
	g := &GroupState{Name: "G", ID: 1, Members: manyMembers(n)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.SaveGroup(g); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(g)
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// The Store remembers a digest of each member it wrote, so that a save
// writes only the members that changed. That memory was a map by address
// (53 B a member with 100,000); it is a table sorted by address now,
// 32 B a member.
// proves: issue 18 (KS memory per member: the store's per-member digests)
func TestStoreHeapPerMember(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 members: skipped with -short, runs in make test")
	}
	per := storeHeapPerMember(t, 100_000)
	t.Logf("store heap per member with 100,000 members: %.0f B", per)
	if per > 40 {
		t.Errorf("the store keeps %.0f B per member, want at most 40", per)
	}
}
