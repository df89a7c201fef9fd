// Package ratelog bounds what hostile input can make a daemon log: a
// slog.Handler wrapper that truncates every message and attribute value to
// a size bound and rate-limits records per message text (or per key a
// Keyed handler names, such as the sender) with a token bucket, reporting
// how many records it suppressed on the next one it lets through (SPEC
// S6). It reads no clock of its own and starts no goroutine:
// time comes from each record's Time, or from an injected clock.
package ratelog

import (
	"context"
	"encoding"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Options configures a Handler; zero fields take the defaults.
type Options struct {
	// MaxLen bounds the message and every attribute value, in bytes;
	// longer ones are cut and marked "…(+N bytes)". Default 256.
	MaxLen int
	// MaxAttrs bounds the attributes of one record (groups count their
	// members); the rest are replaced by one "attrs_dropped" attribute.
	// Default 32.
	MaxAttrs int
	// Rate is the sustained number of records per second let through for
	// one message text, Burst the number let through at once. Defaults 1
	// and 10.
	Rate  float64
	Burst int
	// MaxKeys bounds the message texts (and keys) tracked at once; beyond it, new
	// texts share one bucket. Default 1024.
	MaxKeys int
	// Now, when set, is the clock of the buckets; nil: each record's Time
	// (slog.Logger always sets it; records without one refill nothing).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxLen <= 0 {
		o.MaxLen = 256
	}
	if o.MaxAttrs <= 0 {
		o.MaxAttrs = 32
	}
	if o.Rate <= 0 {
		o.Rate = 1
	}
	if o.Burst <= 0 {
		o.Burst = 10
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1024
	}
	return o
}

// SuppressedKey is the attribute added to a record let through after
// others with the same message were suppressed: their count.
const SuppressedKey = "suppressed"

// overflowKey is the bucket shared by message texts beyond MaxKeys.
const overflowKey = "\x00overflow"

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64
}

// limiter is shared by a Handler and every handler derived from it with
// WithAttrs and WithGroup, so that a logger's children share its budget.
type limiter struct {
	mu      sync.Mutex
	o       Options
	buckets map[string]*bucket
	total   uint64 // records suppressed since New
}

// Handler is the bounding slog.Handler; safe for concurrent use.
type Handler struct {
	next slog.Handler
	lim  *limiter
	key  string // the bucket of every record (Keyed); "": each record's message
}

// New wraps next.
func New(next slog.Handler, o Options) *Handler {
	o = o.withDefaults()
	return &Handler{next: next, lim: &limiter{o: o, buckets: map[string]*bucket{}}}
}

// Keyed returns a handler that spends the bucket key for every record,
// whatever its message, sharing h's buckets, bounds and count: for lines
// whose text varies with what the sender chose (a group number, a
// reason), keyed by the sender so that it cannot buy a fresh budget with
// each variation, and does not spend another sender's.
func (h *Handler) Keyed(key string) *Handler {
	return &Handler{next: h.next, lim: h.lim, key: "\x00key " + key}
}

// Suppressed returns how many records the handler (and the handlers
// derived from it) suppressed so far.
func (h *Handler) Suppressed() uint64 {
	h.lim.mu.Lock()
	defer h.lim.mu.Unlock()
	return h.lim.total
}

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs returns a handler whose attributes are bounded too.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, 0, len(as))
	n := 0
	for _, a := range as {
		out = append(out, h.lim.bound(a, &n))
	}
	return &Handler{next: h.next.WithAttrs(out), lim: h.lim, key: h.key}
}

// WithGroup returns a handler that qualifies later attributes.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(h.lim.cut(name)), lim: h.lim, key: h.key}
}

// Handle lets r through, bounded, or suppresses it.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	at := r.Time
	if h.lim.o.Now != nil {
		at = h.lim.o.Now()
	}
	key := h.key
	if key == "" {
		key = r.Message
	}
	suppressed, ok := h.lim.take(key, at)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, h.lim.cut(r.Message), r.PC)
	n, dropped := 0, 0
	r.Attrs(func(a slog.Attr) bool {
		if n >= h.lim.o.MaxAttrs {
			dropped++
			return true
		}
		out.AddAttrs(h.lim.bound(a, &n))
		return true
	})
	if dropped > 0 {
		out.AddAttrs(slog.Int("attrs_dropped", dropped))
	}
	if suppressed > 0 {
		out.AddAttrs(slog.Uint64(SuppressedKey, suppressed))
	}
	return h.next.Handle(ctx, out)
}

// take spends a token of msg's bucket; it returns the records suppressed
// since the last one let through.
func (l *limiter) take(msg string, at time.Time) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[msg]
	if b == nil {
		if len(l.buckets) >= l.o.MaxKeys {
			l.evictIdle(at)
		}
		if len(l.buckets) >= l.o.MaxKeys {
			msg = overflowKey
			b = l.buckets[msg]
		}
		if b == nil {
			b = &bucket{tokens: float64(l.o.Burst), last: at}
			l.buckets[msg] = b
		}
	}
	if d := at.Sub(b.last); d > 0 {
		b.tokens = min(float64(l.o.Burst), b.tokens+d.Seconds()*l.o.Rate)
		b.last = at
	}
	if b.tokens < 1 {
		b.suppressed++
		l.total++
		return 0, false
	}
	b.tokens--
	s := b.suppressed
	b.suppressed = 0
	return s, true
}

// evictIdle forgets the buckets that are full again: the sender has been
// quiet for Burst/Rate seconds. One that owes a count of suppressed
// records loses only the note on its next line (Suppressed keeps it):
// with keys per sender (Keyed), senders that were once limited would
// otherwise fill MaxKeys for good and send every new one to the shared
// overflow bucket.
func (l *limiter) evictIdle(at time.Time) {
	for k, b := range l.buckets {
		if k != overflowKey && b.tokens+at.Sub(b.last).Seconds()*l.o.Rate >= float64(l.o.Burst) {
			delete(l.buckets, k)
		}
	}
}

// cut bounds s to MaxLen bytes, marking what it dropped.
func (l *limiter) cut(s string) string {
	if len(s) <= l.o.MaxLen {
		return s
	}
	k := l.o.MaxLen
	for k > 0 && k < len(s) && s[k]&0xc0 == 0x80 {
		k-- // do not split a UTF-8 sequence
	}
	return s[:k] + "…(+" + strconv.Itoa(len(s)-k) + " bytes)"
}

// bound bounds one attribute; n counts the attributes so far.
func (l *limiter) bound(a slog.Attr, n *int) slog.Attr {
	*n++
	a.Key = l.cut(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, l.cut(v.String()))
	case slog.KindGroup:
		var out []any
		dropped := 0
		for _, g := range v.Group() {
			if *n >= l.o.MaxAttrs {
				dropped++
				continue
			}
			out = append(out, l.bound(g, n))
		}
		if dropped > 0 {
			out = append(out, slog.Int("attrs_dropped", dropped))
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		s := textOf(v.Any())
		if len(s) > l.o.MaxLen {
			return slog.String(a.Key, l.cut(s))
		}
		return slog.Attr{Key: a.Key, Value: v}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// textOf is how a handler would print x, near enough to measure it. A
// method that panics (a nil pointer's Error) yields "".
func textOf(x any) (s string) {
	defer func() {
		if recover() != nil {
			s = ""
		}
	}()
	switch x := x.(type) {
	case error:
		return x.Error()
	case encoding.TextMarshaler:
		b, err := x.MarshalText()
		if err != nil {
			return ""
		}
		return string(b)
	case fmt.Stringer:
		return x.String()
	case []byte:
		return string(x)
	}
	return fmt.Sprint(x)
}
