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
	"strconv"
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
func LogFacility(l *slog.Logger, facility string, sev Severity, mnemonic, format string, args ...any) string {
	var buf [256]byte
	b := append(buf[:0], '%')
	b = append(b, facility...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(sev), 10)
	b = append(b, '-')
	b = append(b, mnemonic...)
	b = append(b, ": "...)
	msg := string(fmt.Appendf(b, format, args...))
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
