package ctl

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// proves: O2 (issue 14 item 3: terminal monitor never makes the daemon
// wait: a session that does not read misses lines, which are counted and
// reported to it, and the log call returns at once)
func TestMonitorSlowSessionDropsAndCounts(t *testing.T) {
	s := NewServer(nil)
	var base bytes.Buffer
	log := slog.New(s.Monitor().Handler(slog.NewTextHandler(&base, nil)))
	sub, err := s.monitor.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 1000 {
		log.Info("%GDOI-5-TEST: line", "i", i)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 log lines took %v with a session not reading", d)
	}
	if got := len(sub.ch); got != monitorQueue {
		t.Errorf("queued %d, want %d", got, monitorQueue)
	}
	if got := s.Monitor().Dropped(); got < 1000-monitorQueue-monitorRate*2 || got > 1000-monitorQueue {
		t.Errorf("dropped %d", got)
	}
	if n := strings.Count(base.String(), "\n"); n != 1000 {
		t.Errorf("the daemon's own log got %d lines, want 1000", n)
	}
	line := <-sub.ch
	if !strings.Contains(line, ": %GDOI-5-TEST: line i=0") || strings.Contains(line, "\n") {
		t.Errorf("line %q", line)
	}
	s.monitor.unsubscribe(sub)
	for range MaxMonitors {
		if _, err := s.monitor.subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.monitor.subscribe(); err == nil {
		t.Errorf("more than %d monitors", MaxMonitors)
	}
}

// proves: O2 (issue 14 item 3: terminal monitor over the real socket: the
// stream delivers log lines and says how many a slow reader missed;
// terminal length 0, as scrapers send it, is accepted)
func TestMonitorStreamOverSocket(t *testing.T) {
	s := NewServer(nil)
	s.HandleTerminal()
	log := slog.New(s.Monitor().Handler(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	path := serve(t, s)
	if r := s.Exec(context.Background(), "term len 0"); !r.OK || r.Text != "" {
		t.Fatalf("terminal length 0: %+v", r)
	}
	out := make(chan string, 1000)
	stop, err := monitorStream(path, out)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := range 600 { // over the queue: some are dropped
		log.Warn("%SYS-4-TEST: burst", "i", i)
	}
	time.Sleep(50 * time.Millisecond)
	log.Warn("%SYS-4-TEST: after")
	var got []string
	deadline := time.After(5 * time.Second)
	for len(got) == 0 || !strings.Contains(got[len(got)-1], "after") {
		select {
		case l := <-out:
			got = append(got, l)
		case <-deadline:
			t.Fatalf("no 'after' line; got %d lines", len(got))
		}
	}
	all := strings.Join(got, "\n")
	if !strings.Contains(all, "%SYS-4-TEST: burst i=0") || !strings.Contains(all, "log lines dropped (terminal monitor too slow)") {
		t.Errorf("stream:\n%s", all)
	}
}

// proves: O2 (issue 14 item 3: terminal monitor shows the daemon's
// informational lines even when its own log discards them (the lab without
// -v), and nothing is formatted while no session monitors)
func TestMonitorWithDiscardedLog(t *testing.T) {
	s := NewServer(nil)
	log := slog.New(s.Monitor().Handler(slog.DiscardHandler))
	if log.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("enabled without a monitoring session")
	}
	sub, err := s.monitor.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("debug line")
	log.Info("%GDOI-5-X: info line")
	if got := len(sub.ch); got != 1 {
		t.Fatalf("%d lines queued, want 1 (info, not debug)", got)
	}
	if l := <-sub.ch; !strings.HasSuffix(l, ": %GDOI-5-X: info line") {
		t.Errorf("%q", l)
	}
}
