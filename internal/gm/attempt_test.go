package gm

import (
	"testing"
	"time"
)

// After a GM removal the member has until its temporary SAs expire (180 s
// here) to register again, and retries fall in the last third of that.
// A registration attempt with a KS that does not answer lasted as long as
// phase 1 took to fail (46 s, then ike's 30 s give-up): one or two
// attempts in the last 60 s. An attempt now ends after a third of what
// the keys have left (at least MinAttempt), so a silent KS leaves time
// for more attempts: at least three start in the last 60 s, none runs
// longer than its bound, and the timeouts are counted.
// proves: R2 (issue 18 F6: a registration attempt's time is bounded by what the keys have left)
func TestAttemptBoundedByKeysLeft(t *testing.T) {
	w := registered(t)
	k := w.kss[0]
	w.runFor(time.Minute)
	removeAll(t, w, k, false)
	expires := w.dp.TEKs()[0].Expires
	k.down = true
	type attempt struct {
		start, end time.Time
		bound      time.Duration
	}
	var attempts []attempt
	busy := false
	w.run(expires.Add(-time.Second), func() {
		st := w.status()
		inAttempt := st.State == "phase 1" || st.State == "registering"
		switch {
		case inAttempt && !busy:
			left := expires.Sub(w.now)
			attempts = append(attempts, attempt{start: w.now, bound: min(DefaultAttemptTimeout, max(left/3, MinAttempt))})
		case !inAttempt && busy:
			attempts[len(attempts)-1].end = w.now
		}
		busy = inAttempt
	})
	inWindow := 0
	for i, a := range attempts {
		if a.end.IsZero() {
			continue // still running at the end
		}
		if took := a.end.Sub(a.start); took > a.bound+time.Second {
			t.Errorf("attempt %d at %s before the expiry ran %s, bound %s", i, expires.Sub(a.start), took, a.bound)
		}
		if expires.Sub(a.start) <= time.Minute {
			inWindow++
		}
	}
	st := w.status()
	t.Logf("%d attempts, %d starting in the last minute; failures by reason %+v", len(attempts), inWindow, st.Counters.Failures)
	if inWindow < 3 {
		t.Errorf("%d attempts started in the last minute of the temporary SAs, want at least 3\n%s", inWindow, w.dump())
	}
	if st.Counters.Failures.TimedOut == 0 {
		t.Errorf("no attempt counted as timed out: %+v", st.Counters.Failures)
	}
}
