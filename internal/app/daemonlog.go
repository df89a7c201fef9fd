package app

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/groupvpn/groupvpn/internal/syslog"
)

// daemonLogger is the logger of daemon name (isakmpd, tmd, iked): text to
// stderr, the writer given (the daemon's stderr; isakmpd's wrapped in a
// syslog.TurnWriter that writes a turn of its loop at a time; srcmstr
// appends it to RUNDIR/NAME.log; syslog.TextHandler: slog.TextHandler's
// lines at less cost), and syslog to syslogTo
// as well when it is set (RFC 5424, or RFC 3164 on a unix socket such as
// /dev/log: docs/operations.md, Logging). The destination is returned for
// SIGHUP to reopen (SPEC D4) and for the caller to close, the syslog
// handler for the caller to set the configured hostname; both nil
// without -syslog. Records go to the extra handlers as well (isakmpd's
// syslog.Sinks: logging host, logging buffered).
func daemonLogger(stderr io.Writer, name, syslogTo string, debug bool, extra ...slog.Handler) (*slog.Logger, *syslog.Destination, *syslog.Handler, error) {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	handler := syslog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if syslogTo == "" {
		if len(extra) > 0 {
			return slog.New(append(syslog.Fanout{handler}, extra...)), nil, nil, nil
		}
		return slog.New(handler), nil, nil, nil
	}
	w, err := syslog.Dial(syslogTo)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("-syslog: %w", err)
	}
	sh := syslog.NewHandler(w, syslog.Options{App: name, Level: level, Format: w.Format()})
	return slog.New(append(syslog.Fanout{handler, sh}, extra...)), w, sh, nil
}
