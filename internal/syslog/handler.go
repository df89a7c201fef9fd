package syslog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Format is the wire format of a syslog message.
type Format int

const (
	// RFC5424 is "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG"
	// (RFC 5424 §6), for a syslog server over UDP or TCP, and files.
	RFC5424 Format = iota
	// RFC3164 is "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG", the format glibc's
	// syslog(3) writes to /dev/log and the one rsyslog's imuxsock (and
	// journald) parse there: no HOSTNAME, the local daemon adds its own.
	RFC3164
)

func (f Format) String() string {
	if f == RFC3164 {
		return "rfc3164"
	}
	return "rfc5424"
}

// MaxMessage bounds one message on the wire in bytes (RFC 5424 §6.1:
// receivers should accept 2048). A longer MSG is cut at a character
// boundary; log lines caused by network input stay bounded.
const MaxMessage = 2048

// Options configure a Handler. Zero fields take defaults.
type Options struct {
	App      string       // APP-NAME / TAG, e.g. "isakmpd"
	Level    slog.Leveler // default slog.LevelInfo
	Format   Format       // default RFC5424
	Hostname string       // default the OS host name; see Handler.SetHostname
	PID      int          // PROCID; default os.Getpid()
	Facility int          // RFC 5424 §6.2.1 code; 0 (kern, not ours) is local7
}

// Handler is a slog.Handler that writes one syslog message per record,
// always on one line: RFC 5424
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
//
// or RFC 3164 (Format), with facility local7 (23, where IOS logs) and the
// severity of the record (the IOS digit of a "%GDOI-5-..." text wins);
// MSGID is the record's "mnemonic" attribute ("-" when absent) and MSG the
// message followed by the other attributes as key=value. Control
// characters (a newline, a tab) become spaces, so a message never spans
// lines and a receiver never splits it.
type Handler struct {
	mu    *sync.Mutex
	w     io.Writer
	host  *atomic.Pointer[string] // shared by WithAttrs copies
	fac   *atomic.Int32           // likewise
	o     Options
	attrs []slog.Attr
}

// Facility local7 (RFC 5424 §6.2.1), where IOS logs by default.
const facility = 23

// NewHandler writes to w (a syslog socket or a file).
func NewHandler(w io.Writer, o Options) *Handler {
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.App == "" {
		o.App = "groupvpn"
	}
	h := &Handler{mu: &sync.Mutex{}, w: w, host: &atomic.Pointer[string]{}, fac: &atomic.Int32{}, o: o}
	h.SetHostname(o.Hostname)
	h.SetFacility(o.Facility)
	return h
}

// SetFacility sets the facility of the following messages (0-23; 0 and
// anything out of range is local7).
func (h *Handler) SetFacility(f int) {
	if f <= 0 || f > 23 {
		f = facility
	}
	h.fac.Store(int32(f))
}

// SetHostname sets the HOSTNAME of the following messages: the configured
// `hostname`; "" means the OS host name.
func (h *Handler) SetHostname(name string) {
	if name == "" {
		name, _ = os.Hostname()
	}
	name = token(name, 255)
	h.host.Store(&name)
}

// Hostname is the HOSTNAME the handler writes.
func (h *Handler) Hostname() string { return *h.host.Load() }

// token makes s an RFC 5424 header field: printable US-ASCII (33..126),
// at most max bytes, "-" when empty (the NILVALUE).
func token(s string, max int) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// oneLine replaces control characters (newline, carriage return, tab,
// DEL) and invalid UTF-8 by spaces, collapsing a CR LF into one.
func oneLine(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] == 127 || s[i] >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	prevCR := false
	for _, r := range s {
		switch {
		case r == '\n' && prevCR:
		case r < 32 || r == 127 || r == utf8.RuneError:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
		prevCR = r == '\r'
	}
	return b.String()
}

// cut shortens s to at most n bytes at a character boundary.
func cut(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Dial opens a syslog destination: udp://HOST:PORT and tcp://HOST:PORT
// (RFC 5424; over TCP one message per line, RFC 6587 §3.4.2), unix:///PATH
// (datagram, e.g. /dev/log: RFC 3164 as syslog(3) writes it) or
// file:///PATH (RFC 5424, appended). A "?format=rfc5424" or
// "?format=rfc3164" query chooses the format instead.
func Dial(dest string) (*Destination, error) {
	u, err := url.Parse(dest)
	if err != nil {
		return nil, fmt.Errorf("syslog destination %q: %w", dest, err)
	}
	f := RFC5424
	if u.Scheme == "unix" {
		f = RFC3164
	}
	switch q := u.Query().Get("format"); q {
	case "":
	case "rfc5424":
		f = RFC5424
	case "rfc3164":
		f = RFC3164
	default:
		return nil, fmt.Errorf("syslog destination %q: format must be rfc5424 or rfc3164, not %q", dest, q)
	}
	w, err := open(u, dest)
	if err != nil {
		return nil, err
	}
	return &Destination{dest: dest, url: u, format: f, w: w}, nil
}

func open(u *url.URL, dest string) (io.WriteCloser, error) {
	var w io.WriteCloser
	var err error
	switch u.Scheme {
	case "udp", "tcp":
		w, err = net.Dial(u.Scheme, u.Host)
	case "unix":
		w, err = net.Dial("unixgram", u.Path)
	case "file":
		w, err = os.OpenFile(u.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	default:
		return nil, fmt.Errorf("syslog destination %q: scheme must be udp, tcp, unix or file", dest)
	}
	if err != nil {
		return nil, fmt.Errorf("syslog destination %q: %w", dest, err)
	}
	return w, nil
}

// Destination is an open syslog destination that can be reopened (SPEC
// D4: a refresh reopens logging, so a rotated file or a restarted syslog
// daemon is picked up).
type Destination struct {
	dest   string
	url    *url.URL
	format Format
	mu     sync.Mutex
	w      io.WriteCloser
}

// Format is the message format the destination expects.
func (d *Destination) Format() Format { return d.format }

// WriteTimeout bounds how long a message may wait for a socket: a syslog
// daemon that stops reading (a full /dev/log queue, a stalled TCP server)
// costs the message, never a stuck daemon.
const WriteTimeout = 250 * time.Millisecond

// Write sends one message.
func (d *Destination) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.w.(net.Conn); ok {
		c.SetWriteDeadline(time.Now().Add(WriteTimeout))
	}
	return d.w.Write(p)
}

// Reopen opens the destination again and, once that worked, closes the
// old connection or file; on failure the old one stays in use.
func (d *Destination) Reopen() error {
	w, err := open(d.url, d.dest)
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

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.o.Level.Level() }

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
	line := h.Line(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line)
	return err
}

// Line renders the record as the handler writes it, ending in "\n".
func (h *Handler) Line(r slog.Record) string {
	sev, msgid, msg, ts := h.fields(r)
	var head string
	pri := strconv.Itoa(int(h.fac.Load())*8 + sev)
	app := token(h.o.App, 48)
	if h.o.Format == RFC3164 {
		// RFC 3164 §4.1.2: local time, day of month padded with a space;
		// TAG[PID]: as syslog(3) writes it (TAG at most 32 characters).
		head = "<" + pri + ">" + ts.Format(time.Stamp) + " " + cut(app, 32) + "[" + strconv.Itoa(h.o.PID) + "]: "
	} else {
		// RFC 5424 §6.2.3: TIME-SECFRAC is at most 6 digits.
		head = "<" + pri + ">1 " + ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00") + " " +
			h.Hostname() + " " + app + " " + strconv.Itoa(h.o.PID) + " " + msgid + " - "
	}
	return head + cut(msg, MaxMessage-len(head)-1) + "\n"
}

// fields are the severity, MSGID, MSG (on one line) and time of r.
func (h *Handler) fields(r slog.Record) (sev int, msgid, msg string, ts time.Time) {
	msgid = "-"
	var kv []string
	add := func(a slog.Attr) bool {
		if a.Key == "mnemonic" {
			msgid = token(a.Value.String(), 32)
		} else {
			kv = append(kv, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	sev = severityOf(r.Level)
	if strings.HasPrefix(r.Message, "%") {
		// "%GDOI-5-...": the IOS severity digit is authoritative.
		if parts := strings.SplitN(r.Message, "-", 3); len(parts) == 3 && len(parts[1]) == 1 && parts[1][0] >= '0' && parts[1][0] <= '7' {
			sev = int(parts[1][0] - '0')
		}
	}
	ts = r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	msg = r.Message
	if len(kv) > 0 {
		msg += " " + strings.Join(kv, " ")
	}
	return sev, msgid, strings.TrimRight(oneLine(msg), " "), ts
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

// Handle gives each enabled handler r. With more than one, r is cloned
// once first: each gets its own copy, and an attribute one adds goes to
// an array of its own (slog.Record.Clone), never into another's.
func (f Fanout) Handle(ctx context.Context, r slog.Record) error {
	if len(f) > 1 {
		r = r.Clone()
	}
	var first error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r); err != nil && first == nil {
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
