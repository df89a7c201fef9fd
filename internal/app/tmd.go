package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/sadb"

	"github.com/groupvpn/groupvpn/internal/metrics"
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
	syslogTo := fs.String("syslog", "", "also log to syslog `DEST`: udp://host:514 or tcp://host:514 (RFC 5424), unix:///dev/log (RFC 3164) or file:///path (docs/operations.md, Logging)")
	debug := fs.Bool("debug", false, "log debug messages")
	keyLog := fs.String("keylog", "", "append every TEK installed to `FILE` (mode 0600) in Wireshark's ESP SA table format, to decrypt captures: whoever reads FILE decrypts the group's traffic; off by default")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics (the SAs' and the engine's packet counters) on http://`ADDR:PORT`/metrics (docs/operations.md, Metrics); default: off")
	var dpf dataPlaneFlags
	dpf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *socket == "" {
		fmt.Fprintln(env.Stderr, "usage: groupvpn tmd [-socket PATH] [-syslog DEST] [-debug] [-keylog FILE] [-metrics ADDR:PORT] [-tun NAME [-mtu N] [-mark N] [-local PREFIX,...] [-src ADDR] [-group NAME,...] [-drop-clear=false]]")
		return 2
	}
	if err := dpf.check(); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
		return 2
	}
	logger, logDest, _, err := daemonLogger(env.Stderr, "tmd", *syslogTo, *debug)
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
	opts := tmd.Options{Logger: logger}
	if *keyLog != "" {
		f, err := openKeyLog(*keyLog)
		if err != nil {
			logger.Error("tmd not started: key log", "err", err.Error())
			fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
			return 1
		}
		defer f.Close()
		opts.KeyLog = f
		logger.Warn("tmd writes every TEK it installs to the key log: whoever reads it decrypts the group's traffic", "keylog", *keyLog)
	}
	if dpf.tun != "" {
		dp, err := startDataPlane(dpf, logger)
		if err != nil {
			logger.Error("tmd not started: data plane", "err", err.Error())
			fmt.Fprintf(env.Stderr, "groupvpn tmd: %v\n", err)
			return 1
		}
		defer dp.stop()
		opts.Backend, opts.DataPlane = dp.backend, dp.counters
	}
	opts.Ready = func() {
		logger.Info("tmd started", "socket", *socket, "api", tmd.APIVersion, "pid", os.Getpid(), "tun", dpf.tun)
		if err := notify.Send(srcnotify.Event{State: srcnotify.Ready, Detail: "SA API on " + *socket}); err != nil {
			logger.Warn("srcmstr not told tmd is ready", "err", err.Error())
		}
	}
	srv := tmd.NewServer(opts)
	// The metrics endpoint, opt-in: bound before the SA API, so that an
	// address in use is a startup error (issue 14 item 7).
	if *metricsAddr != "" {
		ms, err := metrics.Listen(*metricsAddr, metrics.DefaultLimits, logger, metrics.NewCollector(nil, metrics.LocalSAs(srv.Counters), 0))
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn tmd: -metrics: %v\n", err)
			return 1
		}
		defer ms.Close()
		go ms.Serve(ctx)
	}
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

// openKeyLog opens tmd's -keylog file for appending, creating it mode
// 0600. It refuses a file group or others may access, and a symbolic link
// or anything but a regular file: the keys decrypt the group's traffic.
func openKeyLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("-keylog: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("-keylog: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("-keylog %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("-keylog %s: mode %04o lets group or others read the keys; chmod 600 %s", path, perm, path)
	}
	return f, nil
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

// dataPlaneFlags are tmd's options for the forwarding engine (SPEC E1).
type dataPlaneFlags struct {
	tun    string
	mtu    int
	mark   uint
	local  string
	src    string
	groups string
	// dropClear: keep the nftables table that drops clear packets of
	// covered traffic arriving from the network (dataplane.ClearIn).
	dropClear bool

	localPfx []netip.Prefix
	srcAddr  netip.Addr
	groupSet []string
}

func (f *dataPlaneFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tun, "tun", "", "run the data plane: create the TUN device `NAME`, route the policy's protected destinations into it and forward them as ESP (a GM); none: only the SA database (a KS)")
	fs.IntVar(&f.mtu, "mtu", 1400, "with -tun: the TUN device's `MTU` (room for ESP's overhead on the core links: 1400 on 1500-octet links)")
	fs.UintVar(&f.mark, "mark", 0x6770, "with -tun: the `FWMARK` of the engine's own ESP packets (routed by the main table; policy routing rules use it)")
	fs.StringVar(&f.local, "local", "", "with -tun: the GM's own LANs, `PREFIX,...`: never routed into the TUN even when a protected destination covers them, and their packets (arriving on the interface that routes to them) pass the -drop-clear table")
	fs.StringVar(&f.src, "src", "", "with -tun: the source `ADDR` of the GM's own packets into the TUN (its address on a protected LAN)")
	fs.BoolVar(&f.dropClear, "drop-clear", true, "with -tun: drop packets arriving in the clear from the network that the policy says must arrive encrypted (nftables table ip "+dataplane.ClearInTable+", needs nft(8)); false: accept them as routed")
	fs.StringVar(&f.groups, "group", "", "with -tun: the `GROUP,...` configured on this GM: the engine applies their policy and fail mode even while it holds no TEK of theirs")
}

func (f *dataPlaneFlags) check() error {
	if f.tun == "" {
		if f.local != "" || f.src != "" || f.groups != "" {
			return fmt.Errorf("-local, -src and -group need -tun")
		}
		return nil
	}
	if len(f.tun) >= unix.IFNAMSIZ {
		return fmt.Errorf("-tun %q: an interface name has at most %d characters", f.tun, unix.IFNAMSIZ-1)
	}
	if f.mtu < 576 || f.mtu > 65535 {
		return fmt.Errorf("-mtu %d: want 576..65535", f.mtu)
	}
	if f.mark == 0 || f.mark > 0xffffffff {
		return fmt.Errorf("-mark %d: want 1..4294967295", f.mark)
	}
	for _, s := range splitList(f.local) {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("-local %q: not an IPv4 prefix", s)
		}
		f.localPfx = append(f.localPfx, p.Masked())
	}
	if f.src != "" {
		a, err := netip.ParseAddr(f.src)
		if err != nil || !a.Is4() {
			return fmt.Errorf("-src %q: not an IPv4 address", f.src)
		}
		f.srcAddr = a
	}
	f.groupSet = splitList(f.groups)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// tmdDataPlane is the forwarding engine tmd runs with -tun: a TUN device,
// the engine reading its keys from tmd's MemoryBackend, and the policy
// routing kept in step with the installed policies.
type tmdDataPlane struct {
	log     *slog.Logger
	name    string
	mem     *tmd.MemoryBackend
	backend tmd.Backend
	eng     *dataplane.Engine
	routes  *dataplane.Routes
	// clearIn is the table dropping clear packets of covered traffic
	// from the network (nil: -drop-clear=false); clearText what was
	// last applied.
	clearIn   *dataplane.ClearIn
	clearText string
	clearErr  string // the last failure syncClearIn logged
	groups    []string
	// The counter of clearIn, as last read (clearDrops).
	dropsMu sync.Mutex
	dropsAt time.Time
	drops   uint64
	dropsOK bool
	kick    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

// startDataPlane creates the TUN device, starts the engine and installs
// the policy routing; on error it undoes what it did.
func startDataPlane(f dataPlaneFlags, logger *slog.Logger) (*tmdDataPlane, error) {
	dev, err := tun.CreateTUN(f.tun, f.mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %s: %w", f.tun, err)
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("TUN device %s: %w", f.tun, err)
	}
	mem := tmd.NewMemoryBackend()
	eng, err := dataplane.New(dataplane.Config{Keys: mem, TUN: dev, Mark: uint32(f.mark), Groups: f.groupSet})
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("data plane on %s: %w", name, err)
	}
	// Decrypted packets leave the TUN device towards hosts whose route
	// may point back into it: no reverse-path check on it.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/rp_filter", []byte("0"), 0o644); err != nil {
		logger.Warn("rp_filter of the TUN device not cleared", "tun", name, "err", err.Error())
	}
	r := &dataplane.Routes{TUN: name, Mark: uint32(f.mark), Local: f.localPfx, Src: f.srcAddr}
	// The rules of a tmd that died (kill -9) are still there and would
	// make Install's `ip rule add` fail: remove whatever is left first
	// (errors for what is not there are expected).
	_ = r.Remove()
	if err := r.Install(); err != nil {
		eng.Close()
		return nil, fmt.Errorf("policy routing for %s: %w", name, err)
	}
	d := &tmdDataPlane{log: logger, name: name, mem: mem, eng: eng, routes: r, groups: f.groupSet,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if f.dropClear {
		// The table of a tmd that died is replaced whole; a stale one
		// with no engine behind it is deleted first all the same.
		d.clearIn = &dataplane.ClearIn{TUN: name, Local: f.localPfx}
		_ = d.clearIn.Remove()
		if err := d.applyClearIn(time.Now()); err != nil {
			r.Remove()
			eng.Close()
			return nil, fmt.Errorf("%w (-drop-clear=false runs without it)", err)
		}
	}
	if err := eng.Run(); err != nil {
		d.removeClearIn()
		r.Remove()
		eng.Close()
		return nil, fmt.Errorf("data plane on %s: %w", name, err)
	}
	d.backend = engineBackend{MemoryBackend: mem, eng: eng}
	mem.Notify(d.changed)
	go d.routeLoop()
	logger.Info("data plane started", "tun", name, "mtu", f.mtu, "mark", f.mark, "local", f.local, "src", f.src,
		"groups", f.groups, "drop_clear", f.dropClear)
	return d, nil
}

// applyClearIn brings the clear-packet table in step with the policy the
// engine applies now (it changes with every policy and TEK, and when a
// TEK's times pass); nft runs only when the table's text changes.
func (d *tmdDataPlane) applyClearIn(now time.Time) error {
	if d.clearIn == nil {
		return nil
	}
	rules := dataplane.ClearInPolicy(d.mem, d.groups, now)
	text, _ := d.clearIn.Ruleset(rules)
	if text == d.clearText {
		return nil
	}
	cut, err := d.clearIn.Apply(rules)
	if err != nil {
		return err
	}
	if cut {
		d.log.Error("clear-packet table cut: the policy has more entries than it holds; covered packets the rest selects are accepted in the clear",
			"tun", d.name, "entries", len(rules), "limit", dataplane.MaxClearInRules)
	}
	d.clearText = text
	drops := 0
	for _, r := range rules {
		if r.Drop {
			drops++
		}
	}
	d.log.Info("clear-packet table updated", "tun", d.name, "table", "ip "+dataplane.ClearInTable, "entries", len(rules), "drop_entries", drops)
	return nil
}

// syncClearIn is applyClearIn for routeLoop: a failure is logged once
// until it changes or the table is applied again (it is retried every
// second).
func (d *tmdDataPlane) syncClearIn(now time.Time) {
	err := d.applyClearIn(now)
	switch {
	case err == nil:
		d.clearErr = ""
	case err.Error() != d.clearErr:
		d.clearErr = err.Error()
		d.log.Error("clear-packet table not updated; the previous one stays", "tun", d.name, "err", err.Error())
	}
}

func (d *tmdDataPlane) removeClearIn() {
	if d.clearIn == nil {
		return
	}
	if err := d.clearIn.Remove(); err != nil {
		d.log.Warn("clear-packet table not removed", "tun", d.name, "err", err.Error())
	}
}

// changed is the backend's Notify: the engine's snapshot is rebuilt at
// once, the routes by routeLoop (they run ip(8)).
func (d *tmdDataPlane) changed() {
	if err := d.eng.Refresh(); err != nil {
		d.log.Error("data plane refresh failed; forwarding with the previous keys", "err", err.Error())
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// protected returns the destinations of every Protect entry of every
// group's policy, sorted and without duplicates.
func (d *tmdDataPlane) protected() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range d.mem.Policies() {
		for _, e := range p {
			if e.Action == sadb.Protect && e.Dst.Addr().Is4() {
				out = append(out, e.Dst.Masked())
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Compare(b) })
	return slices.Compact(out)
}

func (d *tmdDataPlane) routeLoop() {
	defer close(d.done)
	// TEKs start sending, expire and are deactivated as time passes: what
	// the clear-packet table drops is checked every second too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-tick.C:
			d.syncClearIn(time.Now())
			continue
		case <-d.kick:
		}
		if direct := dataplane.DirectEntries(d.mem.Policies()); !slices.Equal(direct, d.routes.Direct) {
			// Before the routes: the GM's GDOI traffic must not follow a
			// new route into the TUN (the fail-close bootstrap's).
			if err := d.routes.SetDirect(direct); err != nil {
				d.log.Error("rules of the GM's own GDOI traffic not updated", "tun", d.name, "err", err.Error())
			} else {
				d.log.Info("rules of the GM's own GDOI traffic updated", "tun", d.name, "entries", len(direct))
			}
		}
		d.syncClearIn(time.Now())
		want := d.protected()
		if slices.Equal(want, d.routes.Protected) {
			continue
		}
		if err := d.routes.SetProtected(want); err != nil {
			d.log.Error("routes of the protected destinations not updated", "tun", d.name, "err", err.Error())
			continue
		}
		d.log.Info("routes of the protected destinations updated", "tun", d.name, "protected", fmt.Sprint(want))
	}
}

// clearDropsEvery is how often clearDrops runs nft at most.
const clearDropsEvery = 250 * time.Millisecond

// counters are the engine's counters for tmd's status and counters.
func (d *tmdDataPlane) counters() *tmd.DataPlaneCounters {
	out := &tmd.DataPlaneCounters{Device: d.name}
	for _, c := range d.eng.Counters() {
		out.Counters = append(out.Counters, tmd.Counter{Name: c.Name, Help: c.Help, Value: c.Value})
	}
	if n, ok := d.clearDrops(); ok {
		out.Counters = append(out.Counters, tmd.Counter{Name: dataplane.ClearInCounter,
			Help: "covered packets that arrived in the clear from the network, dropped", Value: n})
	}
	return out
}

// clearDrops reads the clear-packet table's counter from nft, at most
// every clearDropsEvery (status requests come from every client: one nft
// process each would be theirs to multiply); false when there is no table
// or nft cannot be read (the other counters are still worth showing).
func (d *tmdDataPlane) clearDrops() (uint64, bool) {
	if d.clearIn == nil {
		return 0, false
	}
	d.dropsMu.Lock()
	defer d.dropsMu.Unlock()
	if now := time.Now(); now.Sub(d.dropsAt) >= clearDropsEvery {
		n, err := d.clearIn.Drops()
		if err != nil && (d.dropsOK || d.dropsAt.IsZero()) {
			// Once per failure, not per request.
			d.log.Warn("clear-packet drops not read", "tun", d.name, "err", err.Error())
		}
		d.dropsAt, d.drops, d.dropsOK = now, n, err == nil
	}
	return d.drops, d.dropsOK
}

// stop stops the engine, closes the TUN device and removes the routes.
func (d *tmdDataPlane) stop() {
	d.mem.Notify(nil)
	close(d.quit)
	<-d.done
	st := d.eng.Stats()
	d.eng.Close()
	d.removeClearIn()
	if err := d.routes.Remove(); err != nil {
		d.log.Warn("policy routing not all removed", "tun", d.name, "err", err.Error())
	}
	d.log.Info("data plane stopped", "tun", d.name, "encaps", st.Encaps, "decaps", st.Decaps)
}

// engineBackend is tmd's MemoryBackend with the engine's per-SA counters.
type engineBackend struct {
	*tmd.MemoryBackend
	eng *dataplane.Engine
}

func (b engineBackend) QuerySA(group string, spi uint32) (tmd.SACounters, error) {
	if _, err := b.MemoryBackend.QuerySA(group, spi); err != nil {
		return tmd.SACounters{}, err
	}
	c, _ := b.eng.SACounters(group, spi) // not yet in the engine: zeros
	return tmd.SACounters(c), nil
}
