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
	"bytes"
	"encoding/json"
	"errors"
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

// MaxLine bounds one event line; a longer line is skipped (and reported).
const MaxLine = 1 << 20

// ErrLine is wrapped by the errors of Next about one line (not an event,
// too long): the decoder goes on with the next line. Any other error is
// the pipe's own.
var ErrLine = errors.New("srcnotify: bad line")

// maxQuote bounds how much of a refused line an error quotes.
const maxQuote = 64

// Decoder reads the events a daemon writes (srcmstr's side).
type Decoder struct{ rd *bufio.Reader }

// NewDecoder reads events from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{rd: bufio.NewReaderSize(r, 4096)}
}

// Next returns the next event; io.EOF when the daemon closed the pipe
// (it exited). A line that is not an event, or is longer than MaxLine, is
// returned as an error (quoting at most its first 64 bytes) and the
// decoder goes on with the next line; an error of the reader itself is
// returned as is.
func (d *Decoder) Next() (Event, error) {
	var line []byte
	tooLong := false
	for {
		frag, err := d.rd.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > MaxLine+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (tooLong || len(line) == 0) {
			if tooLong && errors.Is(err, io.EOF) {
				return Event{}, fmt.Errorf("%w: longer than %d bytes", ErrLine, MaxLine)
			}
			return Event{}, err
		}
		break // a whole line, or a last line without its newline
	}
	if tooLong {
		return Event{}, fmt.Errorf("%w: longer than %d bytes", ErrLine, MaxLine)
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	var e Event
	if err := json.Unmarshal(line, &e); err != nil || e.State == "" {
		q := line
		if len(q) > maxQuote {
			q = q[:maxQuote]
		}
		more := ""
		if len(line) > maxQuote {
			more = fmt.Sprintf(" (%d bytes)", len(line))
		}
		return Event{}, fmt.Errorf("%w: not an event: %q%s", ErrLine, q, more)
	}
	return e, nil
}
