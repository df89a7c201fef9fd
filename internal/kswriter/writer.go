// Package kswriter writes a key server's state (ks.Store) off its event
// loop (SPEC O4): isakmpd's node and ikev2d share it. The periodic saves
// (bookkeeping: members registered, ACKs) are queued, one per group,
// and written by the goroutine running Run: a newer whole state replaces
// the queued one, a newer delta (ks.Server.DeltaState: the members
// changed since the previous one) is merged into it, so that no member a
// delta listed is lost while its state waits, or after a write of it
// failed; the writes crash safety needs
// before something is sent are made at once by the caller, one
// transaction at a time with the writer's.
//
// It does I/O through the store and owns a goroutine, so it stays out of
// internal/ks (internal/archtest).
package kswriter

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// Writer writes a ks.Store's queued states from its goroutine (Run) and
// the synchronous writes in order with them. SaveGroup (members change:
// a removal) is ordered after any periodic save already taken and
// instead of a queued one of the same group, so no older member list
// lands after a newer one.
//
// As a ks.Store, its SaveKeys waits for neither: it writes no members, so
// it needs a store that never lets a state with a lower Seq replace the
// keys it wrote (*store.Store keeps it); SaveKeysOrdered is the write of
// keys for a store that does not promise it. (A state of the same Seq
// with other keys is ordered by the writer itself: SaveKeys.)
type Writer struct {
	st  ks.Store
	log *slog.Logger
	wmu sync.Mutex // held while writing: one transaction at a time, in order

	mu      sync.Mutex
	pending map[string]*ks.GroupState // the newest unwritten state of each group
	writing map[string]*ks.GroupState // what Flush is writing now, by group
	wake    chan struct{}             // capacity 1: something is pending
}

var _ ks.Store = (*Writer)(nil)

// New returns a Writer of st, logging failed periodic saves to log.
func New(st ks.Store, log *slog.Logger) *Writer {
	return &Writer{st: st, log: log, pending: map[string]*ks.GroupState{}, wake: make(chan struct{}, 1)}
}

// Queue hands states to the writer, each replacing its group's older
// queued state, or merged into it when a delta (merge).
func (w *Writer) Queue(states ...*ks.GroupState) {
	w.mu.Lock()
	for _, gs := range states {
		w.pending[gs.Name] = merge(w.pending[gs.Name], gs)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run writes what is queued until stop is closed, then what is left.
func (w *Writer) Run(stop <-chan struct{}) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-w.wake:
		case <-retry.C:
		case <-stop:
			w.Flush()
			return
		}
		if !w.Flush() {
			// A failed write is tried again, unless a newer state of
			// the group replaced it in the meantime.
			retry.Reset(ks.SaveInterval)
		}
	}
}

// Flush writes every queued state; false if one failed (it is queued
// again, under a newer one queued meanwhile: merge).
func (w *Writer) Flush() bool {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	batch := w.pending
	w.pending = map[string]*ks.GroupState{}
	w.writing = batch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.writing = nil
		w.mu.Unlock()
	}()
	ok := true
	for name, gs := range batch {
		if err := w.st.SaveGroup(gs); err != nil {
			w.log.Error("saving key server state failed", "group", name, "err", err.Error())
			ok = false
			w.requeue(gs)
		}
	}
	return ok
}

// LoadGroups implements ks.Store.
func (w *Writer) LoadGroups() ([]*ks.GroupState, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.st.LoadGroups()
}

// merge is newer written over older, two states of one group taken in
// that order (either may be nil): a whole newer replaces older; a delta
// newer brings its keys and the members it lists over older's members,
// which it keeps otherwise (whole when older is). Neither is modified.
func merge(older, newer *ks.GroupState) *ks.GroupState {
	switch {
	case newer == nil:
		return older
	case older == nil || !newer.Delta:
		return newer
	}
	c := *newer
	over := make(map[netip.Addr]bool, len(newer.Members)+len(newer.MembersGone)) // listed by newer
	for i := range newer.Members {
		over[newer.Members[i].Address] = true
	}
	for _, a := range newer.MembersGone {
		over[a] = true
	}
	ms := make([]ks.MemberState, 0, len(older.Members)+len(newer.Members))
	for i := range older.Members {
		if !over[older.Members[i].Address] {
			ms = append(ms, older.Members[i])
		}
	}
	c.Members = append(ms, newer.Members...)
	if !older.Delta {
		c.Delta, c.MembersGone = false, nil // gone from a whole list
		return &c
	}
	gone := slices.Clip(newer.MembersGone)
	for _, a := range older.MembersGone {
		if !over[a] {
			gone = append(gone, a)
		}
	}
	c.MembersGone = gone
	return &c
}

// requeue queues gs again after its write failed, under what was queued
// since (w.mu not held).
func (w *Writer) requeue(gs *ks.GroupState) {
	w.mu.Lock()
	w.pending[gs.Name] = merge(gs, w.pending[gs.Name])
	w.mu.Unlock()
}

// SaveGroup implements ks.Store: written before it returns, and instead
// of the group's queued state (older than this one), merged with it when
// gs is a delta. When it fails, the queued state stays queued (gs is the
// caller's: it got the error).
func (w *Writer) SaveGroup(gs *ks.GroupState) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	q := w.pending[gs.Name]
	delete(w.pending, gs.Name)
	w.mu.Unlock()
	err := w.st.SaveGroup(merge(q, gs))
	if err != nil && q != nil {
		w.requeue(q)
	}
	return err
}

// SaveKeys implements ks.Store: written before it returns, without
// waiting for the writer. The group's queued periodic save (its members)
// stays queued, and one the writer is writing now may commit after this:
// a store that keeps the newer keys either way (a state with a lower Seq
// writes only its members: store.SaveGroup) makes that safe, and SaveKeys
// then costs its own transaction, not a rewrite of 10,000 members
// (node's BenchmarkSaveKeysWhileMembersAreSaved). It waits only for a
// transaction the store is committing.
//
// A state of the same Seq with other keys (keys a registration replaced
// near their end, without a rekey: their first sender IDs are written
// with SaveKeys) is older all the same, but a store cannot tell: the
// queued one takes gs's keys, and SaveKeys waits for the writer when it
// is writing one now, so that it never lands after gs. A state of the
// same keys needs neither (the store keeps the higher sender-ID mark of
// a key).
func (w *Writer) SaveKeys(gs *ks.GroupState) error {
	w.mu.Lock()
	x := w.writing[gs.Name]
	busy := x != nil && olderKeys(x, gs)
	if !busy {
		w.takeKeys(gs)
	}
	w.mu.Unlock()
	if busy {
		w.wmu.Lock()
		defer w.wmu.Unlock()
		w.mu.Lock()
		w.takeKeys(gs) // a failed write the writer queued again
		w.mu.Unlock()
	}
	return w.st.SaveKeys(gs)
}

// olderKeys reports whether q, a state taken before gs, has the same Seq
// but other keys: written after gs, a store would keep its keys (with a
// lower Seq it keeps gs's).
func olderKeys(q, gs *ks.GroupState) bool {
	if q.Seq != gs.Seq {
		return false
	}
	if q.KEK.SPI != gs.KEK.SPI || len(q.TEKs) != len(gs.TEKs) {
		return true
	}
	for i := range q.TEKs {
		if q.TEKs[i].SPI != gs.TEKs[i].SPI {
			return true
		}
	}
	return false
}

// takeKeys makes the group's queued state carry gs's keys when it holds
// older ones of the same Seq (olderKeys); w.mu held.
func (w *Writer) takeKeys(gs *ks.GroupState) {
	q := w.pending[gs.Name]
	if q == nil || !olderKeys(q, gs) {
		return
	}
	c := *q
	c.SigningKey, c.KEK, c.TEKs = gs.SigningKey, gs.KEK, gs.TEKs
	w.pending[gs.Name] = &c
}

// SaveKeysOrdered writes gs but its members before it returns, in order
// with the writer, for a store that may let an older state's keys
// replace newer ones. A queued state of the group (older keys: a
// Sender-ID counter behind gs's) is not written after it: gs, members
// included, is written instead, with the queued state's members when gs
// carries none (keys built without the members: the caller need not keep
// a copy of what it queued; a queued delta stays one). When that write
// fails, the queued state stays queued.
func (w *Writer) SaveKeysOrdered(gs *ks.GroupState) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	q, queued := w.pending[gs.Name]
	delete(w.pending, gs.Name)
	w.mu.Unlock()
	if !queued || q == nil {
		return w.st.SaveKeys(gs)
	}
	x := merge(q, gs)
	if gs.Members == nil && !gs.Delta {
		c := *gs
		c.Members, c.Delta, c.MembersGone = q.Members, q.Delta, q.MembersGone
		x = &c
	}
	err := w.st.SaveGroup(x)
	if err != nil {
		w.requeue(q)
	}
	return err
}

// ReserveSeq implements ks.Store: durable before it returns.
func (w *Writer) ReserveSeq(group string, k uint32) (uint32, uint32, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.st.ReserveSeq(group, k)
}
