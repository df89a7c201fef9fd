package app

import (
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/loadgen"
)

// proves: N1 (issue 18: the generator's CPU per registration is the key
// server's budget on a shared host) — `groupvpn loadgen` runs its
// collector at GOGC 400 (the collector's share of its CPU at 20,000 GMs:
// 10% at Go's default, 2% at 400), unless the GOGC environment variable
// says otherwise; -gogc wins over both.
func TestLoadgenGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	run := func(args ...string) int {
		debug.SetGCPercent(100)
		// -members 0: the generator refuses to start, after the flags
		// took effect.
		if code := runLoadgen(env, append([]string{"-members", "0", "-ks", "127.63.0.9:9"}, args...)); code != 1 {
			t.Fatalf("loadgen %v exited %d", args, code)
		}
		return debug.SetGCPercent(100)
	}
	if got := run(); got != 400 {
		t.Fatalf("GOGC %d by default, want 400", got)
	}
	t.Setenv("GOGC", "150")
	if got := run(); got != 100 {
		t.Fatalf("GOGC %d with GOGC=150 in the environment: the default overrode it", got)
	}
	if got := run("-gogc", "250"); got != 250 {
		t.Fatalf("GOGC %d with -gogc 250", got)
	}
}

// proves: N1 (issue 18: the generator's CPU per registration) —
// `groupvpn loadgen` runs with one P per shard (the runtime's search for
// work on an idle P and the thread wake-ups it makes were 10% of the
// generator's CPU with 1 shard on 2 Ps), unless the GOMAXPROCS environment
// variable says otherwise.
func TestLoadgenOnePPerShard(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	run := func(args ...string) int {
		runtime.GOMAXPROCS(4)
		if code := runLoadgen(env, append([]string{"-members", "0", "-ks", "127.63.0.9:9"}, args...)); code != 1 {
			t.Fatalf("loadgen %v exited %d", args, code)
		}
		return runtime.GOMAXPROCS(0)
	}
	if got := run(); got != 1 {
		t.Fatalf("GOMAXPROCS %d with one shard", got)
	}
	if got := run("-shards", "3"); got != 3 {
		t.Fatalf("GOMAXPROCS %d with 3 shards", got)
	}
	t.Setenv("GOMAXPROCS", "4")
	if got := run(); got != 4 {
		t.Fatalf("GOMAXPROCS %d with GOMAXPROCS=4 in the environment", got)
	}
}

// proves: N1 (issue 18: the rig's choice is said in its output) — once
// its members' key pairs are made, `groupvpn loadgen` says on stderr that
// they were made before the first registration, how many, in what time
// and CPU, and that the stage's CPU is counted after them.
func TestLoadgenSaysKeyPairsAhead(t *testing.T) {
	s := loadgen.Snapshot{KeyPairsAhead: 50000, ReadyAt: 3_500_000_000, ReadyCPU: 2_400_000_000}
	line := keysAheadLine(s, 1_000_000_000)
	for _, want := range []string{"50000 members' main-mode key pairs made before the first registration", "in 2.5s", "2.4s of CPU",
		"the stage's CPU is the process's after them", "makes its own in the exchange"} {
		if !strings.Contains(line, want) {
			t.Fatalf("%q lacks %q", line, want)
		}
	}
}
