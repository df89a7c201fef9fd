package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// terminal monitor (issue 14 item 3): the daemon's log lines, as IOS shows
// them on a terminal that asked (`*Dec  6 05:15:51.123: %GDOI-5-...: ...`),
// streamed to the CLI sessions that entered `terminal monitor`.
//
// Protocol: the client opens a second connection and sends
// {"v":1,"cmd":"?monitor"}; the server answers with one response line per
// log line ({"v":1,"ok":true,"text":LINE}) until the client closes it. A
// subscriber is a bounded queue: the daemon never waits for it. A line that
// finds the queue full, or comes over the rate limit, is dropped and
// counted; the next line delivered after drops is preceded by
// `% N log lines dropped (terminal monitor too slow)`.

// CmdMonitor turns a connection into a stream of the daemon's log lines.
const CmdMonitor = "?monitor"

// Limits of terminal monitor.
const (
	MaxMonitors   = 8    // sessions streaming at once; more are refused
	monitorQueue  = 256  // lines waiting for one session
	monitorRate   = 200  // lines a second to one session (burst: monitorQueue)
	monitorMaxLen = 2048 // bytes of one line; longer ones are cut
)

// Monitor fans the daemon's log records out to the subscribed sessions.
type Monitor struct {
	mu      sync.Mutex
	subs    map[*monitorSub]bool
	n       atomic.Int32
	dropped atomic.Uint64 // lines dropped for all sessions
}

type monitorSub struct {
	ch      chan string
	dropped atomic.Uint64
	tokens  float64
	last    time.Time
}

// Dropped is the number of log lines terminal monitor sessions missed
// (queue full or over the rate) since the server started.
func (m *Monitor) Dropped() uint64 { return m.dropped.Load() }

func (m *Monitor) subscribe() (*monitorSub, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.subs) >= MaxMonitors {
		return nil, fmt.Errorf("%% terminal monitor: %d sessions already monitor; try again later", MaxMonitors)
	}
	if m.subs == nil {
		m.subs = map[*monitorSub]bool{}
	}
	s := &monitorSub{ch: make(chan string, monitorQueue), tokens: monitorQueue}
	m.subs[s] = true
	m.n.Store(int32(len(m.subs)))
	return s, nil
}

func (m *Monitor) unsubscribe(s *monitorSub) {
	m.mu.Lock()
	delete(m.subs, s)
	m.n.Store(int32(len(m.subs)))
	m.mu.Unlock()
}

// publish offers a line to every subscriber without waiting.
func (m *Monitor) publish(now time.Time, line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.subs {
		if !s.last.IsZero() {
			s.tokens = min(monitorQueue, s.tokens+now.Sub(s.last).Seconds()*monitorRate)
		}
		s.last = now
		if s.tokens < 1 {
			s.dropped.Add(1)
			m.dropped.Add(1)
			continue
		}
		select {
		case s.ch <- line:
			s.tokens--
		default:
			s.dropped.Add(1)
			m.dropped.Add(1)
		}
	}
}

// Handler returns a slog.Handler that passes every record to next and, when
// a session monitors, copies it to the session as an IOS log line: the
// records next takes, and informational or more severe ones even when
// next discards them.
func (m *Monitor) Handler(next slog.Handler) slog.Handler {
	return &monitorHandler{m: m, next: next}
}

type monitorHandler struct {
	m     *Monitor
	next  slog.Handler
	attrs []slog.Attr
	group string
}

// Enabled: what next takes, and, while a session monitors, informational
// and more severe records even if next discards them (the lab without -v).
func (h *monitorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || (l >= slog.LevelInfo && h.m.n.Load() > 0)
}

func (h *monitorHandler) Handle(ctx context.Context, r slog.Record) error {
	next := h.next.Enabled(ctx, r.Level)
	if h.m.n.Load() > 0 && (next || r.Level >= slog.LevelInfo) {
		h.m.publish(time.Now(), h.format(r))
	}
	if !next {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *monitorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *monitorHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = name
	c.next = h.next.WithGroup(name)
	return &c
}

// format renders a record as IOS shows a log line on a terminal: the
// message (a %FACILITY-SEVERITY-MNEMONIC: text where the daemon logs one),
// then its attributes as key=value, one line, bounded.
func (h *monitorHandler) format(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format("*Jan _2 15:04:05.000: "))
	msg := r.Message
	if !strings.HasPrefix(msg, "%") {
		msg = r.Level.String() + ": " + msg
	}
	b.WriteString(msg)
	add := func(a slog.Attr) bool {
		if a.Key == "mnemonic" {
			return true
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return b.Len() < monitorMaxLen
	}
	for _, a := range h.attrs {
		if !add(a) {
			break
		}
	}
	r.Attrs(add)
	s := strings.NewReplacer("\n", " ", "\r", " ").Replace(b.String())
	if len(s) > monitorMaxLen {
		s = s[:monitorMaxLen] + "..."
	}
	return s
}

// Monitor returns the server's log fan-out: wrap the daemon's log handler
// with Monitor().Handler so that terminal monitor shows its lines.
func (s *Server) Monitor() *Monitor { return &s.monitor }

// streamMonitor serves a ?monitor connection: log lines until the client
// closes it or ctx ends.
func (s *Server) streamMonitor(ctx context.Context, c net.Conn, rd *bufio.Reader, w *bufio.Writer, id uint64, lim Limits) {
	sub, err := s.monitor.subscribe()
	if err != nil {
		c.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
		w.Write(encodeResponse(&WireResponse{V: Version, ID: id, Error: err.Error()}))
		w.Flush()
		return
	}
	defer s.monitor.unsubscribe(sub)
	closed := make(chan struct{})
	go func() { // the client closes the connection to stop
		c.SetReadDeadline(time.Time{})
		for {
			if _, err := rd.ReadByte(); err != nil {
				close(closed)
				return
			}
		}
	}()
	send := func(text string) bool {
		c.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
		w.Write(encodeResponse(&WireResponse{V: Version, ID: id, OK: true, Text: text}))
		if err := w.Flush(); err != nil {
			s.stats.writeTO.Add(1)
			return false
		}
		return true
	}
	if !send("") { // subscribed
		return
	}
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			return
		case line := <-sub.ch:
			if d := sub.dropped.Load(); d > reported {
				if !send(fmt.Sprintf("%% %d log lines dropped (terminal monitor too slow)", d-reported)) {
					return
				}
				reported = d
			}
			if !send(line) {
				return
			}
		}
	}
}

// TerminalState is the data of `terminal monitor` and `terminal no
// monitor`: the interactive shell starts or stops streaming the log lines.
type TerminalState struct {
	Monitor bool `json:"terminal_monitor"`
}

// ParseTerminalState returns the terminal state a response carries.
func ParseTerminalState(resp *WireResponse) (TerminalState, bool) {
	var st struct {
		Monitor *bool `json:"terminal_monitor"`
	}
	if resp == nil || !resp.OK || len(resp.Data) == 0 || resp.Data[0] != '{' {
		return TerminalState{}, false
	}
	if err := json.Unmarshal(resp.Data, &st); err != nil || st.Monitor == nil {
		return TerminalState{}, false
	}
	return TerminalState{Monitor: *st.Monitor}, true
}

// HandleTerminal registers IOS's terminal commands: `terminal length N`
// (the interactive shell pages at N lines, 0 turns paging off, pager.go;
// `-c` and scripts never page, so the `terminal length 0` RANCID,
// Oxidized and Netmiko send first changes nothing for them),
// `terminal width N` (accepted: the CLI does not wrap),
// `terminal monitor` and `terminal no monitor` (the
// interactive shell streams the daemon's log lines, see Monitor).
func (s *Server) HandleTerminal() {
	ok := func(context.Context, *Request) (*Reply, error) { return &Reply{}, nil }
	s.HandleReadOnly("terminal length NUMBER", "Set number of lines on a screen (0: no paging; the interactive CLI pages with --More--)", ok)
	s.HandleReadOnly("terminal width NUMBER", "Set width of the display terminal (accepted; the CLI does not wrap)", ok)
	s.HandleReadOnly("terminal monitor", "Copy debug output to the current terminal line (the daemon's log lines)",
		func(context.Context, *Request) (*Reply, error) {
			return &Reply{Data: TerminalState{Monitor: true}}, nil
		})
	s.HandleReadOnly("terminal no monitor", "Stop copying the daemon's log lines to this terminal",
		func(context.Context, *Request) (*Reply, error) {
			return &Reply{Data: TerminalState{Monitor: false}}, nil
		})
}

// monitorStream reads the daemon's log lines on its own connection
// (CmdMonitor) into out until stop is called; out is never waited for:
// lines a full out cannot take are dropped.
func monitorStream(path string, out chan<- string) (stop func(), err error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, dialError(path, err)
	}
	b, _ := json.Marshal(&WireRequest{V: Version, Cmd: CmdMonitor})
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(append(b, '\n')); err != nil {
		conn.Close()
		return nil, fmt.Errorf("terminal monitor: %w", err)
	}
	rd := bufio.NewReaderSize(conn, 4096)
	first, err := readResponse(rd)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("terminal monitor: %w", err)
	}
	if !first.OK {
		conn.Close()
		return nil, errors.New(first.Error)
	}
	conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := readResponse(rd)
			if err != nil {
				return
			}
			select {
			case out <- r.Text:
			default:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { conn.Close() })
		<-done
	}, nil
}

func readResponse(rd *bufio.Reader) (*WireResponse, error) {
	line, err := readLine(rd, MaxResponse)
	if err != nil {
		return nil, err
	}
	var r WireResponse
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
