package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// runIked runs the IKE broker of the group `ike` (SPEC D1, DESIGN.md §1):
// it owns UDP 848, 500 and 4500 on every address of every up interface
// and hands each datagram to the daemon registered for its IKE version.
// SIGHUP refreshes the addresses (SPEC D4) and reopens the -syslog
// destination; SIGTERM and SIGINT stop it.
func runIked(env *Env, args []string) int {
	fs := flag.NewFlagSet("iked", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	socket := fs.String("socket", rundir.Socket("iked"), "broker `SOCKET` the protocol daemons connect to")
	portList := fs.String("ports", "848,500,4500", "comma-separated UDP `PORTS` to own on every address")
	listen := fs.String("listen", "", "comma-separated `ADDRESSES` to serve (default: every address of every up interface)")
	syslogTo := fs.String("syslog", "", "also log to syslog `DEST`: udp://host:514 or tcp://host:514 (RFC 5424), unix:///dev/log (RFC 3164) or file:///path (docs/operations.md, Logging)")
	debug := fs.Bool("debug", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(env.Stderr, "usage: groupvpn iked [-socket PATH] [-ports 848,500,4500] [-listen A,B] [-syslog DEST] [-debug]")
		return 2
	}
	var ports []uint16
	for _, s := range strings.Split(*portList, ",") {
		p, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil || p == 0 {
			fmt.Fprintf(env.Stderr, "groupvpn iked: -ports: %q is not a port\n", s)
			return 2
		}
		ports = append(ports, uint16(p))
	}
	var inventory func() ([]netip.AddrPort, error)
	if *listen != "" {
		var fixed []netip.AddrPort
		for _, s := range strings.Split(*listen, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn iked: -listen: %v\n", err)
				return 2
			}
			for _, p := range ports {
				fixed = append(fixed, netip.AddrPortFrom(a.Unmap(), p))
			}
		}
		inventory = func() ([]netip.AddrPort, error) { return fixed, nil }
	}

	logger, logDest, _, err := daemonLogger(env.Stderr, "iked", *syslogTo, *debug)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn iked: %v\n", err)
		return 1
	}
	if logDest != nil {
		defer logDest.Close()
	}
	notify := srcnotify.FromEnv()
	defer notify.Close()

	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn iked: socket directory: %v\n", err)
		return 1
	}
	srv := iked.New(iked.Options{Ports: ports, Inventory: inventory, Logger: logger})
	if err := srv.Start(*socket); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go refreshIkedOnHangup(ctx, hup, srv, logDest, notify, logger)

	served := srv.Addrs()
	if err := notify.Send(srcnotify.Event{State: srcnotify.Ready, Addrs: netinv.Strings(served),
		Detail: fmt.Sprintf("serving %d addresses for isakmpd (IKEv1) and ikev2d (IKEv2)", len(served))}); err != nil {
		logger.Warn("srcmstr not told that iked is ready", "err", err.Error())
	}
	err = srv.Run(ctx)
	notify.Send(srcnotify.Event{State: srcnotify.Stopping})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "groupvpn %v\n", err)
		return 1
	}
	logger.Info("iked stopped")
	return 0
}

// refreshIkedOnHangup refreshes iked on SIGHUP (SPEC D4): a new address
// inventory (sockets opened for new addresses, closed for removed ones,
// daemons stay connected), then the -syslog destination reopened, then
// the outcome told to srcmstr for `refresh` to report.
func refreshIkedOnHangup(ctx context.Context, hup <-chan os.Signal, srv *iked.Server, logDest *syslog.Destination, notify *srcnotify.Notifier, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		added, removed, err := srv.Refresh()
		serving := srv.Addrs()
		logger.Info("iked refreshed", "added", netinv.Join(added), "removed", netinv.Join(removed), "serving", netinv.Join(serving))
		if logDest != nil {
			if rerr := logDest.Reopen(); rerr != nil {
				logger.Error("syslog destination not reopened; still logging to the old one", "err", rerr.Error())
			}
		}
		ev := srcnotify.Event{State: srcnotify.Refreshed, Addrs: netinv.Strings(serving),
			Detail: fmt.Sprintf("added %s; removed %s; serving %s", netinv.Join(added), netinv.Join(removed), netinv.Join(serving))}
		if err != nil {
			logger.Error("iked refresh failed in part", "err", err.Error())
			ev.State, ev.Detail = srcnotify.RefreshFailed, err.Error()
		}
		if serr := notify.Send(ev); serr != nil {
			logger.Warn("srcmstr not told of the refresh", "err", serr.Error())
		}
	}
}
