package testnet

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// DialLastDescriptor lowers the process's RLIMIT_NOFILE so that the
// connection dial makes takes the last descriptor the process may open,
// holds the limit for hold (a server in this process that accepts
// meanwhile gets EMFILE), restores it and returns the connection. Another
// goroutine of the process (a test's leftover cleanup, the runtime) may
// take that descriptor first: dial then fails with EMFILE, and it is tried
// again with a fresh probe, up to 10 times.
func DialLastDescriptor(t testing.TB, hold time.Duration, dial func() (net.Conn, error)) net.Conn {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		probe, err := os.Open(os.DevNull) // the next descriptor is the last
		if err != nil {
			t.Fatal(err)
		}
		last := probe.Fd()
		probe.Close()
		lim := old
		lim.Cur = uint64(last) + 1
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Skipf("setrlimit: %v", err)
		}
		c, err := dial()
		if err == nil {
			time.Sleep(hold)
		}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
		if err == nil {
			return c
		}
		if !errors.Is(err, syscall.EMFILE) || try == 10 {
			t.Fatalf("dial under the descriptor limit (try %d): %v", try, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
