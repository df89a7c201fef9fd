package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/version"
)

// gatedStore is a store whose SaveGroup waits at a gate once closed.
type gatedStore struct {
	*store.Store
	closed  atomic.Bool
	gate    chan struct{}
	waiting chan struct{} // a SaveGroup waits at the gate
}

func (g *gatedStore) SaveGroup(gs *ks.GroupState) error {
	if g.closed.Load() {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-g.gate
	}
	return g.Store.SaveGroup(gs)
}

// proves: O4 (issue 15: the periodic save of the KS's state, members
// registered and ACKs, is written off the event loop: while the store's
// transaction is stuck, the node goes on answering; what was queued is
// on disk when Run returns)
func TestPeriodicSaveOffTheLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(filepath.Join(t.TempDir(), "ks.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gs := &gatedStore{Store: st, gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	ksAddr := netip.MustParseAddr("127.0.0.13")
	kctx, kcancel := context.WithCancel(ctx)
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}, Store: gs})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { kn.Run(kctx); close(ran) }()
	gs.closed.Store(true)
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.130:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	select {
	case <-gs.waiting: // the save of the new member is stuck in the store
	case <-time.After(5 * time.Second):
		t.Fatal("no periodic save after a registration")
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	var members int
	if err := kn.Do(dctx, func() { members = len(kn.ks.Snapshot(kn.Now())[0].Members) }); err != nil || members != 1 {
		t.Fatalf("the node did not answer while its store was busy: %v (%d members)", err, members)
	}
	kcancel()
	close(gs.gate)
	<-ran
	loaded, err := st.LoadGroups()
	if err != nil || len(loaded) != 1 || len(loaded[0].Members) != 1 {
		t.Fatalf("after Run returned the store holds %v (%v)", loaded, err)
	}
}

// recordStore records the writes it is asked for.
type recordStore struct{ writes []string }

func (r *recordStore) LoadGroups() ([]*ks.GroupState, error) { return nil, nil }
func (r *recordStore) SaveGroup(g *ks.GroupState) error {
	r.writes = append(r.writes, fmt.Sprintf("group %s seq %d", g.Name, g.Seq))
	return nil
}
func (r *recordStore) SaveKeys(g *ks.GroupState) error {
	r.writes = append(r.writes, fmt.Sprintf("keys %s seq %d", g.Name, g.Seq))
	return nil
}
func (r *recordStore) ReserveSeq(string, uint32) (uint32, uint32, error) { return 1, 1, nil }
func (r *recordStore) IntegrityFailures() uint64                         { return 0 }

// proves: O4 (issue 15: the writer never lets an older state of a group
// land after a newer one: a rekey's SaveKeys first writes the group's
// queued periodic save (its members), a synchronous SaveGroup replaces
// it, and what the writer flushes later is only what came after)
func TestSaverKeepsOrder(t *testing.T) {
	r := &recordStore{}
	s := newSaver(r, slog.New(slog.DiscardHandler))
	s.queue([]*ks.GroupState{{Name: "A", Seq: 1}, {Name: "B", Seq: 1}})
	if err := s.SaveKeys(&ks.GroupState{Name: "A", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(&ks.GroupState{Name: "B", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	s.queue([]*ks.GroupState{{Name: "A", Seq: 3}})
	s.flush()
	want := "[group A seq 1 keys A seq 2 group B seq 2 group A seq 3]"
	if got := fmt.Sprint(r.writes); got != want {
		t.Fatalf("writes %s, want %s", got, want)
	}
}
