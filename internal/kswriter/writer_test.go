package kswriter

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// memStore is a ks.Store in memory that records the writes.
type memStore struct{ groups map[string]*ks.GroupState }

func (m *memStore) LoadGroups() ([]*ks.GroupState, error) { return nil, nil }
func (m *memStore) SaveGroup(gs *ks.GroupState) error {
	c := *gs
	m.groups[gs.Name] = &c
	return nil
}
func (m *memStore) SaveKeys(gs *ks.GroupState) error {
	c := *gs
	if old := m.groups[gs.Name]; old != nil {
		c.Members = old.Members
	}
	m.groups[gs.Name] = &c
	return nil
}
func (m *memStore) ReserveSeq(string, uint32) (uint32, uint32, error) { return 0, 0, nil }

// proves: O4 (issue 18, review: ikev2d kept the last queued full state of
// each group, a copy of every member, for ever, to give a write of keys
// alone the members the writer had not written yet; the writer now takes
// them from its own queue, and drops them once written): a members-free
// ordered write while a state is queued saves the queued members with
// the newer keys; one after the queue is written keeps the stored members.
func TestSaveKeysOrderedTakesQueuedMembers(t *testing.T) {
	st := &memStore{groups: map[string]*ks.GroupState{}}
	w := New(st, slog.New(slog.DiscardHandler))
	members := []ks.MemberState{{Address: netip.MustParseAddr("10.0.0.1")}, {Address: netip.MustParseAddr("10.0.0.2")}}
	w.Queue(&ks.GroupState{Name: "G", Seq: 1, Members: members})
	if err := w.SaveKeysOrdered(&ks.GroupState{Name: "G", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if g := st.groups["G"]; g == nil || g.Seq != 2 || len(g.Members) != 2 {
		t.Fatalf("stored %+v, want seq 2 with the 2 queued members", g)
	}
	if w.Flush(); st.groups["G"].Seq != 2 {
		t.Fatalf("the older queued state was written after the newer keys: seq %d", st.groups["G"].Seq)
	}
	if err := w.SaveKeysOrdered(&ks.GroupState{Name: "G", Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if g := st.groups["G"]; g.Seq != 3 || len(g.Members) != 2 {
		t.Fatalf("stored %+v, want seq 3 with the stored members", g)
	}
}
