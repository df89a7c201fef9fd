package syslog

import (
	"io"
	"sync"
)

// TurnWriter is w written a turn at a time: between Begin and End (a
// daemon's loop handling what one wait returned) what is written is kept
// and written at End with one Write; outside a turn each Write goes
// through at once. A key server logs a line per registration (the seed's
// KS_REGS_COMPLETE), and a write(2) of each was 1.7% of its CPU in a
// registration storm (issue 18); a turn's lines are written together, as
// soon as the loop has handled them and before it waits again. Lines of
// other goroutines written during a turn wait for its end with the rest.
//
// What a turn kept is lost if the process dies inside it without End (a
// daemon's loop ends its turn in a deferred call, so a panic of the loop
// itself writes them); it is at most maxTurn octets: a longer turn is
// written in parts.
type TurnWriter struct {
	mu  sync.Mutex
	w   io.Writer
	in  bool
	buf []byte
	err error // a failed write of kept lines, returned by the next Write
}

// maxTurn bounds what a turn keeps before it writes: 64 KiB, about 500
// registrations' lines.
const maxTurn = 64 << 10

// NewTurnWriter returns a TurnWriter of w.
func NewTurnWriter(w io.Writer) *TurnWriter { return &TurnWriter{w: w} }

// Write writes p, or keeps it until the turn ends. Its error is, first,
// that of a turn's write that failed since the last Write.
func (t *TurnWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.write(p)
	if t.err != nil {
		err, t.err = t.err, nil
	}
	return n, err
}

func (t *TurnWriter) write(p []byte) (int, error) {
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
	return len(p), nil
}

// Begin starts a turn.
func (t *TurnWriter) Begin() {
	t.mu.Lock()
	t.in = true
	t.mu.Unlock()
}

// End writes what the turn kept and ends it.
func (t *TurnWriter) End() {
	t.mu.Lock()
	t.in = false
	t.flush()
	t.mu.Unlock()
}

// flush writes what is kept (t.mu held).
func (t *TurnWriter) flush() {
	if len(t.buf) == 0 {
		return
	}
	if _, err := t.w.Write(t.buf); err != nil && t.err == nil {
		t.err = err
	}
	t.buf = t.buf[:0]
}
