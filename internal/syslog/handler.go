package syslog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Handler is a slog.Handler that writes RFC 5424 messages
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
//
// with facility local7 (23, where IOS logs) and the severity of the
// record; MSGID is the record's "mnemonic" attribute ("-" when absent) and
// MSG the message followed by the other attributes as key=value.
type Handler struct {
	mu       *sync.Mutex
	w        io.Writer
	hostname string
	app      string
	level    slog.Leveler
	attrs    []slog.Attr
}

// Facility local7 (RFC 5424 §6.2.1).
const facility = 23

// NewHandler writes to w (a syslog socket or a file).
func NewHandler(w io.Writer, app string, level slog.Leveler) *Handler {
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	if level == nil {
		level = slog.LevelInfo
	}
	return &Handler{mu: &sync.Mutex{}, w: w, hostname: host, app: app, level: level}
}

// Dial opens a syslog destination: udp://HOST:PORT, tcp://HOST:PORT
// (octet-counted framing is not used; one message per line), unix:///PATH
// (datagram, e.g. /dev/log) or file:///PATH (appended).
func Dial(dest string) (*Destination, error) {
	w, err := open(dest)
	if err != nil {
		return nil, err
	}
	return &Destination{dest: dest, w: w}, nil
}

func open(dest string) (io.WriteCloser, error) {
	u, err := url.Parse(dest)
	if err != nil {
		return nil, fmt.Errorf("syslog destination %q: %w", dest, err)
	}
	switch u.Scheme {
	case "udp", "tcp":
		return net.Dial(u.Scheme, u.Host)
	case "unix":
		return net.Dial("unixgram", u.Path)
	case "file":
		return os.OpenFile(u.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	}
	return nil, fmt.Errorf("syslog destination %q: scheme must be udp, tcp, unix or file", dest)
}

// Destination is an open syslog destination that can be reopened (SPEC
// D4: a refresh reopens logging, so a rotated file or a restarted syslog
// daemon is picked up).
type Destination struct {
	dest string
	mu   sync.Mutex
	w    io.WriteCloser
}

// Write sends one message.
func (d *Destination) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.w.Write(p)
}

// Reopen opens the destination again and, once that worked, closes the
// old connection or file; on failure the old one stays in use.
func (d *Destination) Reopen() error {
	w, err := open(d.dest)
	if err != nil {
		return err
	}
	d.mu.Lock()
	old := d.w
	d.w = w
	d.mu.Unlock()
	return old.Close()
}

// Close closes the destination.
func (d *Destination) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.w.Close()
}

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return &c
}

func (h *Handler) WithGroup(string) slog.Handler { return h }

func severityOf(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	msgid := "-"
	var kv []string
	add := func(a slog.Attr) bool {
		if a.Key == "mnemonic" {
			msgid = a.Value.String()
		} else {
			kv = append(kv, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	sev := severityOf(r.Level)
	if strings.HasPrefix(r.Message, "%") {
		// "%GDOI-5-...": the IOS severity digit is authoritative.
		if parts := strings.SplitN(r.Message, "-", 3); len(parts) == 3 && len(parts[1]) == 1 && parts[1][0] >= '0' && parts[1][0] <= '7' {
			sev = int(parts[1][0] - '0')
		}
	}
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	msg := r.Message
	if len(kv) > 0 {
		msg += " " + strings.Join(kv, " ")
	}
	line := fmt.Sprintf("<%d>1 %s %s %s %d %s - %s\n", facility*8+sev, ts.UTC().Format(time.RFC3339Nano),
		h.hostname, h.app, os.Getpid(), msgid, msg)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line)
	return err
}

// Fanout sends every record to several handlers (stderr and syslog).
type Fanout []slog.Handler

func (f Fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f Fanout) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (f Fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(Fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f Fanout) WithGroup(name string) slog.Handler {
	out := make(Fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
