package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// The short version of `groupvpn bench disruption`: 3 members exchange
// numbered packets (every ordered pair, both SAs) through their ESP
// engines while the KS runs every event of the script; no packet is lost
// through scheduled TEK and KEK rekeys, the policy replace, the removal
// with temporary SAs, the KS's kill -9 and restart and a GM control
// plane's; the outage of replace-now and removal-now stays within the
// re-registration window (2% of the TEK lifetime) plus the group's
// registration time; with a 1.0.1 member in the group the policy replace
// loses nothing either (it installs the new SAs without shortening the old,
// P6), and a removal disrupts only the 1.0.1 member's own pairs.
// proves: E2, R2, R4, P3, P4, P6, O4 (issue 13: no disruption, measured, through removal, policy replace, rekeys and restarts)
func TestDisruptionShort(t *testing.T) {
	if testing.Short() {
		t.Skip("about three minutes")
	}
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// 5x: the lab clock keeps running while make test's other packages
	// (under -race, on two cores) stall a member's goroutines, and a
	// stall is the clock's speed times longer in lab time. Clean-clone
	// runs of make test lost one packet each, never when the test ran
	// alone. Two bugs since fixed fit them (found in the code and a lab
	// run's log, not those runs' logs): at 15x one of 2,004 at the GM
	// removal (a second registration undid the removal's hold); at 30x
	// one of 1,104 and at 10x one of 3,302 in the policy replace with a
	// 1.0.1 member (its rekey had no activation delay, and it sent with
	// the new TEKs a few milliseconds before another member held them).
	// The nodes' log around a loss is printed when a promise fails.
	logs := &lineLog{max: 200000}
	r, err := Disruption(ctx, DisruptionOptions{Members: 3, Port: 26848, Speed: 5, Out: &progress,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Log(progress.String())
	if r != nil {
		var out strings.Builder
		r.Print(&out)
		t.Log(out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 9 {
		t.Fatalf("%d events", len(r.Events))
	}
	for _, e := range r.Events {
		if !e.Met {
			t.Errorf("%s: %s", e.Name, e.Why)
			// The nodes' log from 15 s (lab time) before the first
			// loss to 5 s after the last, to tell which key was
			// missing.
			for _, f := range e.Flows {
				if f.Lost > 0 {
					t.Logf("the nodes' log around gm%d->gm%d's losses:\n%s", f.Src+1, f.Dst+1,
						logs.between(f.FirstLost.Add(-15*time.Second), f.LastLost.Add(5*time.Second)))
				}
			}
		}
	}
	if r.Unknown != 0 {
		t.Errorf("%d unknown payloads delivered", r.Unknown)
	}
}

// lineLog keeps the last max lines of a slog.TextHandler.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	max     int
	dropped int // the oldest lines forgotten
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		if len(l.lines) >= l.max {
			half := l.max / 2
			l.dropped += half
			l.lines = append(l.lines[:0], l.lines[half:]...)
		}
		l.lines = append(l.lines, string(line))
	}
	return len(p), nil
}

// between returns the lines whose time= is in [from, to].
func (l *lineLog) between(from, to time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	if l.dropped > 0 {
		fmt.Fprintf(&b, "(the %d oldest lines were forgotten)\n", l.dropped)
	}
	for _, line := range l.lines {
		v, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}
