// Package srcnotify is how a daemon started by the subsystem controller
// (srcmstr, SPEC D1) tells it what it is doing: ready after start, the
// outcome of each refresh, the addresses it serves. srcmstr passes the
// write end of a pipe as an inherited file descriptor named by the
// environment variable GROUPVPN_NOTIFY_FD; the daemon writes one JSON
// object per line. It is the idea of systemd's sd_notify (READY=1,
// RELOADING=1), with the refresh outcome added so that `refresh` can
// report it. A daemon started by hand has no such descriptor and every
// call is a no-op.
package srcnotify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// EnvFD names the environment variable holding the descriptor number.
const EnvFD = "GROUPVPN_NOTIFY_FD"

// EnvMode names the environment variable in which srcmstr says how the
// subsystem was started: "s" (startsrc -s) or "g" (startsrc -g).
const EnvMode = "GROUPVPN_SRC_MODE"

// States a daemon reports.
const (
	Ready         = "ready"          // started and serving
	Refreshed     = "refreshed"      // a refresh (SIGHUP) completed
	RefreshFailed = "refresh-failed" // a refresh was refused in part; Detail says why
	Stopping      = "stopping"       // shutting down on request
)

// Event is one line on the pipe.
type Event struct {
	State string `json:"state"`
	// Addrs are the addresses served ("192.0.2.1:848"), for lssrc -l.
	Addrs []string `json:"addrs,omitempty"`
	// Detail is a one-line human summary (refresh outcome, error).
	Detail string `json:"detail,omitempty"`
}

// Notifier writes events; the zero of *Notifier (nil) discards them.
type Notifier struct {
	mu sync.Mutex
	w  io.WriteCloser
}

// FromEnv returns the notifier srcmstr set up, or nil when the process was
// not started by srcmstr. The variable is cleared so that children do not
// inherit it.
func FromEnv() *Notifier {
	v := os.Getenv(EnvFD)
	if v == "" {
		return nil
	}
	os.Unsetenv(EnvFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	return New(os.NewFile(uintptr(fd), "srcnotify"))
}

// New returns a notifier writing to w.
func New(w io.WriteCloser) *Notifier { return &Notifier{w: w} }

// Send writes one event. Errors are returned for the caller to log; a
// daemon keeps running when srcmstr is gone.
func (n *Notifier) Send(e Event) error {
	if n == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("srcnotify: %w", err)
	}
	return nil
}

// Close closes the descriptor.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return n.w.Close()
}

// Mode returns "s" or "g" as srcmstr set it, or "" when started by hand.
func Mode() string { return os.Getenv(EnvMode) }

// Decoder reads the events a daemon writes (srcmstr's side).
type Decoder struct{ sc *bufio.Scanner }

// NewDecoder reads events from r.
func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	return &Decoder{sc: sc}
}

// Next returns the next event; io.EOF when the daemon closed the pipe
// (it exited). A line that is not an event is returned as an error and
// the decoder goes on with the next line.
func (d *Decoder) Next() (Event, error) {
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return Event{}, err
		}
		return Event{}, io.EOF
	}
	var e Event
	if err := json.Unmarshal(d.sc.Bytes(), &e); err != nil || e.State == "" {
		return Event{}, fmt.Errorf("srcnotify: not an event: %q", d.sc.Text())
	}
	return e, nil
}
