package ikev2d

import (
	"log/slog"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// saver writes the key server's state off the loop (SPEC O4, issue 17
// finding 5), as isakmpd's node/persist.go does (whose saver is not
// exported: this is its small counterpart). Registrations only change
// bookkeeping (members): the loop marks the group dirty and, at most once
// per ks.SaveInterval, queues one copy of the group's state, newest per
// group, which the writer goroutine saves with SaveGroup. The writes crash
// safety needs before something is sent (SaveKeys before a registration's
// Sender-IDs or a rekey leave, SaveGroup at a removal) are made at once by
// the loop, one transaction at a time with the writer's (wmu), and a
// SaveGroup replaces the group's queued (older) state.
type saver struct {
	st  ks.Store
	log *slog.Logger
	wmu sync.Mutex // held while writing

	mu      sync.Mutex
	pending map[string]*ks.GroupState
	wake    chan struct{} // capacity 1
}

func newSaver(st ks.Store, log *slog.Logger) *saver {
	return &saver{st: st, log: log, pending: map[string]*ks.GroupState{}, wake: make(chan struct{}, 1)}
}

// queue hands gs to the writer, replacing the group's older queued state.
func (s *saver) queue(gs *ks.GroupState) {
	s.mu.Lock()
	s.pending[gs.Name] = gs
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
			retry.Reset(ks.SaveInterval)
		}
	}
}

// flush writes every queued state; a failed one is queued again unless a
// newer one came meanwhile.
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
			s.log.Error("saving key server state failed", "group", name, "err", err.Error())
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

// saveGroup writes gs (members included) before it returns, instead of
// the group's queued state.
func (s *saver) saveGroup(gs *ks.GroupState) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	delete(s.pending, gs.Name)
	s.mu.Unlock()
	return s.st.SaveGroup(gs)
}

// saveKeys writes gs but its members before it returns. A queued state
// of the group (older keys: a Sender-ID counter behind gs's) is not
// written after it: gs, members included, is written instead.
func (s *saver) saveKeys(gs *ks.GroupState) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	_, queued := s.pending[gs.Name]
	delete(s.pending, gs.Name)
	s.mu.Unlock()
	if queued {
		return s.st.SaveGroup(gs)
	}
	return s.st.SaveKeys(gs)
}
