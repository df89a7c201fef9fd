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
	"strings"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/ikev2d"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/memtrim"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// runIkev2d runs the IKEv2 + G-IKEv2 daemon (SPEC D1, G2, G4; issue 17).
func runIkev2d(env *Env, args []string) int {
	fs := flag.NewFlagSet("ikev2d", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	file := fs.String("f", "", "configuration `FILE` (IOS syntax, docs/config.md)")
	port := fs.Uint("port", ikev2d.DefaultPort, "UDP port to listen on and to reach key servers at")
	listen := fs.String("listen", "", "comma-separated `ADDRESSES` to listen on (default: every address of every up interface)")
	socket := fs.String("socket", "", "control `SOCKET` for groupvpn cli (show crypto gdoi, clear crypto gdoi ks members, crypto gdoi ks rekey); default: none")
	socketGroup := fs.String("socket-group", "", "make the control socket 0660 of group `NAME`: its members get read-only access (show commands)")
	syslogTo := fs.String("syslog", "", "also log to syslog `DEST`: udp://host:514, tcp://host:514, unix:///dev/log or file:///path (docs/operations.md, Logging); reopened by refresh")
	debug := fs.Bool("debug", false, "log debug messages")
	statePath := fs.String("state", "/var/lib/groupvpn/ikev2d.db", "key-server state `FILE` (keys, sequence numbers, members; kept across restarts)")
	keysDir := fs.String("keys", "", "key store `DIR` (rekey keys no crypto key import line names); default: keys/ next to -state")
	tmdSocket := fs.String("tmd", "", "install the group SAs into the tmd serving `SOCKET` (srcmstr passes it); default: keep them in this process")
	ikedSocket := fs.String("iked", "", "receive and send through the iked broker serving `SOCKET` (started with the group ike); default: own sockets")
	plainPort := fs.Int("ikev2-port", -1, "UDP `PORT` on which ordinary IKEv2 peers are answered (IKE_AUTH without a group: a unicast IKE SA, show crypto ikev2 sa); 0: none; default: 500 with -iked (which owns 500), none with own sockets")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || *port == 0 || *port > 65535 {
		fmt.Fprintln(env.Stderr, "usage: groupvpn ikev2d -f FILE [-port N] [-listen A,B] [-state FILE] [-socket PATH] [-socket-group NAME] [-syslog DEST] [-tmd SOCKET] [-iked SOCKET]")
		return 2
	}
	setKSGC(os.Getenv)
	if *plainPort < -1 || *plainPort > 65535 || *plainPort == int(*port) {
		fmt.Fprintln(env.Stderr, "groupvpn ikev2d: -ikev2-port: a UDP port other than -port, or 0")
		return 2
	}
	if *plainPort == -1 {
		*plainPort = 0
		if *ikedSocket != "" {
			*plainPort = 500
		}
	}
	if *ikedSocket != "" && *listen != "" {
		fmt.Fprintln(env.Stderr, "groupvpn ikev2d: -listen and -iked exclude each other: with the broker, ikev2d serves the addresses iked serves")
		return 2
	}
	notify := srcnotify.FromEnv()
	defer notify.Close()
	logger, logDest, _, err := daemonLogger(env.Stderr, "ikev2d", *syslogTo, *debug)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
		return 1
	}
	if logDest != nil {
		defer logDest.Close()
	}
	keys := keystore.Open(KeyStoreDir(*keysDir, *statePath))
	load := func() (*policy.Config, error) { return policy.LoadWith(*file, policy.Options{KeyStore: keys}) }
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn ikev2d: configuration refused:\n%v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var o ikev2d.Options
	o.Logger = logger
	o.PlainPort = uint16(*plainPort)
	if *tmdSocket != "" {
		sas, err := tmd.Dial(ctx, *tmdSocket, "ikev2d", logger)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
			return 1
		}
		defer sas.Close()
		o.Dataplane = sas
	}
	// The addresses, as isakmpd's (SPEC D3): iked's on our port when
	// started with the group, else every address of every up interface,
	// else the -listen list.
	var inventory func() ([]netip.AddrPort, error)
	var brokerLost <-chan struct{}
	var brokerErr func() error
	switch {
	case *ikedSocket != "":
		broker, err := iked.Dial(ctx, *ikedSocket, "ikev2d", 2)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
			return 1
		}
		defer broker.Close()
		brokerLost, brokerErr = broker.Done(), broker.Err
		inventory = ikedInventory(ctx, broker, uint16(*port), o.PlainPort)
		o.ListenPacket = func(a netip.AddrPort) (ikev2d.PacketConn, error) { return broker.Listen(a) }
	case *listen == "":
		inventory = func() ([]netip.AddrPort, error) {
			if o.PlainPort != 0 {
				return netinv.WithPorts(uint16(*port), o.PlainPort)
			}
			return netinv.WithPorts(uint16(*port))
		}
	default:
		if o.Listen, err = listenAddrs(*listen, uint16(*port), o.PlainPort); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: -listen: %v\n", err)
			return 2
		}
	}
	if inventory != nil {
		if o.Listen, err = inventory(); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
			return 1
		}
	}
	rc, err := ikev2dConfig(cfg, o.Listen, uint16(*port))
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
		return 1
	}
	if len(rc.KS) > 0 && *statePath != "" {
		st, err := openKSState(*statePath)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
			return 1
		}
		defer st.Close()
		o.Store = st
	}
	r, err := ikev2d.New(rc, o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
		return 1
	}
	if *socket != "" {
		srv := ctl.NewServer(logger)
		srv.SetHostname(rc.Hostname)
		r.Serve(srv)
		ln, err := ctl.ListenGroup(*socket, *socketGroup)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
			return 1
		}
		go func() {
			if err := srv.ServeListener(ctx, ln); err != nil && ctx.Err() == nil {
				logger.Error("control socket stopped", "err", err.Error())
			}
		}()
	}
	served := r.Addrs()
	via, sadb := "own sockets", "this process"
	if *ikedSocket != "" {
		via = "iked " + *ikedSocket
	}
	if *tmdSocket != "" {
		sadb = "tmd " + *tmdSocket
	}
	logger.Info("ikev2d started", "config", *file, "listen", netinv.Join(served), "via", via, "sadb", sadb,
		"ks_groups", len(rc.KS), "gm_groups", len(rc.GM))
	runCtx, cancelRun := brokerWatch(ctx, brokerLost, brokerErr)
	memtrim.Start(runCtx, memtrim.Interval, logger) // a registration storm's heap goes back once it is over
	defer cancelRun()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	apply := func(c *policy.Config, served []netip.AddrPort) error {
		rc, err := ikev2dConfig(c, served, uint16(*port))
		if err != nil {
			return err
		}
		var aerr error
		if err := r.Do(runCtx, func() { aerr = r.Reconfigure(rc) }); err != nil {
			return err
		}
		return aerr
	}
	go ikev2dRefresh(runCtx, hup, r, inventory, load, apply, logDest, *file, logger, notify)
	if err := notify.Send(srcnotify.Event{State: srcnotify.Ready, Addrs: netinv.Strings(served),
		Detail: fmt.Sprintf("serving %d addresses (%s); SAs in %s", len(served), via, sadb)}); err != nil {
		logger.Warn("could not tell srcmstr the daemon is ready", "err", err.Error())
	}
	err = r.Run(runCtx)
	if brokerLostExit(runCtx, env, logger, "ikev2d") {
		return 1
	}
	notify.Send(srcnotify.Event{State: srcnotify.Stopping})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "groupvpn ikev2d: %v\n", err)
		return 1
	}
	return 0
}

// ikev2dRefresh is isakmpd's reloadOnHangup for ikev2d (SPEC D3, D4): on
// SIGHUP a new inventory of the addresses (listen on new ones, close gone
// ones, keeping the IKE SAs of the others, the key-server state and the
// registrations), then the configuration file is read again: an invalid
// one is refused with file:line and srcmstr told refresh-failed; a valid
// one is applied (Router.Reconfigure: group policy, key-server lists,
// pre-shared keys) unless it changes what needs a restart (groups added or
// removed, IKE proposals, identity), which is refused with the reason.
func ikev2dRefresh(ctx context.Context, hup <-chan os.Signal, r *ikev2d.Router, inventory func() ([]netip.AddrPort, error),
	load func() (*policy.Config, error), apply func(*policy.Config, []netip.AddrPort) error, logDest *syslog.Destination, file string,
	logger *slog.Logger, notify *srcnotify.Notifier) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		var problems []string
		var summary string
		var served []netip.AddrPort
		if inventory == nil {
			r.Do(ctx, func() { served = r.Addrs() })
			summary = "addresses kept (explicit -listen list): " + netinv.Join(served)
		} else if inv, err := inventory(); err != nil {
			problems = append(problems, "address refresh: "+err.Error())
			r.Do(ctx, func() { served = r.Addrs() })
			summary = "addresses kept: " + netinv.Join(served)
		} else {
			var added, removed []netip.AddrPort
			var rerr error
			r.Do(ctx, func() { added, removed, rerr = r.Refresh(inv); served = r.Addrs() })
			summary = fmt.Sprintf("addresses refreshed: added %s; removed %s; serving %s", netinv.Join(added), netinv.Join(removed), netinv.Join(served))
			if rerr != nil {
				problems = append(problems, rerr.Error())
			}
		}
		logger.Info("addresses refreshed", "summary", summary)
		if logDest != nil {
			if err := logDest.Reopen(); err != nil {
				logger.Error("syslog destination not reopened; still logging to the old one", "err", err.Error())
				problems = append(problems, "syslog destination not reopened: "+err.Error())
			}
		}
		cfg, err := load()
		if err == nil {
			err = apply(cfg, served)
		}
		if err != nil {
			logger.Error("configuration reload refused; the running configuration stays", "err", err.Error())
			problems = append(problems, "configuration refused, the running configuration stays: "+oneLine(err.Error()))
		} else {
			logger.Info("configuration reloaded", "file", file)
		}
		ev := srcnotify.Event{State: srcnotify.Refreshed, Addrs: netinv.Strings(served), Detail: summary + "; configuration reloaded from " + file}
		if len(problems) > 0 {
			ev.State, ev.Detail = srcnotify.RefreshFailed, summary+"; "+strings.Join(problems, "; ")
		}
		if err := notify.Send(ev); err != nil {
			logger.Warn("could not tell srcmstr the refresh outcome", "err", err.Error())
		}
	}
}
