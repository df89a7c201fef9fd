package app

import (
	"fmt"
	"log/slog"

	"github.com/groupvpn/groupvpn/internal/syslog"
)

// daemonLogger is the logger of daemon name (isakmpd, tmd, iked): text to
// stderr (srcmstr appends it to RUNDIR/NAME.log), and RFC 5424 to syslogTo
// as well when it is set. The destination is returned for SIGHUP to
// reopen (SPEC D4) and for the caller to close; nil without -syslog.
func daemonLogger(env *Env, name, syslogTo string, debug bool) (*slog.Logger, *syslog.Destination, error) {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	handler := slog.Handler(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	if syslogTo == "" {
		return slog.New(handler), nil, nil
	}
	w, err := syslog.Dial(syslogTo)
	if err != nil {
		return nil, nil, fmt.Errorf("-syslog: %w", err)
	}
	return slog.New(syslog.Fanout{handler, syslog.NewHandler(w, name, level)}), w, nil
}
