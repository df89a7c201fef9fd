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
func LogFacility(l *slog.Logger, facility string, sev Severity, mnemonic, format string, args ...any) string {
	msg := fmt.Sprintf("%%%s-%d-%s: %s", facility, int(sev), mnemonic, fmt.Sprintf(format, args...))
	if l != nil {
		l.LogAttrs(context.Background(), sev.level(), msg, slog.String("mnemonic", mnemonic))
	}
	return msg
}
