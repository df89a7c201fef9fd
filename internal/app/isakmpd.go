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
	"slices"
	"strings"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/memtrim"
	"github.com/groupvpn/groupvpn/internal/metrics"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/tmd"
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
	socketGroup := fs.String("socket-group", "", "make the control socket 0660 of group `NAME`: its members get read-only access (show commands; docs/cli.md, Access and audit)")
	syslogTo := fs.String("syslog", "", "also log to syslog `DEST`: udp://host:514 or tcp://host:514 (RFC 5424), unix:///dev/log (RFC 3164) or file:///path (docs/operations.md, Logging)")
	debug := fs.Bool("debug", false, "log debug messages")
	statePath := fs.String("state", "/var/lib/groupvpn/isakmpd.db", "key-server state `FILE` (keys, sequence numbers, members; kept across restarts)")
	keysDir := fs.String("keys", "", "key store `DIR` (crypto key generate/import from groupvpn cli; rekey keys no crypto key import line names); default: keys/ next to -state")
	tmdSocket := fs.String("tmd", "", "install the group SAs into the tmd serving `SOCKET` (srcmstr passes it); default: keep them in this process")
	ikedSocket := fs.String("iked", "", "receive and send through the iked broker serving `SOCKET` (started with the group ike); default: own sockets")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on http://`ADDR:PORT`/metrics (docs/operations.md, Metrics); default: off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || *port == 0 || *port > 65535 {
		fmt.Fprintln(env.Stderr, "usage: groupvpn isakmpd -f FILE [-port N] [-listen A,B] [-socket PATH] [-socket-group NAME] [-syslog DEST] [-tmd SOCKET] [-iked SOCKET] [-metrics ADDR:PORT]")
		return 2
	}
	setKSGC(os.Getenv)
	if *ikedSocket != "" && *listen != "" {
		fmt.Fprintln(env.Stderr, "groupvpn isakmpd: -listen and -iked exclude each other: with the broker, isakmpd serves the addresses iked serves")
		return 2
	}
	notify := srcnotify.FromEnv()
	defer notify.Close()
	// The configuration's logging host and logging buffered (applied
	// once the daemon runs, and by each reload or commit).
	logLevel := slog.LevelInfo
	if *debug {
		logLevel = slog.LevelDebug
	}
	sinks := syslog.NewSinks(syslog.Options{App: "isakmpd", Level: logLevel})
	// The loop's log lines are written a turn at a time (node.Options.Turns).
	turns := syslog.NewTurnWriter(env.Stderr, syslog.DefaultHold)
	logger, logDest, logHandler, err := daemonLogger(turns, "isakmpd", *syslogTo, *debug, sinks)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	if logDest != nil {
		defer logDest.Close()
	}
	keys := keystore.Open(KeyStoreDir(*keysDir, *statePath))
	cfg, err := policy.LoadWith(*file, policy.Options{KeyStore: keys})
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: configuration refused:\n%v\n", err)
		return 1
	}
	sinks.SetHostname(cfg.Hostname) // and OnHostname below follows it
	if logHandler != nil {
		logHandler.SetHostname(cfg.Hostname)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tune := []func(*node.Options){func(o *node.Options) { o.Turns = turns }}
	var sas *tmd.Client     // with -tmd
	var broker *iked.Client // with -iked
	// The SA database: tmd, when the daemon runs under srcmstr (SPEC D1,
	// D2: without tmd it refuses to start and says to start tmd first).
	if *tmdSocket != "" {
		sas, err = tmd.Dial(ctx, *tmdSocket, "isakmpd", logger)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
		defer sas.Close()
		tune = append(tune, func(o *node.Options) { o.Dataplane, o.KEKs = sas, sas }) // tmd keeps the KEKs too
	}
	// The addresses: iked's when started with the group, else every
	// address of every up interface, else the -listen list (SPEC D3).
	var addrs []netip.AddrPort
	var inventory func() ([]netip.AddrPort, error)
	var brokerLost <-chan struct{} // closed when the connection to iked ends
	var brokerErr func() error
	switch {
	case *ikedSocket != "":
		broker, err = iked.Dial(ctx, *ikedSocket, "isakmpd", 1)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
		defer broker.Close()
		brokerLost, brokerErr = broker.Done(), broker.Err
		inventory = ikedInventory(ctx, broker, uint16(*port))
		tune = append(tune, func(o *node.Options) {
			o.ListenPacket = func(a netip.AddrPort) (node.PacketConn, error) { return broker.Listen(a) }
		})
	case *listen == "":
		inventory = func() ([]netip.AddrPort, error) { return netinv.WithPorts(uint16(*port)) }
	default:
		if addrs, err = listenAddrs(*listen, uint16(*port)); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: -listen: %v\n", err)
			return 2
		}
	}
	if inventory != nil {
		if addrs, err = inventory(); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
			return 1
		}
	}
	if len(cfg.KSGroups()) > 0 && *statePath != "" {
		st, err := openKSState(*statePath)
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
	d.ServeKeyStore(keys) // crypto key generate/zeroize/import/export, show crypto key mypubkey
	if logHandler != nil {
		d.OnHostname(logHandler.SetHostname) // HOSTNAME: the configured hostname
	}
	d.OnHostname(sinks.SetHostname)
	if err := d.SetLogSinks(sinks); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	if inventory != nil {
		d.ServeInventory(inventory)
	}
	// The drops made before a datagram reaches isakmpd (iked) and at the
	// SA database's API (tmd) are shown by show crypto isakmp statistics,
	// asked for when the command runs (SPEC S5).
	if broker != nil {
		d.AddCounters(daemon.CounterSource{Key: "broker", Title: "Broker (iked " + *ikedSocket + ")", Read: broker.Stats})
	}
	if sas != nil {
		d.AddCounters(daemon.CounterSource{Key: "sa_database", Title: "SA database API (tmd " + *tmdSocket + ")",
			Read: func(ctx context.Context) ([]ike.Counter, error) {
				st, err := sas.Status(ctx)
				if err != nil {
					return nil, err
				}
				return tmdCounters(st), nil
			}})
	}
	// The metrics endpoint, opt-in: bound now, so that an address in use
	// is a startup error (issue 14 item 7).
	if *metricsAddr != "" {
		col := metrics.ForNode(d.Node, 0)
		if broker != nil {
			col.WithSections(metrics.Section{Name: "broker", Read: broker.Stats})
		}
		if sas != nil {
			col.WithSections(metrics.Section{Name: "tmd_api", Read: func(ctx context.Context) ([]ike.Counter, error) {
				st, err := sas.Status(ctx)
				st.DataPlane = nil // the engine's counters come with the SAs'
				return tmdCounters(st), err
			}})
		}
		ms, err := metrics.Listen(*metricsAddr, metrics.DefaultLimits, logger, col)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn isakmpd: -metrics: %v\n", err)
			return 1
		}
		defer ms.Close()
		go func() {
			if err := ms.Serve(ctx); err != nil {
				logger.Error("metrics endpoint stopped", "err", err.Error())
			}
		}()
	}
	ln, err := ctl.ListenGroup(*socket, *socketGroup)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	served := d.Node.Addrs()
	via := "own sockets"
	if *ikedSocket != "" {
		via = "iked " + *ikedSocket
	}
	sadb := "this process"
	if *tmdSocket != "" {
		sadb = "tmd " + *tmdSocket
	}
	logger.Info("isakmpd started", "config", *file, "listen", netinv.Join(served), "via", via, "sadb", sadb, "socket", *socket,
		"ks_groups", len(cfg.KSGroups()), "gm_groups", len(cfg.GMGroups()))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, hup, d, *file, logDest, logger, notify)
	// A registration storm's heap goes back to the system once it is
	// over (issue 18: memory per member).
	memtrim.Start(ctx, memtrim.Interval, logger)
	if err := notify.Send(srcnotify.Event{State: srcnotify.Ready, Addrs: netinv.Strings(served),
		Detail: fmt.Sprintf("serving %d addresses (%s); SAs in %s", len(served), via, sadb)}); err != nil {
		logger.Warn("could not tell srcmstr the daemon is ready", "err", err.Error())
	}
	runCtx, cancelRun := brokerWatch(ctx, brokerLost, brokerErr)
	defer cancelRun()
	err = d.Serve(runCtx, ln)
	if brokerLostExit(runCtx, env, logger, "isakmpd") {
		return 1
	}
	notify.Send(srcnotify.Event{State: srcnotify.Stopping})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "groupvpn isakmpd: %v\n", err)
		return 1
	}
	return 0
}

// DefaultStateDir is where isakmpd keeps its state by default (-state,
// the key store).
const DefaultStateDir = "/var/lib/groupvpn"

// KeyStoreDir is the key store's directory: dir if set, else keys/ next
// to the KS state file, else DefaultStateDir/keys.
func KeyStoreDir(dir, statePath string) string {
	switch {
	case dir != "":
		return dir
	case statePath != "":
		return filepath.Join(filepath.Dir(statePath), "keys")
	}
	return filepath.Join(DefaultStateDir, "keys")
}

// ikedInventory lists the addresses iked serves on port, then those on
// the also ports (ikev2d's -ikev2-port), for isakmpd and ikev2d started
// with the group (SPEC D3); none on port is an error.
func ikedInventory(ctx context.Context, broker *iked.Client, port uint16, also ...uint16) func() ([]netip.AddrPort, error) {
	return func() ([]netip.AddrPort, error) {
		all, err := broker.Addrs(ctx)
		if err != nil {
			return nil, fmt.Errorf("addresses served by iked: %w", err)
		}
		var out, more []netip.AddrPort
		for _, a := range all {
			switch {
			case a.Port() == port:
				out = append(out, a)
			case slices.Contains(also, a.Port()):
				more = append(more, a)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("iked serves no address on port %d (it serves %s)", port, netinv.Join(all))
		}
		return append(out, more...), nil
	}
}

// listenAddrs are the addresses of -listen (a comma-separated list) on
// port, each followed by itself on the also ports that are not 0.
func listenAddrs(list string, port uint16, also ...uint16) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range strings.Split(list, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, netip.AddrPortFrom(a, port))
		for _, p := range also {
			if p != 0 {
				out = append(out, netip.AddrPortFrom(a, p))
			}
		}
	}
	return out, nil
}

// openKSState opens the key server's state file (SPEC O4), making its
// directory (0700) first.
func openKSState(path string) (*store.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return store.Open(path, store.Options{})
}

// errBrokerLost is brokerWatch's cause: the connection to iked ended.
var errBrokerLost = errors.New("lost the iked broker")

// brokerWatch is the run context of a daemon: it ends with ctx, or when
// lost is closed (the connection to iked ended; nil: never), with
// errBrokerLost and why() as its cause. Without iked the daemon would run
// deaf: it exits instead, so that srcmstr shows it inoperative (SPEC D6)
// rather than active.
func brokerWatch(ctx context.Context, lost <-chan struct{}, why func() error) (context.Context, context.CancelFunc) {
	run, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lost:
			cancel(fmt.Errorf("%w (%v)", errBrokerLost, why()))
		case <-run.Done():
		}
	}()
	return run, func() { cancel(nil) }
}

// brokerLostExit reports whether run (brokerWatch's) ended because iked
// was lost, and if so says so in the log and on stderr, with how name
// recovers.
func brokerLostExit(run context.Context, env *Env, logger *slog.Logger, name string) bool {
	cause := context.Cause(run)
	if !errors.Is(cause, errBrokerLost) {
		return false
	}
	logger.Error("exiting: no datagram can arrive or leave without iked", "err", cause.Error())
	fmt.Fprintf(env.Stderr, "groupvpn %s: %v: exiting; recover with stopsrc -s %s, then startsrc -g ike\n", name, cause, name)
	return true
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
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, d *daemon.Daemon, file string, logDest *syslog.Destination, logger *slog.Logger, notify *srcnotify.Notifier) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		// The addresses first, and whatever the file holds (SPEC D4): a
		// refused configuration does not hold back new addresses. Refresh
		// logs its summary and its errors itself.
		summary, rerr := d.Refresh(ctx)
		var problems []string
		if rerr != nil {
			problems = append(problems, rerr.Error())
		}
		if logDest != nil {
			if err := logDest.Reopen(); err != nil {
				logger.Error("syslog destination not reopened; still logging to the old one", "err", err.Error())
				problems = append(problems, "syslog destination not reopened: "+err.Error())
			}
		}
		// A file that is invalid, or that the running node cannot take
		// (a group added or removed, phase 1 changed: daemon.SetConfig), is
		// refused with the reason; the running configuration stays exactly
		// what runs, and srcmstr is told refresh-failed.
		if err := d.Reload(); err != nil {
			logger.Error("configuration reload refused; the running configuration stays", "err", err.Error())
			problems = append(problems, "configuration refused, the running configuration stays: "+oneLine(err.Error()))
		} else {
			logger.Info("configuration reloaded", "file", file)
		}
		var served []netip.AddrPort
		d.Node.Do(ctx, func() { served = d.Node.Addrs() })
		ev := srcnotify.Event{State: srcnotify.Refreshed, Addrs: netinv.Strings(served), Detail: summary + "; configuration reloaded from " + file}
		if len(problems) > 0 {
			ev.State, ev.Detail = srcnotify.RefreshFailed, summary+"; "+strings.Join(problems, "; ")
		}
		if err := notify.Send(ev); err != nil {
			logger.Warn("could not tell srcmstr the refresh outcome", "err", err.Error())
		}
	}
}

// oneLine joins a multi-line error (one line per configuration error)
// for a one-line report.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

// tmdCounters are the drops at tmd's API socket (tmd.Status).
func tmdCounters(st tmd.Status) []ike.Counter {
	cs := []ike.Counter{
		{Name: "requests_malformed", Help: "request lines refused as malformed", Value: st.Malformed},
		{Name: "connections_refused", Help: "connections refused over the limit", Value: st.Refused},
		{Name: "connections_timed_out", Help: "connections closed by a hello, idle or line timeout", Value: st.TimedOut},
		{Name: "write_failed", Help: "connections closed: a response could not be written (a client that does not read)", Value: st.WriteFailed},
	}
	// The forwarding engine's counters, when tmd runs it (groupvpn tmd
	// -tun), prefixed data_plane_.
	if dp := st.DataPlane; dp != nil {
		for _, c := range dp.Counters {
			cs = append(cs, ike.Counter{Name: "data_plane_" + c.Name, Help: c.Help + " (data plane, " + dp.Device + ")", Value: c.Value})
		}
	}
	return cs
}
