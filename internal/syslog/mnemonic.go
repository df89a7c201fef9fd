// Package syslog is where groupvpn's log lines go besides stderr: RFC 5424
// to a remote syslog, RFC 3164 to the local socket, a file (the sinks). The
// "%FACILITY-SEVERITY-MNEMONIC: text" lines themselves (SPEC O3) are made
// by internal/mnemonic, which does no I/O; its names are re-exported here.
package syslog

import (
	"log/slog"

	"github.com/groupvpn/groupvpn/internal/mnemonic"
)

// Severity is the IOS severity digit (0 emergencies ... 7 debugging).
type Severity = mnemonic.Severity

const (
	Alert   = mnemonic.Alert
	Crit    = mnemonic.Crit
	Err     = mnemonic.Err
	Warning = mnemonic.Warning
	Notice  = mnemonic.Notice
	Info    = mnemonic.Info
)

// Log emits "%GDOI-<sev>-<name>: <text>" (mnemonic.Log).
func Log(l *slog.Logger, sev Severity, name, format string, args ...any) string {
	return mnemonic.Log(l, sev, name, format, args...)
}

// LogFacility is Log for another facility, e.g. "SYS" (mnemonic.LogFacility).
func LogFacility(l *slog.Logger, facility string, sev Severity, name, format string, args ...any) string {
	return mnemonic.LogFacility(l, facility, sev, name, format, args...)
}
