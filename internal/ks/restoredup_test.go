package ks

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: R2 (a member's sender IDs are what its last record says) —
// Restore overwrites a record whole (nsid 0) before it sets the IDs: a
// member listed twice in a stored state, with 3 IDs and then 1, has the
// 1 in every view (eachSID, sids, the state saved again), not the first
// record's extra IDs left in moreSIDs (review of 370edc7; the store keys
// members by address, so it never lists one twice: LOW).
func TestRestoredDuplicateMemberHasItsLastSIDs(t *testing.T) {
	a := server(t)
	m := addrOf(1, 0)
	if _, _, err := a.Keys(Peer{Addr: netip.AddrPortFrom(m, 848)}, isakmp.GroupID(7), 3, now); err != nil {
		t.Fatal(err)
	}
	st, err := a.State("G", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || len(st.Members[0].SenderIDs) != 3 {
		t.Fatalf("setup: %+v", st.Members)
	}
	dup := st.Members[0]
	dup.SenderIDs = slices.Clone(st.Members[0].SenderIDs[:1])
	st.Members = append(st.Members, dup)
	b := server(t)
	if err := b.Restore(st, now); err != nil {
		t.Fatal(err)
	}
	g := b.byName["G"]
	rec := g.members.get(m)
	got := g.members.sids(rec)
	var each []uint32
	g.members.eachSID(rec, func(id uint32) { each = append(each, id) })
	t.Logf("nsid %d, sids %v, eachSID %v, moreSIDs entry %v", rec.nsid, got, each, g.members.moreSIDs[m])
	if !slices.Equal(got, dup.SenderIDs) {
		t.Fatalf("restored member's sids %v, want %v (the last record's)", got, dup.SenderIDs)
	}
	st2, err := b.State("G", now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st2.Members[0].SenderIDs); n != 1 {
		t.Fatalf("state saved again lists %d sender IDs, want 1", n)
	}
}
