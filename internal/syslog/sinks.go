package syslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sinks is the logging a daemon's configuration asks for (IOS `logging
// host`, `logging buffered`): RFC 5424 over UDP to each host, and the last
// lines in a buffer of a bounded size (show logging). It is a slog.Handler;
// Prepare and Commit change it while it runs, atomically: either every
// destination of the new configuration is open, or nothing changes.
type Sinks struct {
	h  *Handler
	st *sinkState
}

type sinkState struct {
	mu    sync.Mutex
	names []string // the destinations, as Dial takes them
	dests []*Destination
	lines []string // buffered, oldest first
	size  int      // bytes in lines
	max   int      // logging buffered SIZE; 0: no buffer
	// bufLevel and trap are the most verbose severities (0-7) the buffer
	// keeps and the hosts get.
	bufLevel, trap int
	drops          atomic.Uint64
	sent           atomic.Uint64
	// on: there are destinations or a buffer (set with them, under mu);
	// without, Enabled is false and a Fanout skips the sinks.
	on atomic.Bool
}

// MaxBuffer bounds logging buffered SIZE.
const MaxBuffer = 16 << 20

// NewSinks returns sinks without destinations or buffer. o.Format is
// RFC 5424 whatever it says.
func NewSinks(o Options) *Sinks {
	o.Format = RFC5424
	return &Sinks{h: NewHandler(nil, o), st: &sinkState{}}
}

// SetHostname sets the HOSTNAME of the messages (the configured hostname).
func (s *Sinks) SetHostname(name string) { s.h.SetHostname(name) }

// Enabled is false while the sinks have no destination and no buffer
// (a daemon without logging host and logging buffered: a key server's
// line per registration then costs them nothing, issue 18).
func (s *Sinks) Enabled(ctx context.Context, l slog.Level) bool {
	return s.st.on.Load() && s.h.Enabled(ctx, l)
}

func (s *Sinks) WithAttrs(as []slog.Attr) slog.Handler {
	return &Sinks{h: s.h.WithAttrs(as).(*Handler), st: s.st}
}

func (s *Sinks) WithGroup(string) slog.Handler { return s }

// Handle sends r to every host and appends it to the buffer. A failed
// send is counted (Drops), not returned: logging never stops the daemon.
func (s *Sinks) Handle(_ context.Context, r slog.Record) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.dests) == 0 && st.max == 0 {
		return nil
	}
	sev, _, msg, ts := s.h.fields(r)
	if len(st.dests) > 0 && sev <= st.trap {
		line := []byte(s.h.Line(r))
		st.sent.Add(1)
		for _, d := range st.dests {
			if _, err := d.Write(line); err != nil {
				st.drops.Add(1)
			}
		}
	}
	if st.max > 0 && sev <= st.bufLevel {
		st.add("*" + ts.Format(time.StampMilli) + ": " + cut(msg, MaxMessage)) // as terminal monitor shows it
	}
	return nil
}

func (st *sinkState) add(line string) {
	st.lines = append(st.lines, line)
	st.size += len(line)
	st.trim()
}

func (st *sinkState) trim() {
	n := 0
	for st.size > st.max && n < len(st.lines) {
		st.size -= len(st.lines[n])
		n++
	}
	st.lines = slices.Delete(st.lines, 0, n)
}

// Levels are the most verbose severities the buffer keeps and the hosts get.
func (s *Sinks) Levels() (buffer, trap int) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.bufLevel, s.st.trap
}

// Buffered returns the buffered lines, oldest first, and the buffer size
// in bytes (0: logging buffered is off).
func (s *Sinks) Buffered() (lines []string, size int) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return slices.Clone(s.st.lines), s.st.max
}

// Hosts are the destinations messages go to.
func (s *Sinks) Hosts() []string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return slices.Clone(s.st.names)
}

// Sent counts the messages sent to the hosts (each once, whatever their
// number).
func (s *Sinks) Sent() uint64 { return s.st.sent.Load() }

// Drops counts messages a host could not be sent.
func (s *Sinks) Drops() uint64 { return s.st.drops.Load() }

// Change is a prepared change of the sinks: its new destinations are open.
// Commit or Discard it.
type Change struct {
	s      *Sinks
	names  []string
	dests  []*Destination
	opened []*Destination // by Prepare: closed by Discard
	cfg    SinkConfig
}

// SinkConfig is what the configuration asks of the sinks.
type SinkConfig struct {
	Dests    []string // Dial's syntax (logging host)
	Buffered int      // buffer size in bytes (logging buffered); 0: none
	// BufLevel and Trap are the most verbose severities (0-7) the buffer
	// keeps and the hosts get (logging buffered LEVEL, logging trap).
	BufLevel, Trap int
	Facility       int // of the messages to the hosts (logging facility); 0: local7
}

// Prepare opens the destinations the sinks do not have yet and checks the
// rest of sc; it changes nothing.
func (s *Sinks) Prepare(sc SinkConfig) (*Change, error) {
	if sc.Buffered < 0 || sc.Buffered > MaxBuffer {
		return nil, fmt.Errorf("logging buffered %d: out of range (0-%d)", sc.Buffered, MaxBuffer)
	}
	if sc.BufLevel < 0 || sc.BufLevel > 7 || sc.Trap < 0 || sc.Trap > 7 || sc.Facility < 0 || sc.Facility > 23 {
		return nil, fmt.Errorf("logging severities %d, %d or facility %d: out of range", sc.BufLevel, sc.Trap, sc.Facility)
	}
	dests := sc.Dests
	c := &Change{s: s, cfg: sc}
	s.st.mu.Lock()
	have := map[string]*Destination{}
	for i, n := range s.st.names {
		have[n] = s.st.dests[i]
	}
	s.st.mu.Unlock()
	for _, n := range dests {
		if slices.Contains(c.names, n) {
			continue
		}
		d := have[n]
		if d == nil {
			var err error
			if d, err = Dial(n); err != nil {
				c.Discard()
				return nil, err
			}
			c.opened = append(c.opened, d)
		}
		c.names, c.dests = append(c.names, n), append(c.dests, d)
	}
	return c, nil
}

// Commit makes the change: the new destinations and buffer size; the
// destinations no longer configured are closed.
func (c *Change) Commit() error {
	st := c.s.st
	st.mu.Lock()
	old := st.dests
	st.names, st.dests, st.max = c.names, c.dests, c.cfg.Buffered
	st.bufLevel, st.trap = c.cfg.BufLevel, c.cfg.Trap
	st.on.Store(len(st.dests) > 0 || st.max > 0)
	c.s.h.SetFacility(c.cfg.Facility)
	st.trim()
	st.mu.Unlock()
	var errs []error
	for _, d := range old {
		if !slices.Contains(c.dests, d) {
			errs = append(errs, d.Close())
		}
	}
	return errors.Join(errs...)
}

// Discard closes what Prepare opened; the sinks stay as they were.
func (c *Change) Discard() {
	for _, d := range c.opened {
		d.Close()
	}
	c.opened = nil
}

// Facility is the facility of the messages to the hosts.
func (s *Sinks) Facility() int { return int(s.h.fac.Load()) }
