package kswriter_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/kswriter"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/isakmp"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// flaky is a real store whose writes of members fail while fail is set.
type flaky struct {
	*store.Store
	fail atomic.Bool
}

var errDisk = errors.New("disk full (test)")

func (f *flaky) SaveGroup(gs *ks.GroupState) error {
	if f.fail.Load() {
		return errDisk
	}
	return f.Store.SaveGroup(gs)
}

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func member(i int, regs int) ks.MemberState {
	a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	return ks.MemberState{Address: a, Registered: t0, LastRegister: t0.Add(time.Duration(regs) * time.Second), Registrations: regs, Port: 848}
}

// stored is group G's members as the store at path holds them, by address.
func stored(t testing.TB, st *store.Store) (*ks.GroupState, map[netip.Addr]ks.MemberState) {
	t.Helper()
	gs, err := st.LoadGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == "G" {
			out := map[netip.Addr]ks.MemberState{}
			for _, m := range g.Members {
				out[m.Address] = m
			}
			return g, out
		}
	}
	t.Fatal("group G not stored")
	return nil, nil
}

func want(ms ...ks.MemberState) map[netip.Addr]ks.MemberState {
	out := map[netip.Addr]ks.MemberState{}
	for _, m := range ms {
		out[m.Address] = m
	}
	return out
}

func delta(seq uint32, gone []netip.Addr, ms ...ks.MemberState) *ks.GroupState {
	return &ks.GroupState{Name: "G", ID: 7, Seq: seq, Delta: true, Members: ms, MembersGone: gone}
}

// proves: O4 (issue 18: the writer merges deltas) — two deltas queued
// before the writer runs are written as one: the older one's members the
// newer does not list are written too (the writer kept only the newest
// state of a group, right for whole states, which would lose them), the
// newer's win where both list a member, a member gone in the older and
// listed again in the newer is stored, one listed in the older and gone
// in the newer is not, and the keys are the newer's.
func TestQueueMergesTwoDeltas(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ks.db"))
	defer st.Close()
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	a, b, c, d, e := member(1, 1), member(2, 1), member(3, 1), member(4, 1), member(5, 1)
	if err := w.SaveGroup(&ks.GroupState{Name: "G", ID: 7, Seq: 1, Members: []ks.MemberState{a, b, c, d}}); err != nil {
		t.Fatal(err)
	}
	a2, b2, b3 := member(1, 2), member(2, 2), member(2, 3)
	w.Queue(delta(1, []netip.Addr{c.Address}, a2, b2, e))
	w.Queue(delta(2, []netip.Addr{e.Address}, b3, c))
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	g, got := stored(t, st)
	if g.Seq != 2 {
		t.Fatalf("stored seq %d, want the newer delta's 2", g.Seq)
	}
	if w := want(a2, b3, c, d); !reflect.DeepEqual(got, w) {
		t.Fatalf("stored %v\nwant %v", got, w)
	}
}

// proves: O4 (issue 18: a failed save loses no delta) — a delta whose
// write failed is written by the next save, merged under the newer delta
// queued since; and a synchronous write that fails (a rekey's: the
// caller rolls back) leaves the delta queued before it queued.
func TestFailedDeltaWrittenByNextSave(t *testing.T) {
	st := &flaky{Store: openStore(t, filepath.Join(t.TempDir(), "ks.db"))}
	defer st.Close()
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	a, b, c := member(1, 1), member(2, 1), member(3, 1)
	if err := w.SaveGroup(&ks.GroupState{Name: "G", ID: 7, Seq: 1, Members: []ks.MemberState{a, b, c}}); err != nil {
		t.Fatal(err)
	}
	a2, b2 := member(1, 2), member(2, 2)
	w.Queue(delta(1, nil, a2))
	st.fail.Store(true)
	if w.Flush() {
		t.Fatal("the failing write reported written")
	}
	w.Queue(delta(1, nil, b2))
	st.fail.Store(false)
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	if _, got := stored(t, st.Store); !reflect.DeepEqual(got, want(a2, b2, c)) {
		t.Fatalf("stored %v: the failed delta's member lost", got)
	}

	c2 := member(3, 2)
	w.Queue(delta(1, nil, c2))
	st.fail.Store(true)
	if err := w.SaveGroup(&ks.GroupState{Name: "G", ID: 7, Seq: 2, Members: []ks.MemberState{member(1, 9), b2, c2}}); err == nil {
		t.Fatal("the failing synchronous write succeeded")
	}
	st.fail.Store(false)
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	if g, got := stored(t, st.Store); g.Seq != 1 || !reflect.DeepEqual(got, want(a2, b2, c2)) {
		t.Fatalf("stored seq %d %v: the delta queued before the failed write was lost (or the failed write kept)", g.Seq, got)
	}
}

// proves: O4 (issue 18) — a write of keys alone in order with the writer
// (SaveKeysOrdered: ikev2d's registration) while a delta is queued writes
// the newer keys with the delta applied, the other stored members kept
// (taking the queued members as the whole group would delete them).
func TestSaveKeysOrderedWithQueuedDelta(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ks.db"))
	defer st.Close()
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	a, b := member(1, 1), member(2, 1)
	if err := w.SaveGroup(&ks.GroupState{Name: "G", ID: 7, Seq: 1, Members: []ks.MemberState{a, b}}); err != nil {
		t.Fatal(err)
	}
	a2 := member(1, 2)
	w.Queue(delta(1, nil, a2))
	if err := w.SaveKeysOrdered(&ks.GroupState{Name: "G", ID: 7, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if g, got := stored(t, st); g.Seq != 3 || !reflect.DeepEqual(got, want(a2, b)) {
		t.Fatalf("stored seq %d %v, want 3 with both members", g.Seq, got)
	}
}

func gcmGroup(t testing.TB, transform isakmp.ESPTransform, auth uint16) ks.GroupConfig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ks.GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		Rekey: ks.RekeyPolicy{Unicast: true},
		TEKs: []ks.TEKPolicy{{Transform: transform, KeyBits: 128, AuthAlg: auth, Lifetime: time.Hour,
			Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}
}

func peer(i int) ks.Peer {
	return ks.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 848)}
}

// register registers GM i with srv, writing a raised sender-ID mark
// before the answer would leave, as the node does
// (pullPolicy.writeSIDReservations).
func register(t testing.TB, srv *ks.Server, w ks.Store, i int, now time.Time) {
	t.Helper()
	if _, _, err := srv.Keys(peer(i), isakmp.GroupID(7), 1, now); err != nil {
		t.Fatal(err)
	}
	for _, name := range srv.SIDReservationsUnwritten() {
		st, err := srv.KeysState(name, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SaveKeys(st); err != nil {
			t.Fatal(err)
		}
		srv.SIDReservationWritten(st)
	}
}

// proves: O4, T1 (issue 18: a crash loses at most the delta not yet
// written, as it lost the whole save not yet written) — the KS is killed
// (the store closed) with a delta queued and not written: the restarted
// KS has the members of the deltas written, and hands none of the sender
// IDs out again that the lost members (and a member's registration whose
// record was lost) hold (the marks written before each answer: Restore);
// its first periodic save after the restart is a delta again, applied to
// the store it restored from.
func TestCrashWithDeltaQueuedThenRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	cfg := gcmGroup(t, isakmp.ESPAESGCM16, 0)
	now := t0
	st := openStore(t, path)
	srv := ks.New(ks.Options{})
	if err := srv.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	d := ks.NewDelivery(srv, w)
	if _, err := d.Restore(now); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		register(t, srv, w, i, now)
	}
	now = now.Add(2 * ks.SaveInterval)
	res := d.Tick(now)
	if len(res.Save) != 1 || !res.Save[0].Delta || len(res.Save[0].Members) != 10 {
		t.Fatalf("the periodic save after 10 registrations: %v, want a delta of 10", res.Save)
	}
	w.Queue(res.Save...)
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	held := map[uint32]bool{}
	for i := 11; i <= 15; i++ {
		register(t, srv, w, i, now)
	}
	register(t, srv, w, 3, now) // again: new IDs, its earlier ones still held
	for _, a := range srv.MemberAddrs("G") {
		m, _ := srv.Member("G", a)
		for _, id := range m.SenderIDs {
			held[id] = true
		}
	}
	now = now.Add(2 * ks.SaveInterval)
	res = d.Tick(now)
	if len(res.Save) != 1 || !res.Save[0].Delta || len(res.Save[0].Members) != 6 {
		t.Fatalf("the second periodic save: %v, want a delta of 6", res.Save)
	}
	w.Queue(res.Save...)
	st.Close() // killed: the queued delta never reaches the disk

	st = openStore(t, path)
	defer st.Close()
	srv = ks.New(ks.Options{})
	if err := srv.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	w = kswriter.New(st, slog.New(slog.DiscardHandler))
	d = ks.NewDelivery(srv, w)
	if _, err := d.Restore(now); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.MemberAddrs("G")); n != 10 {
		t.Fatalf("%d members restored, want the 10 of the delta written", n)
	}
	for i := 100; i < 400; i++ {
		register(t, srv, w, i, now)
		m, _ := srv.Member("G", peer(i).Addr.Addr())
		for _, id := range m.SenderIDs {
			if held[id] {
				t.Fatalf("sender ID %d handed out again after the restart (GM %d): it is held by a member whose delta was lost", id, i)
			}
		}
	}
	register(t, srv, w, 12, now) // a lost member registers again
	now = now.Add(2 * ks.SaveInterval)
	res = d.Tick(now)
	if len(res.Save) != 1 || !res.Save[0].Delta || len(res.Save[0].Members) != 301 {
		t.Fatalf("the first periodic save after the restart: %v, want a delta of 301", res.Save)
	}
	w.Queue(res.Save...)
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	_, got := stored(t, st)
	m12, _ := srv.Member("G", peer(12).Addr.Addr())
	if len(got) != 311 || !slices.Equal(got[m12.Address].SenderIDs, m12.SenderIDs) {
		t.Fatalf("stored %d members (want 311), member 12 with IDs %v (want %v)", len(got), got[m12.Address].SenderIDs, m12.SenderIDs)
	}
}

// proves: O4 (issue 18: removal then re-registration within one delta) —
// a member taken off the rekey list (missed rekeys) and registered again
// before the next periodic save is listed once in it, as it is now (on
// the list, no misses), and so stored; two deltas of the same member,
// removed then back, are stored as the newer.
func TestRemovalThenReregistrationInOneDelta(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "ks.db"))
	defer st.Close()
	now := t0
	srv := ks.New(ks.Options{})
	if err := srv.AddGroup(gcmGroup(t, isakmp.ESPAESCBC, isakmp.AuthAlgHMACSHA256), now); err != nil {
		t.Fatal(err)
	}
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	d := ks.NewDelivery(srv, w)
	if _, err := d.Restore(now); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		register(t, srv, w, i, now)
	}
	now = now.Add(2 * ks.SaveInterval)
	w.Queue(d.Tick(now).Save...)
	a := peer(2).Addr.Addr()
	for n := 0; n < 10; n++ {
		if m, _ := srv.Member("G", a); m.Removed {
			break
		}
		srv.Missed("G", a)
	}
	if m, _ := srv.Member("G", a); !m.Removed {
		t.Fatal("the member never left the rekey list")
	}
	// The writer has not run: one delta with it removed would merge here.
	gs, err := srv.DeltaState("G", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs.Members) != 1 || !gs.Members[0].Removed {
		t.Fatalf("delta after the removal: %v", gs.Members)
	}
	w.Queue(gs)
	register(t, srv, w, 2, now)
	now = now.Add(2 * ks.SaveInterval)
	res := d.Tick(now)
	if len(res.Save) != 1 || !res.Save[0].Delta || len(res.Save[0].Members) != 1 || res.Save[0].Members[0].Removed || res.Save[0].Members[0].MissedRekeys != 0 {
		t.Fatalf("the delta after removal and registration: %+v", res.Save)
	}
	w.Queue(res.Save...)
	if !w.Flush() {
		t.Fatal("flush failed")
	}
	_, got := stored(t, st)
	if m := got[a]; len(got) != 3 || m.Removed || m.MissedRekeys != 0 || m.Registrations != 2 {
		t.Fatalf("stored %d members, the member registered again: %+v", len(got), m)
	}

	// Within one delta: removed and registered again between two saves.
	for n := 0; n < 10; n++ {
		if m, _ := srv.Member("G", a); m.Removed {
			break
		}
		srv.Missed("G", a)
	}
	register(t, srv, w, 2, now)
	now = now.Add(2 * ks.SaveInterval)
	res = d.Tick(now)
	if len(res.Save) != 1 || len(res.Save[0].Members) != 1 || res.Save[0].Members[0].Removed || res.Save[0].Members[0].Registrations != 3 {
		t.Fatalf("one delta with removal and registration: %+v", res.Save)
	}
}

// proves: N1 (issue 18: a routine save costs the members changed) — the
// KS's periodic save of a group of 100,000 members of which 10 registered
// again since the last one (Delivery.Tick's state, the writer, the store
// on tmpfs) allocates a bounded amount, not a copy of every member: it
// copied and digested all 100,000 every second of a registration storm
// (~9% of the KS's CPU at 100,000, plus the page faults of the copies).
func TestRoutineSaveCostsTheMembersChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 members: make test runs it (no -short)")
	}
	const members, changed = 100000, 10
	dir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "groupvpn-test"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dir = d
		}
	}
	st := openStore(t, filepath.Join(dir, "ks.db"))
	defer st.Close()
	now := t0
	srv := ks.New(ks.Options{})
	if err := srv.AddGroup(gcmGroup(t, isakmp.ESPAESCBC, isakmp.AuthAlgHMACSHA256), now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < members; i++ {
		if _, _, err := srv.Keys(peer(i), isakmp.GroupID(7), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	w := kswriter.New(st, slog.New(slog.DiscardHandler))
	d := ks.NewDelivery(srv, w)
	if _, err := d.Restore(now); err != nil { // the whole group written
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		now = now.Add(2 * ks.SaveInterval)
		for i := 0; i < changed; i++ {
			if _, _, err := srv.Keys(peer(i*9973+round), isakmp.GroupID(7), 1, now); err != nil {
				t.Fatal(err)
			}
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res := d.Tick(now)
		w.Queue(res.Save...)
		ok := w.Flush()
		runtime.ReadMemStats(&after)
		if !ok {
			t.Fatal("flush failed")
		}
		if len(res.Save) != 1 || len(res.Save[0].Members) != changed {
			t.Fatalf("the periodic save holds %d members, want the %d changed", len(res.Save[0].Members), changed)
		}
		bytes := after.TotalAlloc - before.TotalAlloc
		t.Logf("round %d: a periodic save of %d changed of %d members allocated %d bytes (%d mallocs)", round, changed, members, bytes, after.Mallocs-before.Mallocs)
		if bytes > 512<<10 {
			t.Fatalf("a periodic save of %d changed members of %d allocated %d bytes: it grows with the group", changed, members, bytes)
		}
	}
	_, got := stored(t, st)
	if len(got) != members {
		t.Fatalf("%d members stored, want %d", len(got), members)
	}
}
