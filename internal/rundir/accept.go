package rundir

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// RetryAccept reports whether an accept error on a daemon's socket is one
// to wait out rather than the listener's end: the process is out of file
// descriptors or buffers, or the connection went away before it was
// accepted. It waits first, delay doubling from 5 ms to 1 s (the caller
// keeps delay, and resets it to 0 after an accept that worked), so that
// clients filling the descriptor table neither stop the daemon nor make it
// spin; a close of done ends the wait with false.
func RetryAccept(done <-chan struct{}, err error, delay *time.Duration) bool {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOBUFS),
		errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.ECONNABORTED), errors.As(err, &ne) && ne.Timeout():
	default:
		return false
	}
	select {
	case <-done:
		return false
	default:
	}
	*delay = min(max(2**delay, 5*time.Millisecond), time.Second)
	t := time.NewTimer(*delay)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// FirstRetry reports whether delay (as RetryAccept left it) is the first
// wait of a streak: the moment to log the shortage once.
func FirstRetry(delay time.Duration) bool { return delay <= 5*time.Millisecond }
