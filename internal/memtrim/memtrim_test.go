package memtrim

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// proves: N1 (issue 18: a key server returns a registration storm's memory
// once the storm is over) — the decision: a tick allocating MinBurst or
// more is a burst, the first quiet tick after it trims, once; ticks in
// between (neither burst nor quiet) wait; a quiet daemon is trimmed again
// only when MinBurst octets have become reclaimable.
func TestStepTrimsOncePerBurst(t *testing.T) {
	const mb = 1 << 20
	tr := &Trimmer{MinBurst: 64 * mb}
	steps := []struct {
		allocated, reclaimable uint64
		trim                   bool
	}{
		{1 * mb, 0, false},  // steady
		{7 * mb, 0, false},  // steady, busier
		{64 * mb, 0, false}, // a burst
		{200 * mb, 0, false},
		{20 * mb, 0, false}, // winding down: not quiet yet
		{7 * mb, 0, true},   // quiet: trim
		{0, 0, false},       // still quiet: once per burst
		{0, 63 * mb, false}, // a collection freed less than MinBurst
		{0, 64 * mb, true},  // ... or that much: trim
		{0, 0, false},
		{30 * mb, 100 * mb, false}, // not quiet: wait
		{90 * mb, 0, false},        // the next burst
		{0, 0, true},
	}
	for i, s := range steps {
		if got := tr.Step(s.allocated, s.reclaimable); got != s.trim {
			t.Fatalf("step %d (%d MiB allocated): trim %v, want %v", i, s.allocated/mb, got, s.trim)
		}
	}
}

// proves: N1 (issue 18) — with the real runtime: 192 MiB held live during
// a burst and then dropped (a registration storm's in-flight state) stay
// resident while the process is quiet; the Trimmer leaves them during the
// burst's tick and returns them to the system at the first quiet tick:
// VmRSS falls by at least 128 MiB.
func TestLookReturnsABurstsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 192 MiB; runs in make test")
	}
	tr := &Trimmer{MinBurst: 64 << 20}
	tr.Look() // primes
	burst := resident(192)
	runtime.KeepAlive(burst)
	burst = nil
	if tr.Look() {
		t.Fatal("trimmed in the burst's own tick")
	}
	before := vmRSS(t)
	if !tr.Look() {
		t.Fatalf("quiet tick after a 192 MiB burst: not trimmed (%+v)", Read())
	}
	after := vmRSS(t)
	t.Logf("VmRSS %d MiB before the trim, %d MiB after", before>>20, after>>20)
	if before < after+128<<20 {
		t.Fatalf("VmRSS %d MiB before the trim, %d MiB after: want at least 128 MiB returned", before>>20, after>>20)
	}
	if tr.Look() {
		t.Fatal("trimmed twice for one burst")
	}
}

func vmRSS(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// proves: N1 (issue 18) — state a quiet daemon drops after its burst (a
// storm's finished exchanges, kept 30 s) is returned too: 128 MiB held live
// across the burst's trim, then dropped and collected (the runtime's
// periodic collection), is returned at the next quiet tick.
func TestLookReturnsStateDroppedWhileQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 128 MiB; runs in make test")
	}
	tr := &Trimmer{MinBurst: 64 << 20}
	tr.Look()
	kept := resident(128)
	tr.Look()
	if !tr.Look() {
		t.Fatal("quiet tick after the burst: not trimmed")
	}
	if tr.Look() {
		t.Fatal("trimmed again with nothing dropped")
	}
	runtime.KeepAlive(kept)
	kept = nil
	runtime.GC()
	before := vmRSS(t)
	if !tr.Look() {
		t.Fatalf("quiet tick with 128 MiB collected: not trimmed (%+v)", Read())
	}
	after := vmRSS(t)
	t.Logf("VmRSS %d MiB before the trim, %d MiB after", before>>20, after>>20)
	if before < after+96<<20 {
		t.Fatalf("VmRSS %d MiB before the trim, %d MiB after: want at least 96 MiB returned", before>>20, after>>20)
	}
}

// resident allocates n MiB in 1 MiB slices and touches every page.
func resident(n int) [][]byte {
	out := make([][]byte, 0, n)
	for range n {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		out = append(out, b)
	}
	return out
}
