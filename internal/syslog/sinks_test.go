package syslog

import (
	"log/slog"
	"strings"
	"testing"
)

// proves: O3 (issue 14 item 1: logging buffered keeps at most SIZE bytes,
// oldest out first; a configuration whose destination cannot be opened
// changes nothing)
func TestSinksBufferAndPrepare(t *testing.T) {
	s := NewSinks(Options{App: "isakmpd"})
	l := slog.New(s)
	l.Info("dropped: no buffer yet")
	ch, err := s.Prepare(SinkConfig{Buffered: 4096, BufLevel: 7, Trap: 6})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		Log(l, Notice, "N", "message %03d %s", i, strings.Repeat("x", 100))
	}
	lines, size := s.Buffered()
	total := 0
	for _, x := range lines {
		total += len(x)
	}
	if size != 4096 || total > 4096 || len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "%GDOI-5-N: message 099 ") ||
		strings.Contains(strings.Join(lines, "\n"), "dropped") {
		t.Fatalf("buffer of %d bytes holds %d bytes in %d lines, last %q", size, total, len(lines), lines[len(lines)-1])
	}
	if _, err := s.Prepare(SinkConfig{Dests: []string{"udp://127.0.0.1:9", "ftp://x"}, Buffered: 4096, BufLevel: 7, Trap: 6}); err == nil {
		t.Fatal("a bad destination was prepared")
	}
	if _, err := s.Prepare(SinkConfig{Buffered: MaxBuffer + 1, BufLevel: 7, Trap: 6}); err == nil {
		t.Fatal("an oversized buffer was prepared")
	}
	if len(s.Hosts()) != 0 {
		t.Fatalf("a refused change changed the hosts: %v", s.Hosts())
	}
	// logging buffered 4096 warnings: a notice is not kept, a warning is.
	ch, _ = s.Prepare(SinkConfig{Buffered: 4096, BufLevel: 4, Trap: 6})
	ch.Commit()
	Log(l, Notice, "N", "kept? no")
	Log(l, Warning, "W", "kept")
	if lines, _ := s.Buffered(); !strings.HasSuffix(lines[len(lines)-1], "%GDOI-4-W: kept") || strings.Contains(strings.Join(lines, "\n"), "kept? no") {
		t.Fatalf("buffer at level warnings: %q", lines[len(lines)-1])
	}
	ch, _ = s.Prepare(SinkConfig{BufLevel: 7, Trap: 6})
	ch.Commit()
	if lines, size := s.Buffered(); size != 0 || len(lines) != 0 {
		t.Fatalf("no logging buffered keeps %d lines", len(lines))
	}
}

// proves: issue 18 — sinks without a destination or a buffer are not
// enabled (a Fanout skips them for every line), with either they are,
// and a copy by WithAttrs follows the sinks' configuration.
func TestSinksEnabledOnlyWhenConfigured(t *testing.T) {
	s := NewSinks(Options{App: "isakmpd"})
	child := s.WithAttrs([]slog.Attr{slog.String("k", "v")})
	ctx := t.Context()
	enabled := func() bool { return s.Enabled(ctx, slog.LevelError) || child.Enabled(ctx, slog.LevelError) }
	if enabled() {
		t.Fatal("sinks without destinations or buffer are enabled")
	}
	for _, sc := range []SinkConfig{{Buffered: 4096, BufLevel: 7, Trap: 6}, {Dests: []string{"udp://127.0.0.1:9"}, Trap: 6}} {
		ch, err := s.Prepare(sc)
		if err != nil {
			t.Fatal(err)
		}
		ch.Commit()
		if !s.Enabled(ctx, slog.LevelError) || !child.Enabled(ctx, slog.LevelError) || s.Enabled(ctx, slog.LevelDebug) {
			t.Fatalf("sinks %+v: enabled %v, child %v, at debug %v", sc, s.Enabled(ctx, slog.LevelError), child.Enabled(ctx, slog.LevelError), s.Enabled(ctx, slog.LevelDebug))
		}
		ch, _ = s.Prepare(SinkConfig{BufLevel: 7, Trap: 6})
		ch.Commit()
		if enabled() {
			t.Fatal("sinks emptied again are enabled")
		}
	}
}
