package app

import (
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/srcnotify"
)

// srcEvents reads the srcnotify events a daemon writes to r, as srcmstr
// does; next waits up to 10 s for the following one. Tests wait on the
// daemon's ready event instead of polling its sockets.
func srcEvents(t *testing.T, r io.ReadCloser) (next func() srcnotify.Event) {
	t.Helper()
	events := make(chan srcnotify.Event, 8)
	go func() {
		defer close(events)
		dec := srcnotify.NewDecoder(r)
		for {
			e, err := dec.Next()
			if err != nil {
				return
			}
			events <- e
		}
	}()
	t.Cleanup(func() { r.Close() })
	return func() srcnotify.Event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("the daemon closed its srcnotify pipe")
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no srcnotify event in 10 s")
		}
		return srcnotify.Event{}
	}
}

// notifyPipe is the srcnotify pipe of a daemon run in this process
// through serveTmd: the notifier to hand it, and its events.
func notifyPipe(t *testing.T) (*srcnotify.Notifier, func() srcnotify.Event) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return srcnotify.New(pw), srcEvents(t, pr)
}

// notifyEnv is the srcnotify pipe of a daemon run in this process through
// Main: its write end's descriptor goes in GROUPVPN_NOTIFY_FD, where
// srcnotify.FromEnv takes it (and the daemon closes it), as srcmstr passes
// fd 3. The test holds no *os.File on that descriptor.
func notifyEnv(t *testing.T) func() srcnotify.Event {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Setenv(srcnotify.EnvFD, strconv.Itoa(fds[1]))
	return srcEvents(t, os.NewFile(uintptr(fds[0]), "srcnotify"))
}

// waitReady fails the test unless the daemon's next event is ready.
func waitReady(t *testing.T, next func() srcnotify.Event, log interface{ String() string }) {
	t.Helper()
	if e := next(); e.State != srcnotify.Ready {
		t.Fatalf("first srcnotify event %+v, not ready: %s", e, log.String())
	}
}
