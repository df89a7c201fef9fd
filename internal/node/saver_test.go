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
	"github.com/groupvpn/groupvpn/internal/kswriter"
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

// proves: O4 (issue 15: the writer never lets an older member list land
// after a newer one: a synchronous SaveGroup replaces the group's queued
// periodic save, and what the writer flushes later is only what came
// after; a rekey's SaveKeys is written at once and leaves the queued save
// of its group queued: it writes no members, and the store keeps the
// higher Seq's keys whichever lands last, TestSaveKeysDoesNotWaitForMembers)
func TestSaverKeepsOrder(t *testing.T) {
	r := &recordStore{}
	s := kswriter.New(r, slog.New(slog.DiscardHandler))
	s.Queue(&ks.GroupState{Name: "A", Seq: 1}, &ks.GroupState{Name: "B", Seq: 1})
	if err := s.SaveKeys(&ks.GroupState{Name: "A", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup(&ks.GroupState{Name: "B", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	s.Queue(&ks.GroupState{Name: "A", Seq: 3})
	s.Flush()
	want := "[keys A seq 2 group B seq 2 group A seq 3]"
	if got := fmt.Sprint(r.writes); got != want {
		t.Fatalf("writes %s, want %s", got, want)
	}
}

// membersState is group G at seq with n members.
func membersState(seq uint32, n int, spi byte) *ks.GroupState {
	gs := &ks.GroupState{Name: "G", ID: 7, Seq: seq, SeqReserved: seq, UpdatedAt: time.Unix(1, 0).UTC()}
	gs.KEK.SPI[0] = spi
	gs.KEK.Key = []byte{spi, 1, 2, 3}
	for i := range n {
		gs.Members = append(gs.Members, ks.MemberState{Address: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Registered: time.Unix(1, 0).UTC(), LastRegister: time.Unix(1, 0).UTC(), Registrations: 1})
	}
	return gs
}

// proves: O4, T1 (issue 15: the store's fsync does not hold the loop
// behind the writer) — a rekey's SaveKeys returns while the writer's
// periodic save of the group's members is still in progress (stuck here),
// and when that older save lands after it, the stored sequence number
// and keys stay those SaveKeys wrote while the members are the saved ones.
func TestSaveKeysDoesNotWaitForMembers(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "ks.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SaveGroup(membersState(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	gs := &gatedStore{Store: st, gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	s := kswriter.New(gs, slog.New(slog.DiscardHandler))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { s.Run(stop); close(done) }()
	gs.closed.Store(true)
	s.Queue(membersState(1, 3, 1))
	select {
	case <-gs.waiting: // the periodic save is in progress, stuck
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not take the periodic save")
	}
	saved := make(chan error, 1)
	go func() { saved <- s.SaveKeys(membersState(2, 0, 2)) }()
	select {
	case err := <-saved:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		close(gs.gate)
		t.Fatal("SaveKeys waited for the writer's periodic save of the members")
	}
	check := func(when string, members int) {
		t.Helper()
		loaded, err := st.LoadGroups()
		if err != nil || len(loaded) != 1 {
			t.Fatalf("%s: %v %v", when, loaded, err)
		}
		g := loaded[0]
		if g.Seq != 2 || g.KEK.SPI[0] != 2 || len(g.Members) != members {
			t.Fatalf("%s: stored seq %d, KEK SPI %d, %d members; want seq 2, SPI 2, %d members", when, g.Seq, g.KEK.SPI[0], len(g.Members), members)
		}
	}
	check("after SaveKeys, the older save still in progress", 1) // what a kill -9 now would leave
	close(gs.gate)
	close(stop)
	<-done
	check("after the older periodic save landed", 3)
}

// entryStore signals each SaveGroup as it begins.
type entryStore struct {
	*store.Store
	entered chan struct{}
}

func (e *entryStore) SaveGroup(gs *ks.GroupState) error {
	select {
	case e.entered <- struct{}{}:
	default:
	}
	return e.Store.SaveGroup(gs)
}

// BenchmarkSaveKeysWhileMembersAreSaved is what a rekey's SaveKeys costs
// the event loop right after registrations: the writer has just begun the
// periodic save of a 10,000-member group (one transaction, ~65 ms) when
// the loop writes the rekey's keys (issue 15). "alone" is SaveKeys with
// the writer idle: its own write.
func BenchmarkSaveKeysWhileMembersAreSaved(b *testing.B) {
	for _, busy := range []bool{false, true} {
		name := "alone"
		if busy {
			name = "during-10000-member-save"
		}
		b.Run(name, func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "ks.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			es := &entryStore{Store: st, entered: make(chan struct{}, 1)}
			s := kswriter.New(es, slog.New(slog.DiscardHandler))
			seq := uint32(1)
			if err := st.SaveGroup(membersState(seq, 10000, 1)); err != nil {
				b.Fatal(err)
			}
			stop, done := make(chan struct{}), make(chan struct{})
			go func() { s.Run(stop); close(done) }()
			members := membersState(0, 10000, 1)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if busy {
					select {
					case <-es.entered: // the previous round's
					default:
					}
					m := *members
					m.Seq = seq
					s.Queue(&m)
					<-es.entered
				}
				seq++
				b.StartTimer()
				if err := s.SaveKeys(membersState(seq, 0, byte(seq))); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(stop)
			<-done
		})
	}
}
