package ratelog

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newLogger(o Options) (*slog.Logger, *bytes.Buffer, *Handler) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), o)
	return slog.New(h), &buf, h
}

// A value of 100 KB is cut to the bound and marked with what was dropped.
// proves: S6 (issue 11 item 7)
func TestTruncatesValues(t *testing.T) {
	log, buf, _ := newLogger(Options{MaxLen: 64})
	big := strings.Repeat("x", 100_000)
	log.Warn(big, "s", big, "err", errors.New(big), "n", 7, slog.Group("g", "inner", big))
	out := buf.String()
	if len(out) > 1000 {
		t.Fatalf("line of %d bytes: %.300s", len(out), out)
	}
	if c := strings.Count(out, "…(+99936 bytes)"); c != 4 {
		t.Errorf("%d truncation marks, want 4 (msg, s, err, g.inner): %s", c, out)
	}
	if !strings.Contains(out, "n=7") {
		t.Errorf("small values must pass unchanged: %s", out)
	}
}

// A record with thousands of attributes keeps MaxAttrs and counts the rest.
func TestBoundsAttributeCount(t *testing.T) {
	log, buf, _ := newLogger(Options{MaxAttrs: 3})
	var args []any
	for i := range 1000 {
		args = append(args, "k", i)
	}
	log.Info("many", args...)
	if out := buf.String(); !strings.Contains(out, "attrs_dropped=997") || strings.Count(out, "k=") != 3 {
		t.Fatalf("%s", out)
	}
}

// Records with one message text are let through at the bucket's rate; the
// first one let through after a suppression says how many were suppressed.
// proves: S6 (issue 11 item 7)
func TestRateLimitsPerMessage(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	log, buf, h := newLogger(Options{Rate: 1, Burst: 2, Now: func() time.Time { return now }})
	for range 100 {
		log.Warn("hostile")
	}
	log.Warn("other") // its own bucket
	if got := strings.Count(buf.String(), "msg=hostile"); got != 2 {
		t.Fatalf("%d hostile records in the burst, want 2", got)
	}
	if h.Suppressed() != 98 {
		t.Fatalf("Suppressed() = %d, want 98", h.Suppressed())
	}
	buf.Reset()
	now = t0.Add(1500 * time.Millisecond) // 1.5 tokens refilled
	log.Warn("hostile")
	log.Warn("hostile")
	out := buf.String()
	if strings.Count(out, "msg=hostile") != 1 || !strings.Contains(out, "suppressed=98") {
		t.Fatalf("after a refill: %s", out)
	}
	buf.Reset()
	now = now.Add(time.Second)
	log.Warn("hostile")
	if out := buf.String(); !strings.Contains(out, "suppressed=1") {
		t.Fatalf("%s", out)
	}
}

// Without an injected clock the record's own Time drives the buckets, and
// derived loggers share their parent's budget.
func TestRecordTimeAndSharedBudget(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), Options{Rate: 1, Burst: 1})
	a := slog.New(h).With("peer", "a")
	b := slog.New(h).WithGroup("x").With("peer", "b")
	a.Info("m")
	b.Info("m")
	if strings.Count(buf.String(), "msg=m") != 1 || h.Suppressed() != 1 {
		t.Fatalf("%s", buf.String())
	}
}

// Message texts beyond MaxKeys share one bucket: a sender choosing the
// message text cannot grow the handler's memory.
func TestBoundsTrackedMessages(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log, buf, h := newLogger(Options{MaxKeys: 4, Burst: 1, Now: func() time.Time { return t0 }})
	for i := range 10_000 {
		log.Info(strings.Repeat("m", i%500+1))
	}
	if n := len(h.lim.buckets); n > 5 {
		t.Fatalf("%d buckets", n)
	}
	if lines := strings.Count(buf.String(), "\n"); lines > 5 {
		t.Fatalf("%d lines", lines)
	}
}

// A nil pointer whose Error method panics does not panic the handler.
type nilErr struct{ s *string }

func (e *nilErr) Error() string { return *e.s }

func TestPanickingValue(t *testing.T) {
	log, _, _ := newLogger(Options{})
	var e *nilErr
	log.Info("x", "err", error(e))
}

// A keyed handler spends its key's bucket whatever the message says: a
// sender varying the text (a group number of its choice) buys no fresh
// budget, through WithAttrs and WithGroup too, and another key's budget
// is its own; the count and the report of what was suppressed are shared
// with the handler it came from.
// proves: S6 (issue 18 review: refused registrations keyed by peer)
func TestKeyedBucketIgnoresText(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, buf, h := newLogger(Options{Rate: 1, Burst: 2, Now: func() time.Time { return now }})
	a := slog.New(h.Keyed("10.0.0.1"))
	b := slog.New(h.Keyed("10.0.0.2").WithAttrs([]slog.Attr{slog.String("peer", "b")}).WithGroup("g"))
	for i := range 100 {
		a.Warn("refused group " + strings.Repeat("9", i%7+1))
	}
	for i := range 5 {
		b.Warn("refused group "+strings.Repeat("1", i+1), "n", i)
	}
	if got, bs := strings.Count(buf.String(), "refused group"), strings.Count(buf.String(), "peer=b"); got != 4 || bs != 2 {
		t.Fatalf("%d lines, %d of b's, want 2 of a's 100 and 2 of b's 5:\n%s", got, bs, buf.String())
	}
	if h.Suppressed() != 101 {
		t.Fatalf("suppressed %d, want 101", h.Suppressed())
	}
	now = now.Add(time.Second)
	a.Warn("refused group 5")
	if !strings.Contains(buf.String(), "refused group 5\" suppressed=98") {
		t.Fatalf("a's next line does not say what was suppressed:\n%s", buf.String())
	}
}

// Keys whose senders were once limited and then went quiet are forgotten
// once their buckets are full again, owed counts or not: with a key per
// sender they would otherwise fill MaxKeys for good, and every new sender
// would share the overflow bucket with a flooding one.
// proves: S6 (issue 18 review: per-sender keys and MaxKeys)
func TestQuietLimitedKeysForgotten(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, buf, h := newLogger(Options{Rate: 1, Burst: 2, MaxKeys: 4, Now: func() time.Time { return now }})
	for k := range 4 {
		l := slog.New(h.Keyed(strconv.Itoa(k)))
		for range 5 {
			l.Warn("limited")
		}
	}
	now = now.Add(10 * time.Second)
	flood := slog.New(h.Keyed("flooder"))
	for range 50 {
		flood.Warn("flood")
	}
	slog.New(h.Keyed("newcomer")).Warn("newcomer's line")
	if !strings.Contains(buf.String(), "newcomer's line") {
		t.Fatalf("a new sender's first line suppressed after a flood by another:\n%s", buf.String())
	}
	if got := strings.Count(buf.String(), "msg=flood"); got != 2 {
		t.Fatalf("%d flood lines, want 2", got)
	}
	if h.Suppressed() != 4*3+48 {
		t.Fatalf("suppressed %d, want %d (the forgotten keys' counts kept)", h.Suppressed(), 4*3+48)
	}
}
