package kswriter

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

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

// gatedStore is a memStore whose SaveGroup signals it began and waits
// for gate.
type gatedStore struct {
	memStore
	mu      sync.Mutex
	began   chan struct{}
	gate    chan struct{}
	written []string
}

func (g *gatedStore) SaveGroup(gs *ks.GroupState) error {
	g.began <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written = append(g.written, fmt.Sprintf("group spi %d", gs.TEKs[0].SPI))
	return g.memStore.SaveGroup(gs)
}

func (g *gatedStore) SaveKeys(gs *ks.GroupState) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written = append(g.written, fmt.Sprintf("keys spi %d", gs.TEKs[0].SPI))
	return g.memStore.SaveKeys(gs)
}

// keysState is group G at seq with one TEK of spi and n members.
func keysState(seq, spi uint32, n int) *ks.GroupState {
	gs := &ks.GroupState{Name: "G", Seq: seq, TEKs: []ks.TEKState{{SPI: spi, SIDReserved: 1025}}}
	for i := range n {
		gs.Members = append(gs.Members, ks.MemberState{Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})})
	}
	return gs
}

// proves: O4 (issue 18 review, LOW: SaveKeys bypassed the writer, so a
// periodic save of the same Seq taken before a registration replaced the
// group's keys (no rekey: the Seq stays) could land after the new keys'
// write and put the old keys back on disk): the queued save takes the
// newer keys, and a SaveKeys of other keys than the save being written
// waits for it; of the same keys (a raised sender-ID mark only), it does
// not wait)
func TestSaveKeysNeverFollowedByOlderKeysOfSameSeq(t *testing.T) {
	// Queued: the save takes the newer keys, keeps its members.
	st := &memStore{groups: map[string]*ks.GroupState{}}
	w := New(st, slog.New(slog.DiscardHandler))
	w.Queue(keysState(5, 100, 3))
	if err := w.SaveKeys(keysState(5, 200, 0)); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if g := st.groups["G"]; g.TEKs[0].SPI != 200 || len(g.Members) != 3 {
		t.Fatalf("after the queued save: TEK SPI %d, %d members; want 200, 3", g.TEKs[0].SPI, len(g.Members))
	}

	// Being written: SaveKeys of other keys waits for it, lands after.
	gs := &gatedStore{memStore: memStore{groups: map[string]*ks.GroupState{}}, began: make(chan struct{}), gate: make(chan struct{})}
	w = New(gs, slog.New(slog.DiscardHandler))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { w.Run(stop); close(done) }()
	w.Queue(keysState(5, 100, 3))
	<-gs.began
	saved := make(chan error, 1)
	go func() { saved <- w.SaveKeys(keysState(5, 200, 0)) }()
	select {
	case err := <-saved:
		t.Fatalf("SaveKeys of new keys returned (%v) while an older save of the same Seq was being written", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gs.gate)
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(gs.written); got != "[group spi 100 keys spi 200]" {
		t.Fatalf("writes %s, want the older save first", got)
	}

	// The same keys (a raised mark): no wait.
	gs.gate = make(chan struct{})
	w.Queue(keysState(5, 200, 4))
	<-gs.began
	go func() { saved <- w.SaveKeys(keysState(5, 200, 0)) }()
	select {
	case err := <-saved:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SaveKeys of the same keys waited for the writer")
	}
	close(gs.gate)
	close(stop)
	<-done
	if g := gs.groups["G"]; g.TEKs[0].SPI != 200 || len(g.Members) != 4 {
		t.Fatalf("stored TEK SPI %d, %d members; want 200, 4", g.TEKs[0].SPI, len(g.Members))
	}
}
