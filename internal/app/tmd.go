package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// runTmd runs the tunnel manager (SPEC D1): the process owning the SA
// database the IKE daemons install into over the unix socket -socket.
// SIGTERM and SIGINT stop it (exit 0); SIGHUP refreshes it (SPEC D4):
// the -syslog destination is reopened and srcmstr told the outcome. The
// SAs are kept across a refresh.
func runTmd(env *Env, args []string) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	n := srcnotify.FromEnv()
	defer n.Close()
	return serveTmd(env, args, sigs, n)
}

// serveTmd is runTmd with its signals and srcmstr notifier given (tests
// drive it without real signals).
func serveTmd(env *Env, args []string, sigs <-chan os.Signal, notify *srcnotify.Notifier) int {
	fs := flag.NewFlagSet("tmd", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	socket := fs.String("socket", rundir.Socket("tmd"), "unix `SOCKET` the IKE daemons install SAs through")
	syslogTo := fs.String("syslog", "", "also log RFC 5424 to `DEST`: udp://host:514, tcp://host:514, unix:///dev/log or file:///path")
	debug := fs.Bool("debug", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *socket == "" {
		fmt.Fprintln(env.Stderr, "usage: groupvpn tmd [-socket PATH] [-syslog DEST] [-debug]")
		return 2
	}
	logger, logDest, err := daemonLogger(env, "tmd", *syslogTo, *debug)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
		return 1
	}
	if logDest != nil {
		defer logDest.Close()
	}
	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn tmd: socket directory: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := tmd.NewServer(tmd.Options{
		Logger: logger,
		Ready: func() {
			logger.Info("tmd started", "socket", *socket, "api", tmd.APIVersion, "pid", os.Getpid())
			if err := notify.Send(srcnotify.Event{State: srcnotify.Ready, Detail: "SA API on " + *socket}); err != nil {
				logger.Warn("srcmstr not told tmd is ready", "err", err.Error())
			}
		},
	})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, *socket) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				logger.Info("tmd stopping", "signal", sig.String())
				notify.Send(srcnotify.Event{State: srcnotify.Stopping})
				cancel()
				if err := <-done; err != nil {
					fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
					return 1
				}
				return 0
			}
			refreshTmd(srv, logDest, logger, notify)
		}
	}
}

// refreshTmd is tmd's refresh (SPEC D4): reopen logging and report; the
// SA database is untouched.
func refreshTmd(srv *tmd.Server, logDest *syslog.Destination, logger *slog.Logger, notify *srcnotify.Notifier) {
	ev := srcnotify.Event{State: srcnotify.Refreshed}
	if logDest != nil {
		if err := logDest.Reopen(); err != nil {
			logger.Error("syslog destination not reopened; still logging to the old one", "err", err.Error())
			ev = srcnotify.Event{State: srcnotify.RefreshFailed, Detail: "syslog destination not reopened: " + err.Error()}
		}
	}
	st := srv.Status()
	summary := fmt.Sprintf("SA database: %s, %s", tmdPlural(st.TEKs, "TEK"), tmdPlural(st.KEKs, "KEK"))
	logger.Info("tmd refreshed", "teks", st.TEKs, "keks", st.KEKs, "clients", len(st.Clients))
	if ev.Detail == "" {
		ev.Detail = summary
	} else {
		ev.Detail += "; " + summary
	}
	if err := notify.Send(ev); err != nil {
		logger.Warn("srcmstr not told of the refresh", "err", err.Error())
	}
}

func tmdPlural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
