package node

import (
	"log/slog"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// Store keeps the key server's state across restarts (SPEC O4):
// *store.Store, or a test's.
//
// Its SaveGroup and SaveKeys must not lower a group's stored Seq: a state
// with a lower Seq than the stored one writes its members at most, never
// its keys (the saver's SaveKeys relies on it; *store.Store keeps it).
type Store interface {
	ks.Store
	// IntegrityFailures counts the records refused as damaged.
	IntegrityFailures() uint64
}

// saver writes the key server's state. The periodic saves (bookkeeping:
// members registered, ACKs) are queued, newest per group, and written by
// its goroutine while Run runs; the writes crash safety needs before a
// rekey is sent (ReserveSeq, SaveGroup, SaveKeys: ks.Store) are made at
// once. SaveGroup (members change: a removal) is ordered after any
// periodic save already taken and instead of a queued one of the same
// group, so no older member list lands after a newer one. SaveKeys waits
// for neither: it writes no members, and the store never lets a state
// with a lower Seq replace the keys it wrote (Store's contract), so the
// stored sequence number and keys are never older than what was sent.
type saver struct {
	st  Store
	log *slog.Logger
	wmu sync.Mutex // held while writing: one transaction at a time, in order

	mu      sync.Mutex
	pending map[string]*ks.GroupState // the newest unwritten state of each group
	wake    chan struct{}             // capacity 1: something is pending
}

var _ ks.Store = (*saver)(nil)

func newSaver(st Store, log *slog.Logger) *saver {
	return &saver{st: st, log: log, pending: map[string]*ks.GroupState{}, wake: make(chan struct{}, 1)}
}

func (s *saver) queue(states []*ks.GroupState) {
	s.mu.Lock()
	for _, gs := range states {
		s.pending[gs.Name] = gs
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes what is queued until stop is closed, then what is left.
func (s *saver) run(stop <-chan struct{}) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-s.wake:
		case <-retry.C:
		case <-stop:
			s.flush()
			return
		}
		if !s.flush() {
			// A failed write is tried again, unless a newer state of
			// the group replaced it in the meantime.
			retry.Reset(ks.SaveInterval)
		}
	}
}

// flush writes every queued state; false if one failed (it is queued
// again unless a newer one came).
func (s *saver) flush() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string]*ks.GroupState{}
	s.mu.Unlock()
	ok := true
	for name, gs := range batch {
		if err := s.st.SaveGroup(gs); err != nil {
			s.log.Error("saving key server state failed", "group", name, "err", err)
			ok = false
			s.mu.Lock()
			if s.pending[name] == nil {
				s.pending[name] = gs
			}
			s.mu.Unlock()
		}
	}
	return ok
}

// LoadGroups implements ks.Store.
func (s *saver) LoadGroups() ([]*ks.GroupState, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.st.LoadGroups()
}

// SaveGroup implements ks.Store: written before it returns, and instead
// of the group's queued state (older than this one).
func (s *saver) SaveGroup(gs *ks.GroupState) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	delete(s.pending, gs.Name)
	s.mu.Unlock()
	return s.st.SaveGroup(gs)
}

// SaveKeys implements ks.Store: written before it returns, without
// waiting for the writer. The group's queued periodic save (its members)
// stays queued, and one the writer is writing now may commit after this:
// the store keeps the newer keys either way (a state with a lower Seq
// writes only its members: store.SaveGroup), so SaveKeys costs its own
// transaction, not a rewrite of 10,000 members (BenchmarkSaveKeysWhile
// MembersAreSaved). It waits only for a transaction bbolt is committing.
func (s *saver) SaveKeys(gs *ks.GroupState) error {
	return s.st.SaveKeys(gs)
}

// ReserveSeq implements ks.Store: durable before it returns.
func (s *saver) ReserveSeq(group string, k uint32) (uint32, uint32, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.st.ReserveSeq(group, k)
}
