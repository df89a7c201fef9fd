package loadgen

import (
	"math/rand/v2"
	"testing"
)

// proves: N1 (issue 18: the generator's timers) — the shard's timer heap
// holds one entry per GM, moved in place when its wake moves (earlier or
// later) and taken out when it has none: after every one of 20,000 random
// sets and removals the heap order holds, every GM's place is right, the
// entries are exactly the GMs with a wake, and the first is the earliest.
func TestWakeHeapOneEntryPerGM(t *testing.T) {
	const n = 300
	sims := make([]sim, n)
	var h wakeHeap
	want := map[int32]int64{}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 20000 {
		i := int32(r.IntN(n))
		if r.IntN(4) == 0 {
			h.remove(sims, i)
			delete(want, i)
		} else {
			at := r.Int64N(1000)
			h.set(sims, i, at)
			want[i] = at
		}
		if len(h) != len(want) {
			t.Fatalf("step %d: %d entries for %d GMs with a wake", step, len(h), len(want))
		}
		for j, e := range h {
			if j > 0 && h[(j-1)/2].at > e.at {
				t.Fatalf("step %d: heap order broken at %d", step, j)
			}
			if sims[e.idx].hpos != int32(j+1) || want[e.idx] != e.at {
				t.Fatalf("step %d: GM %d at place %d, recorded %d; at %d, want %d", step, e.idx, j, sims[e.idx].hpos-1, e.at, want[e.idx])
			}
		}
		for k := range sims {
			if _, ok := want[int32(k)]; ok != (sims[k].hpos != 0) {
				t.Fatalf("step %d: GM %d has place %d, wake %v", step, k, sims[k].hpos, ok)
			}
		}
		if len(h) > 0 {
			for _, at := range want {
				if at < h[0].at {
					t.Fatalf("step %d: first %d, yet %d is earlier", step, h[0].at, at)
				}
			}
		}
	}
}
