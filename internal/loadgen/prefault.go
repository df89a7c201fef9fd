package loadgen

import (
	"runtime"
	"runtime/debug"
)

// prefaultChunk is the size of the allocations prefault touches the heap
// with (large objects: each its own span, back to the page heap when
// freed).
const prefaultChunk = 256 << 10

// prefault makes the process touch, before the stage, the heap its
// allocations will run through between two collections (the GC's
// headroom: GOGC percent of the live heap), so that the stage does not
// take a page fault for each fresh page of it (issue 18: 12-23% of the
// generator's CPU). It returns the bytes touched (0 with GC off).
//
// The headroom is allocated with the collector off, a byte written in
// each page, dropped, and collected by one GC: its spans are still
// counted in use at that GC's mark termination (they are swept after),
// so the scavenger's goal (1.1 times the heap in use then, scaled by the
// change of the heap goal) keeps its pages, and the stage's allocations
// reuse them without faults. A second GC would find them free and let
// the scavenger return them.
func prefault() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.NextGC <= ms.HeapAlloc {
		return 0
	}
	head := ms.NextGC - ms.HeapAlloc
	gogc := debug.SetGCPercent(-1)
	if gogc < 0 {
		return 0
	}
	chunks := make([][]byte, 0, head/prefaultChunk+1)
	var n uint64
	for ; n < head; n += prefaultChunk {
		b := make([]byte, prefaultChunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
	clear(chunks)
	debug.SetGCPercent(gogc)
	runtime.GC()
	return n
}
