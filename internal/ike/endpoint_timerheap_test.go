package ike

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// proves: N1 (issue 18: the timer heap's moves without container/heap's
// interface calls) — push and pop on the slice itself leave the heap
// exactly as container/heap's Push and Pop do, entry for entry, through
// 20,000 random pushes (ties included) and pops, and pop returns the
// earliest timer each time.
func TestTimerHeapMatchesContainerHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	sas := make([]*SA, 64)
	for i := range sas {
		sas[i] = &SA{}
	}
	var got, want timerHeap
	for i := range 20000 {
		if len(got) > 0 && rng.IntN(3) == 0 {
			g := got.pop()
			w := heap.Pop(&want).(timerEntry)
			if g != w {
				t.Fatalf("step %d: pop %v, container/heap's %v", i, g, w)
			}
			for _, e := range got {
				if e.at.Before(g.at) {
					t.Fatalf("step %d: popped %v before %v", i, g.at, e.at)
				}
			}
		} else {
			e := timerEntry{at: t0.Add(time.Duration(rng.IntN(500)) * time.Second), sa: sas[rng.IntN(len(sas))], gen: uint64(i)}
			got.push(e)
			heap.Push(&want, e)
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: %d entries, container/heap %d", i, len(got), len(want))
		}
		for k := range got {
			if got[k] != want[k] {
				t.Fatalf("step %d: entry %d differs from container/heap's", i, k)
			}
		}
	}
}
