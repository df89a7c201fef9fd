package store

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// proves: R2 (issue 18: the store's memo of written members, folded by a
// merge rather than a sort, is what the saves wrote) — random sets and
// drops over a memo, folded at random points, leave exactly the digests a
// plain map of the same operations holds, sorted by address.
func TestMemberMemoFoldsToWhatWasWritten(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	addr := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))}) }
	for round := range 200 {
		want := map[netip.Addr]uint64{}
		m := &memberMemo{}
		for range r.IntN(300) {
			a := addr()
			switch r.IntN(10) {
			case 0, 1:
				m.drop(a)
				delete(want, a)
			case 2:
				m.table()
			default:
				d := r.Uint64()
				m.set(a, d)
				want[a] = d
			}
		}
		got := m.table()
		if !slices.IsSortedFunc(got, cmpDigestOf) {
			t.Fatalf("round %d: table not sorted", round)
		}
		have := map[netip.Addr]uint64{}
		for _, e := range got {
			if _, dup := have[e.addr]; dup {
				t.Fatalf("round %d: %s twice", round, e.addr)
			}
			have[e.addr] = e.d
		}
		if !maps.Equal(have, want) {
			t.Fatalf("round %d: memo %v, written %v", round, have, want)
		}
	}
}

func cmpDigestOf(x, y memberDigestOf) int { return x.addr.Compare(y.addr) }
