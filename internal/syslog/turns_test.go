package syslog

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: O3 (logs) and issue 18 — a daemon's log lines written during a
// turn of its loop (a batch of registrations, each logging
// KS_REGS_COMPLETE) reach its stderr in one write at the turn's end, in
// the order written, lines of another goroutine among them; outside a
// turn every line is written at once; a turn longer than maxTurn is
// written in parts, none over the bound.
func TestTurnWriterWritesATurnAtOnce(t *testing.T) {
	var w testnet.Writes
	tw := NewTurnWriter(&w, time.Hour) // only a turn's end writes what it kept
	log := slog.New(NewTextHandler(tw, nil))

	log.Info("before any turn")
	if got := w.Each(); len(got) != 1 || !strings.Contains(got[0], "before any turn") {
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
	if got := w.Each(); len(got) != 1 {
		t.Fatalf("%d writes during the turn, want none kept written", len(got)-1)
	}
	tw.End()
	got := w.Each()
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
	if n := len(w.Each()); n != 2 {
		t.Fatalf("an empty turn wrote: %d writes", n)
	}

	// A turn longer than the bound.
	w.Reset()
	line := bytes.Repeat([]byte("x"), 1000)
	line[len(line)-1] = '\n'
	tw.Begin()
	for range 200 {
		tw.Write(line)
	}
	tw.End()
	total := 0
	for _, s := range w.Each() {
		if len(s) > maxTurn {
			t.Fatalf("a write of %d octets, over the bound %d", len(s), maxTurn)
		}
		total += len(s)
	}
	if total != 200*len(line) || len(w.Each()) < 200*len(line)/maxTurn+1 {
		t.Fatalf("%d octets in %d writes, want %d in parts", total, len(w.Each()), 200*len(line))
	}
	// One line over the bound goes through whole.
	w.Reset()
	big := bytes.Repeat([]byte("y"), maxTurn+10)
	tw.Begin()
	tw.Write([]byte("first\n"))
	tw.Write(big)
	tw.End()
	if got := w.Each(); len(got) != 2 || got[0] != "first\n" || len(got[1]) != len(big) {
		t.Fatalf("a line over the bound: writes of %d octets", lens(got))
	}

}

func lens(s []string) []int {
	var n []int
	for _, x := range s {
		n = append(n, len(x))
	}
	return n
}

// proves: O3 (logs) — a turn that lasts (the loop blocked inside it)
// keeps no line longer than the writer's hold: its line is written when
// the hold fires, the turn's next line is kept again and written by the
// hold again, and its end writes the rest.
func TestTurnWriterHoldsNoLineLonger(t *testing.T) {
	const hold = 200 * time.Millisecond
	var w testnet.Writes
	tw := NewTurnWriter(&w, hold)
	tw.Begin()
	t0 := time.Now()
	tw.Write([]byte("held\n"))
	for len(w.Each()) == 0 && time.Since(t0) < 5*time.Second {
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(t0); len(w.Each()) != 1 || d < hold || d > 4*time.Second {
		t.Fatalf("a line kept in a long turn: %d writes after %s, want 1 after %s", len(w.Each()), d, hold)
	}
	t1 := time.Now()
	tw.Write([]byte("later\n"))
	time.Sleep(hold / 10)
	if n := len(w.Each()); n != 1 && time.Since(t1) < hold {
		t.Fatalf("the turn's next line was written at once (%d writes)", n)
	}
	for len(w.Each()) == 1 && time.Since(t1) < 5*time.Second {
		time.Sleep(time.Millisecond)
	}
	if got := w.Each(); len(got) != 2 || got[1] != "later\n" || time.Since(t1) < hold {
		t.Fatalf("the turn's next line, after %s: %q, want it written by the hold again", time.Since(t1), got)
	}
	tw.Write([]byte("last\n"))
	tw.End()
	if got := w.Each(); len(got) != 3 || got[2] != "last\n" {
		t.Fatalf("the turn's end: %q", got)
	}
	time.Sleep(2 * hold) // the hold fires on nothing
	if n := len(w.Each()); n != 3 {
		t.Fatalf("%d writes after the turn's end, want 3", n)
	}
}

// proves: O3 (logs) — under turns and a hold that fires all the time,
// with other goroutines writing meanwhile, every line is written exactly
// once, each goroutine's in its order, none after the last End returned.
func TestTurnWriterLosesAndRepeatsNothing(t *testing.T) {
	var w testnet.Writes
	tw := NewTurnWriter(&w, time.Microsecond)
	const goroutines, lines = 4, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				tw.Write([]byte("g" + strconv.Itoa(g) + " " + strconv.Itoa(i) + "\n"))
			}
		}()
	}
	for i := range lines {
		tw.Begin()
		tw.Write([]byte("loop " + strconv.Itoa(i) + "\n"))
		tw.End()
	}
	wg.Wait()
	tw.Begin()
	tw.End()
	n := len(w.Each())
	next := map[string]int{}
	for _, s := range w.Each() {
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			who, num, _ := strings.Cut(l, " ")
			i, err := strconv.Atoi(num)
			if err != nil || i != next[who] {
				t.Fatalf("line %q: want %s %d next", l, who, next[who])
			}
			next[who]++
		}
	}
	for _, who := range []string{"loop", "g0", "g1", "g2", "g3"} {
		if next[who] != lines {
			t.Fatalf("%s: %d lines written, want %d", who, next[who], lines)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if len(w.Each()) != n {
		t.Fatal("a write after the last turn's end")
	}
}
