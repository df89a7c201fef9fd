package testnet

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Do runs fn in the namespace and fails the test if fn returns an error
// (or if entering or leaving the namespace fails).
//
// fn runs on a goroutine of its own, locked to an OS thread that has joined
// the namespace with setns(2), so everything fn creates directly lives in
// the namespace: sockets (net.ListenUDP, net.Dial...), and lookups that go
// through a netlink socket (net.InterfaceByName). Those objects stay in the
// namespace after Do returns, so a test can create its sockets in several
// namespaces and then use them all from the test's goroutines. What fn
// starts on other goroutines runs on other threads, in the test process's
// own namespace. fn must not call t.Fatal (it is not the test goroutine);
// it returns an error instead.
//
// Afterwards the thread goes back to its original namespace; if that
// fails, the thread is left locked and so is destroyed rather than reused.
func (ns *Netns) Do(t testing.TB, fn func() error) {
	t.Helper()
	if err := ns.do(fn); err != nil {
		t.Fatalf("testnet: in namespace %s: %v", ns.Name, err)
	}
}

// do is Do without the test: it returns fn's error, or an error entering or
// leaving the namespace.
func (ns *Netns) do(fn func() error) error {
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open the thread's namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			done <- fmt.Errorf("setns back (fn: %v): %w", ferr, err)
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
