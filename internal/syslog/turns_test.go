package syslog

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// writes records each Write it is given.
type writes struct {
	mu   sync.Mutex
	each []string
	fail error
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		return 0, w.fail
	}
	w.each = append(w.each, string(p))
	return len(p), nil
}

func (w *writes) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.each...)
}

// proves: O3 (logs) and issue 18 — a daemon's log lines written during a
// turn of its loop (a batch of registrations, each logging
// KS_REGS_COMPLETE) reach its stderr in one write at the turn's end, in
// the order written, lines of another goroutine among them; outside a
// turn every line is written at once; a turn longer than maxTurn is
// written in parts, none over the bound; a failed write of a turn is
// returned by the next Write.
func TestTurnWriterWritesATurnAtOnce(t *testing.T) {
	var w writes
	tw := NewTurnWriter(&w)
	log := slog.New(NewTextHandler(tw, nil))

	log.Info("before any turn")
	if got := w.got(); len(got) != 1 || !strings.Contains(got[0], "before any turn") {
		t.Fatalf("outside a turn: %q, want the line written at once", got)
	}

	tw.Begin()
	for i := range 50 {
		log.Info("KS completed successful registration", "n", i)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); log.Warn("from another goroutine") }()
	wg.Wait()
	if got := w.got(); len(got) != 1 {
		t.Fatalf("%d writes during the turn, want none kept written", len(got)-1)
	}
	tw.End()
	got := w.got()
	if len(got) != 2 {
		t.Fatalf("%d writes for the turn, want 1", len(got)-1)
	}
	lines := strings.Split(strings.TrimSuffix(got[1], "\n"), "\n")
	if len(lines) != 51 {
		t.Fatalf("the turn's write has %d lines, want 51", len(lines))
	}
	for i := range 50 {
		if !strings.HasSuffix(lines[i], " n="+strconv.Itoa(i)) {
			t.Fatalf("line %d of the turn: %q", i, lines[i])
		}
	}
	if !strings.Contains(lines[50], "from another goroutine") {
		t.Fatalf("last line %q, want the other goroutine's", lines[50])
	}
	tw.End() // an empty turn writes nothing
	if n := len(w.got()); n != 2 {
		t.Fatalf("an empty turn wrote: %d writes", n)
	}

	// A turn longer than the bound.
	w.each = nil
	line := bytes.Repeat([]byte("x"), 1000)
	line[len(line)-1] = '\n'
	tw.Begin()
	for range 200 {
		tw.Write(line)
	}
	tw.End()
	total := 0
	for _, s := range w.got() {
		if len(s) > maxTurn {
			t.Fatalf("a write of %d octets, over the bound %d", len(s), maxTurn)
		}
		total += len(s)
	}
	if total != 200*len(line) || len(w.got()) < 200*len(line)/maxTurn {
		t.Fatalf("%d octets in %d writes, want %d in parts", total, len(w.got()), 200*len(line))
	}
	// One line over the bound goes through whole.
	w.each = nil
	big := bytes.Repeat([]byte("y"), maxTurn+10)
	tw.Begin()
	tw.Write([]byte("first\n"))
	tw.Write(big)
	tw.End()
	if got := w.got(); len(got) != 2 || got[0] != "first\n" || len(got[1]) != len(big) {
		t.Fatalf("a line over the bound: writes of %d octets", lens(got))
	}

	// A failed write of a turn is returned by the next Write.
	w.fail = errors.New("disk full")
	tw.Begin()
	if _, err := tw.Write([]byte("kept\n")); err != nil {
		t.Fatalf("a kept line: %v", err)
	}
	tw.End()
	w.fail = nil
	if _, err := tw.Write([]byte("next\n")); err == nil || err.Error() != "disk full" {
		t.Fatalf("the write after a failed turn: %v, want the turn's error", err)
	}
	if got := w.got(); got[len(got)-1] != "next\n" {
		t.Fatalf("the line written after a failed turn was lost: %q", got)
	}
	if _, err := tw.Write([]byte("then\n")); err != nil {
		t.Fatalf("the write after that: %v", err)
	}
}

func lens(s []string) []int {
	var n []int
	for _, x := range s {
		n = append(n, len(x))
	}
	return n
}
