// Package memtrim returns a daemon's free heap memory to the system once a
// burst of allocation is over.
//
// A key server's heap grows during a registration storm (every member's
// main mode and GROUPKEY-PULL in flight at once, and their garbage) far
// above what it keeps afterwards: with 100,000 members about 1.1 KB per
// member is live once the storm is over, while the Go runtime keeps the
// storm's heap (its live peak plus the collector's headroom) mapped,
// returning it to the system only slowly and only after a collection it
// has no reason to run while the daemon is quiet. An operator sees that
// resident memory as the key server's cost per member.
//
// A Trimmer looks at the runtime's own figures at each tick. Its measure
// is as much as the last collection found live, at least 8 MiB and at
// most 64 MiB (MinBurst, when set, instead): a small daemon's storm is
// smaller. A tick in which the daemon allocated at least the measure is a
// burst; the first quiet tick after a burst (less than an eighth of the
// measure allocated: the memory is not about to be reused) collects and
// returns all free memory to the system (debug.FreeOSMemory, one full
// collection) and logs what it returned. A quiet tick also trims when
// reclaimable memory (free spans, and objects beyond the last
// collection's live heap: state dropped since, such as a storm's
// finished exchanges once a collection has run) reaches 64 MiB (MinBurst)
// at any time; and once in the settleLooks looks after a burst's trim,
// when a collection found the live heap a quarter of the measure lower
// than that trim's own collection did and as much is reclaimable: the
// burst's leftovers, dropped. So a daemon is trimmed once per burst and
// once more as its leftovers go, never while busy, and a steady daemon
// only when it has 64 MiB to return: its own garbage, which lowers no
// live heap and is bounded by the collector's headroom, does not make a
// small daemon trim and log again and again.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Sample is the runtime's memory figures at one look.
type Sample struct {
	Allocated uint64 // heap octets allocated since the process started
	Live      uint64 // the live heap found by the last collection
	Held      uint64 // heap octets held from the system: objects (live or not yet swept), free and unused spans
	Objects   uint64 // heap octets in objects, live or not yet swept
	Free      uint64 // heap octets in free spans, not yet returned to the system
	Released  uint64 // heap octets returned to the system
}

// Reclaimable is what a collection and a release would return at most:
// the free spans and the objects beyond the last collection's live heap.
func (s Sample) Reclaimable() uint64 {
	r := s.Free
	if s.Objects > s.Live {
		r += s.Objects - s.Live
	}
	return r
}

var names = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/released:bytes",
}

// Read takes a Sample of this process.
func Read() Sample {
	ss := make([]metrics.Sample, len(names))
	for i, n := range names {
		ss[i].Name = n
	}
	metrics.Read(ss)
	v := func(i int) uint64 {
		if ss[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return ss[i].Value.Uint64()
	}
	return Sample{Allocated: v(0), Live: v(1), Held: v(2) + v(3) + v(4), Objects: v(2), Free: v(3), Released: v(5)}
}

// Trimmer trims the process's heap after bursts of allocation. One
// goroutine owns it.
type Trimmer struct {
	// MinBurst, when set, is the measure whatever the live heap: the
	// least allocation in one tick that makes a burst, and the least
	// reclaimable memory that trims a quiet daemon outside a burst's
	// leftovers.
	MinBurst uint64
	Log      *slog.Logger

	prev   Sample
	primed bool
	burst  bool   // a burst not trimmed yet
	settle int    // looks left in which the burst's leftovers may trim once
	live   uint64 // the live heap at the last trim (Look: found by its collection)
}

// settleLooks is how many looks after a burst's trim its leftovers may
// trim once more: what a storm leaves for a while (a served pull 30 s,
// phase 1's last message 46 s) is found dead only by a collection, which
// a quiet runtime forces every 2 minutes; at the daemons' Interval, 3
// minutes.
const settleLooks = 18

// Step is the decision: octets allocated since the last look, the
// reclaimable octets now and the last collection's live heap in,
// whether to trim now out.
func (t *Trimmer) Step(allocated, reclaimable, live uint64) bool {
	m := t.measure(live)
	quiet := allocated < m/8
	leftovers := false
	if t.settle > 0 {
		t.settle--
		leftovers = live+m/4 <= t.live && reclaimable >= m/4
	}
	switch {
	case allocated >= m:
		t.burst = true
	case quiet && t.burst:
		t.burst = false
		t.settle, t.live = settleLooks, live
		return true
	case quiet && leftovers:
		t.settle = 0 // once per burst
		return true
	case quiet && reclaimable >= t.measure(1<<62): // 64 MiB, or MinBurst
		return true
	}
	return false
}

// Look takes a Sample and trims if Step says so; it reports whether it
// did.
func (t *Trimmer) Look() bool {
	cur := Read()
	prev, primed := t.prev, t.primed
	t.prev, t.primed = cur, true
	if !primed || cur.Allocated < prev.Allocated || !t.Step(cur.Allocated-prev.Allocated, cur.Reclaimable(), cur.Live) {
		return false
	}
	start := time.Now()
	debug.FreeOSMemory()
	after := Read()
	t.prev = after
	// The leftovers' baseline is what the trim's own collection found
	// live, not a collection in the middle of the burst (Step's live).
	t.live = after.Live
	if t.Log != nil {
		t.Log.Info(Message,
			"returned_mib", mib(after.Released-min(after.Released, cur.Released)),
			"held_before_mib", mib(cur.Held), "held_mib", mib(after.Held), "live_mib", mib(after.Live),
			"took", time.Since(start).Round(time.Millisecond).String())
	}
	return true
}

// The measure's bounds when it follows the live heap.
const (
	minMeasure = 8 << 20
	maxMeasure = 64 << 20
)

// measure is what makes a burst, and what reclaimable trims a quiet
// daemon: MinBurst if set, else the live heap within its bounds.
func (t *Trimmer) measure(live uint64) uint64 {
	if t.MinBurst != 0 {
		return t.MinBurst
	}
	return min(max(live, minMeasure), maxMeasure)
}

// Run takes its first sample at once, then looks at each tick until ctx
// ends: a burst before the first tick (a restarted key server's members
// all registering again) is a burst too; primed at the first tick, a
// Trimmer missed it.
func (t *Trimmer) Run(ctx context.Context, tick <-chan time.Time) {
	t.Look()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			t.Look()
		}
	}
}

func mib(b uint64) uint64 { return b >> 20 }

// Start runs a Trimmer that looks every interval until ctx ends.
func Start(ctx context.Context, every time.Duration, log *slog.Logger) {
	tk := time.NewTicker(every)
	go func() {
		defer tk.Stop()
		(&Trimmer{Log: log}).Run(ctx, tk.C)
	}()
}

// Message is the log line's message of a trim.
const Message = "returned free heap memory to the system"

// Interval is how often the daemons' Trimmers look.
const Interval = 10 * time.Second
