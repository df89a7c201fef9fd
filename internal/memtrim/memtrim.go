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
// A Trimmer looks at the runtime's own figures at each tick. A tick in
// which the daemon allocated at least MinBurst octets is a burst; the first
// quiet tick after a burst (less than an eighth of MinBurst allocated: the
// memory is not about to be reused) collects and returns all free memory to
// the system (debug.FreeOSMemory, one full collection) and logs what it
// returned. A quiet tick also trims when at least MinBurst octets are
// reclaimable (free spans, and objects beyond the last collection's live
// heap: state dropped since, such as a storm's finished exchanges once a
// collection has run). So a daemon is trimmed once per burst, never while
// busy, and a steady daemon only when it has that much to return.
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
	// MinBurst is the least allocation in one tick that makes a burst
	// (default 64 MiB).
	MinBurst uint64
	Log      *slog.Logger

	prev   Sample
	primed bool
	burst  bool
}

// Step is the decision: octets allocated since the last look and the
// reclaimable octets now in, whether to trim now out.
func (t *Trimmer) Step(allocated, reclaimable uint64) bool {
	quiet := allocated < t.minBurst()/8
	switch {
	case allocated >= t.minBurst():
		t.burst = true
	case quiet && (t.burst || reclaimable >= t.minBurst()):
		t.burst = false
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
	if !primed || cur.Allocated < prev.Allocated || !t.Step(cur.Allocated-prev.Allocated, cur.Reclaimable()) {
		return false
	}
	start := time.Now()
	debug.FreeOSMemory()
	after := Read()
	t.prev = after
	if t.Log != nil {
		t.Log.Info(Message,
			"returned_mib", mib(after.Released-min(after.Released, cur.Released)),
			"held_before_mib", mib(cur.Held), "held_mib", mib(after.Held), "live_mib", mib(after.Live),
			"took", time.Since(start).Round(time.Millisecond).String())
	}
	return true
}

func (t *Trimmer) minBurst() uint64 {
	if t.MinBurst == 0 {
		return 64 << 20
	}
	return t.MinBurst
}

// Run looks at each tick until ctx ends.
func (t *Trimmer) Run(ctx context.Context, tick <-chan time.Time) {
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
