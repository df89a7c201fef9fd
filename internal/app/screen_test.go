package app

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// ptyScreen is what a program writes on a pseudo-terminal, read from its
// master side, for a test to wait on: each wait is woken by the writes,
// not by a timer.
type ptyScreen struct {
	buf   testnet.Buffer
	ended chan struct{}
}

// newPTYScreen copies master into the screen until master is closed.
func newPTYScreen(master io.Reader) *ptyScreen {
	s := &ptyScreen{ended: make(chan struct{})}
	go io.Copy(&s.buf, master)
	return s
}

// end says the program has returned: a wait for what it never wrote
// fails then instead of at its timeout.
func (s *ptyScreen) end() {
	close(s.ended)
	s.buf.Write(nil) // wakes the waits
}

func clean(text string) string { return strings.ReplaceAll(text, "\r", "") }

// String is the screen without carriage returns.
func (s *ptyScreen) String() string { return clean(s.buf.String()) }

// wait waits until the screen shows want at or after octet after (of the
// String) and returns the octet following it. Once the program has
// ended, what it wrote last gets two seconds to come through the master.
func (s *ptyScreen) wait(t *testing.T, timeout time.Duration, after int, want string) int {
	t.Helper()
	at := -1
	found := func(text string) bool {
		text = clean(text)
		if after <= len(text) {
			if i := strings.Index(text[after:], want); i >= 0 {
				at = after + i + len(want)
				return true
			}
		}
		return false
	}
	ended := func() bool {
		select {
		case <-s.ended:
			return true
		default:
			return false
		}
	}
	if s.buf.WaitFor(timeout, func(text string) bool { return found(text) || ended() }) && at < 0 && ended() {
		s.buf.WaitFor(2*time.Second, found)
	}
	if at < 0 {
		if ended() {
			t.Fatalf("the program ended before the screen showed %q (after octet %d):\n%s", want, after, s.String())
		}
		t.Fatalf("the screen lacks %q after octet %d in %v:\n%s", want, after, timeout, s.String())
	}
	return at
}
