package syslog

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// TextHandler writes the lines slog.TextHandler writes, byte for byte,
// at less cost for the records a daemon logs most (a key server logs a
// line per registration: issue 18): a time, a level, a message and
// attributes of the kinds string, int64, uint64, float64, bool, duration
// and time, none with an empty key. It formats such a record into one
// buffer of its own under its lock and writes it with one Write before
// Handle returns, as slog.TextHandler does; it does not batch or delay a
// line. Any other record (an attribute of kind any, group or LogValuer,
// or an empty key), and every handler derived by WithAttrs or WithGroup,
// is slog.TextHandler's, writing to w under the same lock.
type TextHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Leveler
	st    *textState // guarded by mu
	slow  slog.Handler
}

// textState is what a TextHandler keeps from one line to the next.
type textState struct {
	buf []byte
	// The time of the last line as appendRFC3339Millis wrote it, when its
	// year had 4 digits: the second (Unix) and location it is of, what
	// precedes the milliseconds ("2006-01-02T15:04:05.") and what follows
	// them (the zone: "Z", "+01:00").
	sec    int64
	loc    *time.Location
	headOK bool
	head   [len("2006-01-02T15:04:05.")]byte
	zone   []byte
}

// maxKeep bounds the buffer a TextHandler keeps between lines; a longer
// line's buffer is dropped after its write (slog's buffer pool keeps at
// most 16 KiB).
const maxKeep = 16 << 10

// NewTextHandler is slog.NewTextHandler(w, opts) for a daemon's stderr.
// With opts.AddSource or opts.ReplaceAttr it is slog.NewTextHandler.
func NewTextHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	if opts.AddSource || opts.ReplaceAttr != nil {
		return slog.NewTextHandler(w, opts)
	}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	mu := &sync.Mutex{}
	return &TextHandler{
		mu:    mu,
		w:     w,
		level: level,
		st:    &textState{},
		slow:  slog.NewTextHandler(lockedWriter{mu, w}, opts),
	}
}

// lockedWriter is w under mu: the slow path's lines and the fast path's
// never interleave, whatever w is.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (t *TextHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= t.level.Level()
}

func (t *TextHandler) WithAttrs(as []slog.Attr) slog.Handler { return t.slow.WithAttrs(as) }

func (t *TextHandler) WithGroup(name string) slog.Handler { return t.slow.WithGroup(name) }

// Handle writes r as one line with one Write.
func (t *TextHandler) Handle(ctx context.Context, r slog.Record) error {
	fast := true
	r.Attrs(func(a slog.Attr) bool {
		fast = a.Key != "" && fastKind(a.Value.Kind())
		return fast
	})
	if !fast {
		return t.slow.Handle(ctx, r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st
	b := st.appendRecord(st.buf[:0], r)
	_, err := t.w.Write(b)
	if cap(b) > maxKeep {
		b = nil
	}
	st.buf = b
	return err
}

// fastKind: appendTextValue formats values of kind k as slog.TextHandler
// does, calling no code of the value's.
func fastKind(k slog.Kind) bool {
	switch k {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64,
		slog.KindBool, slog.KindDuration, slog.KindTime:
		return true
	}
	return false
}

// appendRecord appends r as slog.TextHandler with no option but Level
// writes it, for a record whose attributes all have a key and a fastKind.
func (st *textState) appendRecord(b []byte, r slog.Record) []byte {
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = st.appendTime(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendTextString(b, r.Level.String())
	b = append(b, " msg="...)
	b = appendTextString(b, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b = append(b, ' ')
		b = appendTextString(b, a.Key)
		b = append(b, '=')
		b = appendTextValue(b, a.Value)
		return true
	})
	return append(b, '\n')
}

// appendTextValue is slog's appendTextValue for the fastKinds.
func appendTextValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendTextString(b, v.String())
	case slog.KindTime:
		return appendRFC3339Millis(b, v.Time())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return append(b, v.Duration().String()...)
	}
	panic("syslog: appendTextValue of kind " + v.Kind().String())
}

// appendRFC3339Millis is slog's: RFC 3339 with milliseconds, in t's
// location.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// As slog does: format with time.RFC3339Nano (optimized), after
	// adding 1/10 ms so that there are exactly 4 digits after the
	// period, and drop the fourth.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// appendTime is appendRFC3339Millis(b, t), formatting only the
// milliseconds when t is in the second and location of the last time.
func (st *textState) appendTime(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	if st.headOK && sec == st.sec && loc == st.loc {
		ms := t.Nanosecond() / 1e6
		b = append(b, st.head[:]...)
		b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
		return append(b, st.zone...)
	}
	n := len(b)
	b = appendRFC3339Millis(b, t)
	// A zone's offset changes on a whole second, never within one; so
	// does the text before the milliseconds.
	head := len(st.head)
	st.headOK = false
	if y := t.Year(); y >= 0 && y <= 9999 && len(b) > n+head+3 && b[n+head-1] == '.' {
		st.sec, st.loc, st.headOK = sec, loc, true
		copy(st.head[:], b[n:])
		st.zone = append(st.zone[:0], b[n+head+3:]...)
	}
	return b
}

// appendTextString appends s as slog.TextHandler writes a key or a
// string: quoted as strconv.Quote does when needsQuoting, else as is.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return appendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuoting is slog's: s is empty, or has a space, '=', '"', an ASCII
// control character other than DEL, invalid UTF-8, or a Unicode space or
// non-printing character.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		switch textByte[s[i]] {
		case plain, backslash, del:
			i++
			continue
		case spaceEq, dquote, control:
			return true
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// The classes of bytes in a key or a string value: whether needsQuoting
// asks for quotes (slog's safeSet, JSON's, holds printable ASCII and DEL
// but '"' and '\\'; needsQuoting also quotes ' ' and '=', and not '\\'),
// and what strconv.Quote makes of them.
const (
	plain     = iota // no quotes; as is in quotes
	backslash        // no quotes; escaped in quotes
	del              // no quotes; "\x7f" in quotes
	spaceEq          // ' ', '=': quotes; as is in quotes
	dquote           // quotes; escaped in quotes
	control          // below ' ': quotes; "\n", "\x00" in quotes
	nonASCII         // depends on the rune
)

var textByte = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == '\\':
			t[c] = backslash
		case c == 0x7f:
			t[c] = del
		case c == ' ' || c == '=':
			t[c] = spaceEq
		case c == '"':
			t[c] = dquote
		case c < ' ':
			t[c] = control
		case c >= utf8.RuneSelf:
			t[c] = nonASCII
		}
	}
	return t
}()

// appendQuote is strconv.AppendQuote(b, s), copying runs of printable
// ASCII at once; from the first control character, DEL or non-ASCII byte
// on it is strconv's (each rune is quoted on its own, and such a byte
// starts a rune in s as in the rest of s).
func appendQuote(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch textByte[c] {
		case plain, spaceEq:
			continue
		case backslash, dquote:
			b = append(b, s[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
			continue
		}
		b = append(b, s[start:i]...)
		n := len(b)
		b = strconv.AppendQuote(b, s[i:])
		return append(b[:n], b[n+1:]...) // without strconv's opening quote
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
