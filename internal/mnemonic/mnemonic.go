// Package mnemonic formats groupvpn's operator log lines the way GET VPN
// operators grep for them: "%FACILITY-SEVERITY-MNEMONIC: text" (SPEC O3),
// emitted through log/slog so any handler (stderr, RFC 5424 syslog) gets
// them with structured attributes beside the text. It does no I/O of its
// own, so that the sans-IO roles (internal/ks) can log with it; the
// syslog sinks are internal/syslog, which re-exports these names.
package mnemonic

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Severity is the IOS severity digit (0 emergencies ... 7 debugging).
type Severity int

const (
	Alert   Severity = 1
	Crit    Severity = 2
	Err     Severity = 3
	Warning Severity = 4
	Notice  Severity = 5
	Info    Severity = 6
)

func (s Severity) level() slog.Level {
	switch {
	case s <= Err:
		return slog.LevelError
	case s == Warning:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// Log emits "%GDOI-<sev>-<mnemonic>: <text>" with the mnemonic and any attrs.
func Log(l *slog.Logger, sev Severity, mnemonic, format string, args ...any) string {
	return LogFacility(l, "GDOI", sev, mnemonic, format, args...)
}

// LogFacility is Log for another facility (e.g. "SYS").
//
// The line is formatted once, on the stack when it is short, and handed to
// l's handler as a record without a source position (a key server logs a
// line per registration: issue 18; no groupvpn handler sets AddSource).
// A format whose verbs and arguments appendSimple handles (see there) is
// formatted without fmt.
func LogFacility(l *slog.Logger, facility string, sev Severity, mnemonic, format string, args ...any) string {
	var buf [256]byte
	b := append(buf[:0], '%')
	b = append(b, facility...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(sev), 10)
	b = append(b, '-')
	b = append(b, mnemonic...)
	b = append(b, ": "...)
	line, ok := appendSimple(b, format, args)
	if !ok {
		line = fmt.Appendf(b, format, args...)
	}
	return emit(l, sev, mnemonic, line)
}

// LogText is Log of a text its caller formatted: "%GDOI-<sev>-<mnemonic>:
// <text>". text is copied, not kept, so a caller may format it on its
// stack: a key server's line per registration then boxes no argument
// into ...any (issue 18).
func LogText(l *slog.Logger, sev Severity, mnemonic string, text []byte) string {
	var buf [256]byte
	b := append(buf[:0], "%GDOI-"...)
	b = strconv.AppendInt(b, int64(sev), 10)
	b = append(b, '-')
	b = append(b, mnemonic...)
	b = append(b, ": "...)
	return emit(l, sev, mnemonic, append(b, text...))
}

// emit hands the formatted line to l's handler and returns it.
func emit(l *slog.Logger, sev Severity, mnemonic string, line []byte) string {
	msg := string(line)
	if l == nil {
		return msg
	}
	ctx := context.Background()
	if h := l.Handler(); h.Enabled(ctx, sev.level()) {
		r := slog.NewRecord(time.Now(), sev.level(), msg, 0)
		r.AddAttrs(slog.String("mnemonic", mnemonic))
		_ = h.Handle(ctx, r) // as slog.Logger does: a handler's error is its own
	}
	return msg
}

// appendSimple appends what fmt.Appendf(b, format, args...) appends when
// format's verbs are all %s or %v of a string, a valid netip.Addr or
// netip.AddrPort, %d or %v of an int, int64, uint32 or uint64, or %%,
// with one argument per verb; ok is false (and b undefined) otherwise,
// for fmt to do.
func appendSimple(b []byte, format string, args []any) (_ []byte, ok bool) {
	n := 0 // arguments used
	for {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			b = append(b, format...)
			break
		}
		b = append(b, format[:i]...)
		if i+1 == len(format) {
			return b, false
		}
		verb := format[i+1]
		format = format[i+2:]
		if verb == '%' {
			b = append(b, '%')
			continue
		}
		if n == len(args) {
			return b, false
		}
		a := args[n]
		n++
		switch v := a.(type) {
		case string:
			if verb != 's' && verb != 'v' {
				return b, false
			}
			b = append(b, v...)
		case netip.Addr:
			if (verb != 's' && verb != 'v') || !v.IsValid() {
				return b, false
			}
			b = v.AppendTo(b)
		case netip.AddrPort:
			if (verb != 's' && verb != 'v') || !v.Addr().IsValid() {
				return b, false
			}
			b = v.AppendTo(b)
		case int:
			if verb != 'd' && verb != 'v' {
				return b, false
			}
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			if verb != 'd' && verb != 'v' {
				return b, false
			}
			b = strconv.AppendInt(b, v, 10)
		case uint32:
			if verb != 'd' && verb != 'v' {
				return b, false
			}
			b = strconv.AppendUint(b, uint64(v), 10)
		case uint64:
			if verb != 'd' && verb != 'v' {
				return b, false
			}
			b = strconv.AppendUint(b, v, 10)
		default:
			return b, false
		}
	}
	return b, n == len(args)
}
