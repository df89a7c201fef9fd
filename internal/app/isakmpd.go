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
	"strings"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// runIsakmpd runs the IKEv1 + GDOI daemon: the KS and/or GM roles of one
// configuration file.
func runIsakmpd(env *Env, args []string) int {
	fs := flag.NewFlagSet("isakmpd", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("f", "", "configuration `FILE` (IOS syntax, docs/config.md)")
	port := fs.Uint("port", daemon.DefaultPort, "UDP port to listen on and to reach key servers at")
	listen := fs.String("listen", "", "comma-separated `ADDRESSES` to listen on (default: every address of every up interface)")
	socket := fs.String("socket", ctl.DefaultSocket(), "control `SOCKET` for groupvpn cli")
	syslogTo := fs.String("syslog", "", "also log RFC 5424 to `DEST`: udp://host:514, tcp://host:514, unix:///dev/log or file:///path")
	debug := fs.Bool("debug", false, "log debug messages")
	statePath := fs.String("state", "/var/lib/groupvpn/isakmpd.db", "key-server state `FILE` (keys, sequence numbers, members; kept across restarts)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || *port == 0 || *port > 65535 {
		fmt.Fprintln(env.Stderr, "usage: groupvpn isakmpd -f FILE [-port N] [-listen A,B] [-socket PATH] [-syslog DEST]")
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	handler := slog.Handler(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	var logDest *syslog.Destination
	if *syslogTo != "" {
		w, err := syslog.Dial(*syslogTo)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
		defer w.Close()
		logDest = w
		handler = syslog.Fanout{handler, syslog.NewHandler(w, "isakmpd", level)}
	}
	logger := slog.New(handler)
	cfg, err := policy.Load(*file)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: configuration refused:\n%v\n", err)
		return 1
	}
	var addrs []netip.AddrPort
	if *listen == "" {
		if addrs, err = netinv.WithPorts(uint16(*port)); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
	} else {
		for _, s := range strings.Split(*listen, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn isakmpd: -listen: %v\n", err)
				return 2
			}
			addrs = append(addrs, netip.AddrPortFrom(a, uint16(*port)))
		}
	}
	var tune []func(*node.Options)
	if len(cfg.KSGroups()) > 0 && *statePath != "" {
		if err := os.MkdirAll(filepath.Dir(*statePath), 0o700); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: state directory: %v\n", err)
			return 1
		}
		st, err := store.Open(*statePath, store.Options{})
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
		defer st.Close()
		tune = append(tune, func(o *node.Options) { o.Store = st })
	}
	d, err := daemon.New(cfg, addrs, uint16(*port), logger, tune...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	if *listen == "" {
		d.ServeEveryAddress(uint16(*port))
	}
	if err := os.MkdirAll(filepath.Dir(*socket), 0o755); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: control socket: %v\n", err)
		return 1
	}
	logger.Info("isakmpd started", "config", *file, "listen", fmt.Sprint(d.Node.Addrs()), "socket", *socket,
		"ks_groups", len(cfg.KSGroups()), "gm_groups", len(cfg.GMGroups()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, hup, d, *file, logDest, logger)
	if err := d.Run(ctx, *socket); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	return 0
}

// reloadOnHangup refreshes the addresses served and rereads the
// configuration file on SIGHUP (SPEC D4, P1). Started on every address,
// the daemon listens on addresses added since and closes the sockets of
// removed ones, keeping its SAs and registrations. Then the file: a
// valid file becomes the running configuration (key-server group policy
// and pre-shared keys take effect; the KS logs POLICY_CHANGE and sends no
// rekey); an invalid one is refused with file:line and reason, and the
// running configuration stays. Last, the -syslog destination is reopened
// (a rotated file, a restarted syslog daemon); if that fails the old one
// stays in use.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, d *daemon.Daemon, file string, logDest *syslog.Destination, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		// The addresses first, and whatever the file holds (SPEC D4): a
		// refused configuration does not hold back new addresses. Refresh
		// logs its summary and its errors itself.
		d.Refresh(ctx)
		if logDest != nil {
			if err := logDest.Reopen(); err != nil {
				logger.Error("syslog destination not reopened; still logging to the old one", "err", err.Error())
			}
		}
		c, err := policy.Load(file)
		if err != nil {
			logger.Error("configuration reload refused; the running configuration stays", "err", err.Error())
			continue
		}
		d.SetConfig(c)
		logger.Info("configuration reloaded", "file", file)
	}
}
