package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// Daemon is one isakmpd: a node built from a configuration and the control
// server that shows it.
type Daemon struct {
	Node *node.Node
	Ctl  *ctl.Server

	mu       sync.Mutex
	config   *policy.Config
	baseline *policy.Config // the policy the GMs have: as of the last rekey
	log      *slog.Logger
	cm       *configMode // configure terminal (configmode.go)

	// listen and port are what the node was built with: a new
	// configuration maps to node options with them (apply.go).
	listen []netip.AddrPort
	port   uint16

	// inventory, when set (ServeInventory), is what Refresh serves: every
	// address of every up interface, or the addresses the iked broker
	// serves. Nil: the explicit list stays.
	inventory func() ([]netip.AddrPort, error)

	// sources are the sections of show crypto isakmp statistics read
	// from other processes (AddCounters, commands.go).
	sources []CounterSource

	// onHostname follow the configured hostname (OnHostname).
	onHostname []func(string)
	// logSinks take the configuration's logging (SetLogSinks, logging.go).
	logSinks *syslog.Sinks
	// keys is the key store on the CLI (ServeKeyStore, keys.go); nil: none.
	keys *keyCommands
}

// OnHostname calls f with the configured hostname now and again whenever a
// reload or a commit changes it: the syslog HOSTNAME follows `hostname`.
func (d *Daemon) OnHostname(f func(string)) {
	d.mu.Lock()
	d.onHostname = append(d.onHostname, f)
	h := d.config.Hostname
	d.mu.Unlock()
	f(h)
}

// New builds a daemon for c listening on listen; GMs contact KS addresses
// on port.
func New(c *policy.Config, listen []netip.AddrPort, port uint16, logger *slog.Logger, tune ...func(*node.Options)) (*Daemon, error) {
	o, err := Options(c, listen, port)
	if err != nil {
		return nil, err
	}
	o.Logger = logger
	for _, f := range tune {
		f(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if v2 := LeftToIKEv2d(c); len(v2) > 0 {
		logger.Info("groups left to ikev2d: their members register by G-IKEv2", "groups", strings.Join(v2, ","))
	}
	srv := ctl.NewServer(logger)
	// terminal monitor: every log line of the node also goes to the CLI
	// sessions that asked (bounded, rate-limited: ctl.Monitor).
	logger = slog.New(srv.Monitor().Handler(logger.Handler()))
	if o.Logger != nil {
		o.Logger = slog.New(srv.Monitor().Handler(o.Logger.Handler()))
	}
	d := &Daemon{Ctl: srv, config: c, baseline: c, log: logger, listen: listen, port: port}
	// Pre-shared keys come from the configuration in force, so removing
	// `crypto isakmp key` for a GM revokes it at once (SPEC R3).
	o.IKE.Creds.PSK = func(a netip.Addr) ([]byte, bool) { return d.Config().PSKFor(a) }
	n, err := node.New(o)
	if err != nil {
		return nil, err
	}
	d.Node = n
	d.Ctl.SetHostname(c.Hostname)
	Register(d.Ctl, n, d.Config, d.counterSources)
	installConfigMode(d, logger) // configure terminal, write memory (configmode.go)
	registerGDOI(d.Ctl, d)
	registerLogging(d) // show logging (logging.go)
	d.Ctl.SetAudit(func(ctx context.Context, user, line string, denied bool) { auditCommand(logger, user, line, denied) })
	return d, nil
}

// Config is the configuration in force.
func (d *Daemon) Config() *policy.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.config
}

// Run runs the node, and the control socket when socket is not empty,
// until ctx ends.
func (d *Daemon) Run(ctx context.Context, socket string) error {
	if socket == "" {
		return d.Serve(ctx, nil)
	}
	ln, err := ctl.Listen(socket)
	if err != nil {
		return err
	}
	return d.Serve(ctx, ln)
}

// Serve runs the node, and the control server on ln when it is not nil,
// until ctx ends. A caller binds ln first (ctl.Listen) to say the daemon
// is ready only once its control socket answers.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	errs := make(chan error, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 1
	if ln != nil {
		n++
		go func() { errs <- d.Ctl.ServeListener(ctx, ln) }()
	}
	go func() { errs <- d.Node.Run(ctx) }()
	err := <-errs
	cancel()
	// Both have ended when Serve returns: the node's sockets are closed
	// (a daemon started again at once binds the same addresses).
	for range n - 1 {
		<-errs
	}
	return err
}

// ServeInventory makes Refresh serve what inv returns at each refresh:
// every address of every up interface (netinv.WithPorts), or, with the
// group's broker, the addresses iked serves (SPEC D3, D4).
func (d *Daemon) ServeInventory(inv func() ([]netip.AddrPort, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inventory = inv
}

// Refresh brings the addresses served up to date (SPEC D3, D4): started on
// every address, the daemon takes a new inventory of the up interfaces,
// opens sockets on the new addresses and closes those of the removed ones,
// keeping phase-1 SAs, registrations and key-server state; started with an
// explicit list, it keeps that list. It returns a one-line summary, which
// it also logs.
func (d *Daemon) Refresh(ctx context.Context) (string, error) {
	d.mu.Lock()
	inventory := d.inventory
	d.mu.Unlock()
	if inventory == nil {
		var addrs []netip.AddrPort
		if err := d.Node.Do(ctx, func() { addrs = d.Node.Addrs() }); err != nil {
			return "", err
		}
		msg := fmt.Sprintf("addresses kept (explicit -listen list): %s", netinv.Join(addrs))
		d.log.Info("addresses kept (explicit -listen list)", "listen", netinv.Join(addrs))
		return msg, nil
	}
	inv, err := inventory()
	if err != nil {
		d.log.Error("address refresh failed", "err", err.Error())
		return "", fmt.Errorf("address refresh: %w", err)
	}
	var added, removed, now []netip.AddrPort
	var rerr error
	if err := d.Node.Do(ctx, func() {
		added, removed, rerr = d.Node.Refresh(inv)
		now = d.Node.Addrs()
	}); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("addresses refreshed: added %s; removed %s; serving %s", netinv.Join(added), netinv.Join(removed), netinv.Join(now))
	d.log.Info("addresses refreshed", "added", netinv.Join(added), "removed", netinv.Join(removed), "listen", netinv.Join(now))
	if rerr != nil {
		d.log.Error("address refresh incomplete", "err", rerr.Error())
		return msg, rerr
	}
	return msg, nil
}
