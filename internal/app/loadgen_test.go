package app

import (
	"io"
	"runtime/debug"
	"testing"
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
