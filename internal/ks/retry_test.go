package ks

import (
	"errors"
	"testing"
	"time"
)

// failReserve is a memStore whose ReserveSeq fails while fail is set (a
// read-only disk).
type failReserve struct {
	*memStore
	fail bool
}

func (f *failReserve) ReserveSeq(group string, n uint32) (uint32, uint32, error) {
	if f.fail {
		return 0, 0, errors.New("read-only file system")
	}
	return f.memStore.ReserveSeq(group, n)
}

// A scheduled rekey whose sequence number cannot be reserved is not tried
// again at once: Next moves past now (1 s, doubling to 60 s), so the
// owner's loop does not spin on Tick logging RekeyFailed each turn; once
// the store recovers the rekey goes out and the wait starts again at 1 s.
//
// proves: T1 (issue 15: a scheduled rekey that fails is retried with backoff, not in a busy loop)
func TestFailedScheduledRekeyBacksOff(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), nil, t0)
	st := &failReserve{memStore: newMemStore(), fail: true}
	x.d = NewDelivery(x.srv, st)
	st.fail = false
	if _, err := x.d.Restore(t0); err != nil {
		t.Fatal(err)
	}
	x.st = st.memStore
	x.join(0, 2)
	st.fail = true
	now := x.srv.NextRekey("G")
	tries := func(at time.Time) (fails int, started bool) {
		for i := 0; i < 1000; i++ {
			res := x.d.Tick(at)
			fails += count[RekeyFailed](res.Events)
			started = started || count[RekeyStarted](res.Events) > 0
			if x.d.Next().After(at) {
				break
			}
			// The owner calls Tick again at once (Next <= now): time does
			// not move.
		}
		return fails, started
	}
	if fails, _ := tries(now); fails != 1 {
		t.Fatalf("a scheduled rekey that cannot reserve its sequence number was tried %d times at the same instant (Next stays <= now: a busy loop)", fails)
	}
	var waits []time.Duration
	for i := 0; i < 8; i++ {
		next := x.d.Next()
		waits = append(waits, next.Sub(now))
		now = next
		if fails, _ := tries(now); fails != 1 {
			t.Fatalf("retry %d: %d failures at %s", i, fails, now)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Fatalf("waits between tries %v, want 1s doubling to 60s", waits)
		}
	}
	// The store recovers: the next try sends the rekey.
	st.fail = false
	now = x.d.Next()
	x.now = now
	res := x.d.Tick(now)
	if count[RekeyStarted](res.Events) != 1 || count[RekeyFailed](res.Events) != 0 {
		t.Fatalf("after the store recovered, the scheduled rekey did not start: %+v", res.Events)
	}
	x.apply(res)
	// The next scheduled rekey that fails waits 1 s again.
	x.run(x.srv.NextRekey("G").Add(-time.Second))
	if x.d.InFlight() != 0 {
		t.Fatalf("%d rekeys in flight at the next scheduled one", x.d.InFlight())
	}
	st.fail = true
	now = x.srv.NextRekey("G")
	var failed []RekeyFailed
	for _, ev := range x.d.Tick(now).Events {
		if e, ok := ev.(RekeyFailed); ok {
			failed = append(failed, e)
		}
	}
	if len(failed) != 1 || failed[0].Retry.Sub(now) != RetryFirst {
		t.Fatalf("a failure after a successful rekey: %+v, want one retried after %s", failed, RetryFirst)
	}
}
