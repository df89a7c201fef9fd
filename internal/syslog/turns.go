package syslog

import (
	"io"
	"sync"
	"time"
)

// TurnWriter is w written a turn at a time: between Begin and End (a
// daemon's loop handling what one wait returned) what is written is kept
// and written at End with one Write; outside a turn each Write goes
// through at once. A key server logs a line per registration (the seed's
// KS_REGS_COMPLETE), and a write(2) of each was 1.7% of its CPU in a
// registration storm (issue 18); a turn's lines are written together, as
// soon as the loop has handled them and before it waits again.
//
// Lines of other goroutines written during a turn wait with the rest. A
// turn is one batch of datagrams (milliseconds), but the loop may block
// inside one (a store or tmd request of a few seconds, a wedged loop), so
// nothing is kept longer than the writer's hold (DefaultHold for
// isakmpd): a timer, armed by a line kept while it is not, writes what is
// kept when it fires. It is armed at most once per hold, not per turn (a
// timer's Reset can wake the runtime's poller). A turn keeps at most
// maxTurn octets. What a turn kept is lost if the process dies inside it
// without End and before the hold: SIGKILL, a fatal runtime error, a
// panic of another goroutine (a daemon's loop ends its turn in a
// deferred call, so a panic of the loop itself writes them).
type TurnWriter struct {
	mu      sync.Mutex
	w       io.Writer
	in      bool
	buf     []byte
	hold    *time.Timer // writes what is kept when it fires
	armed   bool        // hold is due within holdFor; set whenever buf is not empty
	holdFor time.Duration
}

const (
	// maxTurn bounds what a turn keeps before it writes: 64 KiB, about
	// 350 KS_REGS_COMPLETE lines.
	maxTurn = 64 << 10
	// DefaultHold is how long isakmpd's TurnWriter keeps a line at most.
	DefaultHold = 50 * time.Millisecond
)

// NewTurnWriter returns a TurnWriter of w that keeps a line at most hold.
func NewTurnWriter(w io.Writer, hold time.Duration) *TurnWriter {
	t := &TurnWriter{w: w, holdFor: hold}
	t.hold = time.AfterFunc(time.Hour, t.held)
	t.hold.Stop()
	return t
}

// Write writes p, or keeps it until the turn ends or the hold fires.
// A failed write of kept lines is not reported (the log has nowhere else
// to say so; slog drops a handler's errors).
func (t *TurnWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.in {
		return t.w.Write(p)
	}
	if len(t.buf)+len(p) > maxTurn {
		t.flush()
		if len(p) > maxTurn {
			return t.w.Write(p)
		}
	}
	t.buf = append(t.buf, p...)
	if !t.armed {
		t.armed = true
		t.hold.Reset(t.holdFor)
	}
	return len(p), nil
}

// Begin starts a turn.
func (t *TurnWriter) Begin() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in = true
}

// End writes what the turn kept and ends it. The hold, if armed, is left
// to fire on nothing (or on the next turn's lines, early).
func (t *TurnWriter) End() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in = false
	t.flush()
}

// held is the hold's: what is kept is written, and the next kept line
// arms it again.
func (t *TurnWriter) held() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.armed = false
	t.flush()
}

// flush writes what is kept (t.mu held).
func (t *TurnWriter) flush() {
	if len(t.buf) == 0 {
		return
	}
	t.w.Write(t.buf)
	t.buf = t.buf[:0]
}
