package app

import (
	"io"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// proves: N1 (issue 18: the KS's CPU per registration in a storm) — the
// key-server daemons run their collector at GOGC 200 (ksGOGC), unless
// the GOGC environment variable says otherwise.
func TestKSDaemonsGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	missing := filepath.Join(t.TempDir(), "missing.conf")
	for name, run := range map[string]func(*Env, []string) int{"isakmpd": runIsakmpd, "ikev2d": runIkev2d} {
		start := func() int {
			debug.SetGCPercent(100)
			// A configuration file that does not exist: the daemon
			// exits after its flags took effect.
			if code := run(env, []string{"-f", missing, "-socket", filepath.Join(t.TempDir(), "s"), "-state", filepath.Join(t.TempDir(), "db"), "-listen", "127.0.0.1", "-port", "1"}); code == 0 {
				t.Fatalf("%s with a missing configuration exited 0", name)
			}
			return debug.SetGCPercent(100)
		}
		t.Setenv("GOGC", "")
		if got := start(); got != ksGOGC {
			t.Fatalf("%s: GOGC %d by default, want %d", name, got, ksGOGC)
		}
		t.Setenv("GOGC", "150")
		if got := start(); got != 100 {
			t.Fatalf("%s: GOGC %d with GOGC=150 in the environment: the default overrode it", name, got)
		}
	}
}
