package testnet

import (
	"strings"
	"testing"
	"time"
)

// proves: groundwork (issue 15: tests wait on what is written, not on
// sleeps) — WaitFor wakes on the Write that satisfies it, and reports
// false when nothing does by the timeout.
func TestBufferWaitFor(t *testing.T) {
	var b Buffer
	go func() {
		for _, s := range []string{"one ", "two ", "three"} {
			b.Write([]byte(s))
		}
	}()
	start := time.Now()
	b.WaitContains(t, 10*time.Second, "two three")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("woke after %v", took)
	}
	if b.WaitFor(20*time.Millisecond, func(s string) bool { return strings.Contains(s, "four") }) {
		t.Fatal("WaitFor reported a string never written")
	}
	// A waiter blocked before the Write is woken by it.
	done := make(chan bool)
	go func() { done <- b.WaitFor(10*time.Second, func(s string) bool { return strings.HasSuffix(s, "four") }) }()
	b.Write([]byte(" four"))
	if !<-done {
		t.Fatal("the waiter was not woken by the Write")
	}
}
