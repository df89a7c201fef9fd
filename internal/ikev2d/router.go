// Package ikev2d is the router of the IKEv2 daemon (SPEC D1, G2, G4;
// issue 17): it owns the sockets (its own UDP sockets, or virtual ones
// through the broker iked), one internal/ikev2 Endpoint per address, one
// event loop and its timers, and hands what arrives to the sans-IO roles:
// the G-IKEv2 key server (ks.Server + gikev2.GCKS) and group members
// (gikev2.Member, their TEKs into a sadb.Dataplane such as tmd). It is
// internal/node's twin for IKEv2 and holds no protocol logic of its own.
package ikev2d

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// DefaultPort is G-IKEv2's port (RFC 9838 §2: the GCKS listens on 848, as
// GDOI).
const DefaultPort = 848

// PacketConn is a UDP socket: *net.UDPConn, or an *iked.Conn through the
// broker.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// GMGroup is a group this daemon is a member of.
type GMGroup struct {
	Name    string
	ID      uint32
	Servers []netip.AddrPort // key servers, in order of preference
	Sender  bool             // asks for Sender-IDs (counter-mode groups)
}

// Config is what the daemon runs: the IKE credentials, the key-server
// groups (ks's configuration, as isakmpd's) and the member groups.
type Config struct {
	Hostname string
	Creds    ike.Credentials
	Suites   []ikev2.Suite // nil: internal/ikev2's defaults
	LocalID  *ikev2.Identity
	// CACerts are named in CERTREQ payloads (RFC 7296 §3.7): the
	// trustpoint's CAs, so that a peer sending its certificate only when
	// asked (strongSwan's send_cert = ifasked) sends it.
	CACerts  []*x509.Certificate
	Lifetime time.Duration // of the IKE SAs; zero: internal/ikev2's default
	KS       []ks.GroupConfig
	GM       []GMGroup
}

// Options configure a Router.
type Options struct {
	Listen []netip.AddrPort
	// PlainPort, if not zero, is the port (500) on which the router
	// answers ordinary IKEv2 peers: the sockets of Listen on that port
	// serve IKE_SA_INIT + IKE_AUTH without IDg, authenticated by
	// Config.Creds, as unicast IKE SAs of no group (a CHILD SA asked for
	// is refused with NO_PROPOSAL_CHOSEN, the IKE SA stands); the group
	// roles never send from them. Listen's other sockets serve G-IKEv2
	// only.
	PlainPort uint16
	// ListenPacket opens the socket of an address; nil: net.ListenUDP.
	ListenPacket func(netip.AddrPort) (PacketConn, error)
	// Dataplane receives the members' TEKs (tmd's client under srcmstr);
	// nil: a sadb.Memory in this process.
	Dataplane sadb.Dataplane
	// Store keeps the key-server state across restarts; nil: none.
	Store ks.Store
	// ListenMulticast opens a member's multicast rekey socket: bound to
	// group, joined on interface ifName; nil: mcast.Listen.
	ListenMulticast func(group netip.AddrPort, ifName string) (PacketConn, error)
	Logger          *slog.Logger
	Now             func() time.Time
	Rand            io.Reader
}

// sock is one served address.
type sock struct {
	local  netip.AddrPort
	conn   PacketConn
	ep     *ikev2.Endpoint // nil for a multicast rekey socket
	closed bool
	mcast  bool // joined to a group's multicast rekey address: GSA_REKEY only
	mcOpts bool // the multicast send options are set
	plain  bool // ordinary IKEv2 (Options.PlainPort): no group role uses it
}

type datagram struct {
	s    *sock
	from netip.AddrPort
	data []byte
}

// Router runs the daemon's roles on its sockets. Everything but Run's
// readers happens on the loop goroutine; Do runs a function there.
type Router struct {
	o      Options
	cfg    Config
	log    *slog.Logger
	socks  []*sock
	joined []*sock // multicast rekey sockets (members), one per destination
	// joinedBy is each member group's multicast rekey socket (groups with
	// the same destination share one); joinWarned rate-limits the warning
	// of a failed join, per group.
	joinedBy   map[string]*sock
	joinWarned map[string]time.Time
	in         chan datagram
	cmds       chan func()
	running    bool
	retired    ikev2.Stats // counters of closed sockets' endpoints

	ks *ksRole   // nil without key-server groups
	gm []*member // the member groups
	// Drops counts datagrams dropped before an endpoint or a role
	// (SPEC S5); overload is counted by the readers.
	Drops    Drops
	overload atomic.Uint64
}

// Drops are the router's own drop counters.
type Drops struct {
	NotIKEv2  uint64 // not an IKEv2 header
	RekeyNoGM uint64 // a GSA_REKEY for no group this daemon is a member of
	McastNot  uint64 // not a GSA_REKEY on a multicast rekey socket
	// PlainRefused counts requests refused on a plain IKE SA (a
	// CREATE_CHILD_SA, a G-IKEv2 exchange).
	PlainRefused uint64
}

// New opens the sockets of o.Listen and prepares the roles of cfg.
func New(cfg Config, o Options) (*Router, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ListenPacket == nil {
		o.ListenPacket = func(a netip.AddrPort) (PacketConn, error) {
			return net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		}
	}
	if o.Dataplane == nil {
		o.Dataplane = sadb.NewMemory()
	}
	if len(o.Listen) == 0 {
		return nil, errors.New("ikev2d: no address to listen on")
	}
	if o.ListenMulticast == nil {
		o.ListenMulticast = func(group netip.AddrPort, ifName string) (PacketConn, error) { return mcast.Listen(group, ifName) }
	}
	r := &Router{o: o, cfg: cfg, log: o.Logger, in: make(chan datagram, 1024), cmds: make(chan func()),
		joinedBy: map[string]*sock{}, joinWarned: map[string]time.Time{}}
	now := o.Now()
	if len(cfg.KS) > 0 {
		k, err := newKSRole(r, cfg.KS, now)
		if err != nil {
			return nil, err
		}
		r.ks = k
	}
	for _, g := range cfg.GM {
		if len(g.Servers) == 0 {
			return nil, fmt.Errorf("ikev2d: group %s: no key server address", g.Name)
		}
		r.gm = append(r.gm, newMember(r, g))
	}
	for _, a := range o.Listen {
		s, err := r.open(a)
		if err != nil {
			r.closeAll()
			return nil, err
		}
		r.socks = append(r.socks, s)
	}
	return r, nil
}

// ikeConfig is the endpoints' configuration: responder for the KS role,
// initiator for the member role (each member's GSA_AUTH carries its own
// group's IDg and SAg: Endpoint.InitiateWith).
func (r *Router) ikeConfig() *ikev2.Config {
	creds := r.cfg.Creds
	if creds.PSK != nil {
		// Looked up on the loop at each use: Reconfigure replaces it.
		creds.PSK = func(a netip.Addr) ([]byte, bool) { return r.cfg.Creds.PSK(a) }
	}
	c := &ikev2.Config{Creds: creds, Suites: r.cfg.Suites, LocalID: r.cfg.LocalID, Lifetime: r.cfg.Lifetime, AuthExchange: wire.ExchangeGSAAuth,
		CACerts: r.cfg.CACerts, Rand: r.o.Rand, Logger: r.log}
	if r.ks != nil {
		c.OnAuthSA = r.ks.onAuth
	}
	if len(r.gm) > 0 {
		c.AuthRequest = r.gm[0].m.Request().Payloads() // replaced per SA
	}
	return c
}

// plainConfig is the configuration of the ordinary IKEv2 endpoints
// (Options.PlainPort): IKE_AUTH, the same credentials, suites, identity
// and lifetime, no group hook, no CHILD SA (internal/ikev2 refuses one
// with NO_PROPOSAL_CHOSEN and keeps the IKE SA).
func (r *Router) plainConfig() *ikev2.Config {
	c := r.ikeConfig()
	c.AuthExchange, c.OnAuthSA, c.AuthRequest = wire.ExchangeIKEAuth, nil, nil
	return c
}

func (r *Router) open(a netip.AddrPort) (*sock, error) {
	conn, err := r.o.ListenPacket(a)
	if err != nil {
		return nil, fmt.Errorf("ikev2d: listen %s: %w", a, err)
	}
	local := a
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		local = ua.AddrPort()
	}
	plain := r.o.PlainPort != 0 && local.Port() == r.o.PlainPort
	cfg := r.ikeConfig()
	if plain {
		cfg = r.plainConfig()
	}
	ep, err := ikev2.NewEndpoint(cfg, local, ikev2.Limits{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ikev2d: %s: %w", a, err)
	}
	return &sock{local: local, conn: conn, ep: ep, plain: plain}, nil
}

func (r *Router) closeAll() {
	for _, s := range append(r.socks, r.joined...) {
		s.closed = true
		s.conn.Close()
	}
}

// Addrs are the addresses served. Use it inside Do once Run runs.
func (r *Router) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(r.socks))
	for _, s := range r.socks {
		out = append(out, s.local)
	}
	return out
}

// Refresh makes the router listen on exactly listen (SPEC D4): sockets for
// new addresses, the sockets of gone ones closed (with their IKE SAs); the
// key-server state and the members' registrations stay. An address that
// cannot be bound is reported and skipped; a list leaving no socket is
// refused whole. Use it inside Do.
func (r *Router) Refresh(listen []netip.AddrPort) (added, removed []netip.AddrPort, err error) {
	if len(listen) == 0 {
		return nil, nil, errors.New("ikev2d: no address to listen on")
	}
	served := func(a netip.AddrPort, s *sock) bool {
		return a.Addr().Unmap() == s.local.Addr().Unmap() && (a.Port() == s.local.Port() || a.Port() == 0)
	}
	var keep, gone, opened []*sock
	for _, s := range r.socks {
		if slices.ContainsFunc(listen, func(a netip.AddrPort) bool { return served(a, s) }) {
			keep = append(keep, s)
		} else {
			gone = append(gone, s)
		}
	}
	var errs []error
	for _, a := range listen {
		if slices.ContainsFunc(keep, func(s *sock) bool { return served(a, s) }) ||
			slices.ContainsFunc(opened, func(s *sock) bool { return served(a, s) }) {
			continue
		}
		s, err := r.open(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		opened = append(opened, s)
	}
	if len(keep)+len(opened) == 0 {
		for _, s := range opened {
			s.conn.Close()
		}
		errs = append(errs, fmt.Errorf("ikev2d: refresh would leave no address to listen on; still serving %v", r.Addrs()))
		return nil, nil, errors.Join(errs...)
	}
	r.socks = append(keep, opened...)
	for _, s := range opened {
		added = append(added, s.local)
		if r.running {
			go r.read(s)
		}
	}
	for _, s := range gone {
		s.closed = true
		s.conn.Close()
		r.retired = addStats(r.retired, s.ep.Stats)
		removed = append(removed, s.local)
		for _, m := range r.gm {
			m.sockGone(s)
		}
	}
	return added, removed, errors.Join(errs...)
}

// Do runs f on the loop and waits for it.
func (r *Router) Do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case r.cmds <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Router) read(s *sock) {
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed by Refresh or Run's end
		}
		select {
		case r.in <- datagram{s: s, from: from, data: append([]byte(nil), buf[:n]...)}:
		default:
			r.overload.Add(1) // the loop does not keep up: dropped, as a full socket buffer would
		}
	}
}

// Run serves until ctx ends, then closes every socket.
func (r *Router) Run(ctx context.Context) error {
	r.running = true
	for _, s := range append(r.socks, r.joined...) {
		go r.read(s)
	}
	defer r.closeAll()
	if r.ks != nil && r.ks.saver != nil {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { r.ks.saver.run(stop); close(done) }()
		defer func() {
			r.ks.saveDirty(r.o.Now()) // what is left, written before Run returns
			close(stop)
			<-done
		}()
	}
	now := r.o.Now()
	for _, m := range r.gm {
		m.start(now)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := r.nextTimer()
		if next.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(next.Sub(r.o.Now()), 0))
		}
		select {
		case <-ctx.Done():
			r.leave(r.o.Now())
			return ctx.Err()
		case d := <-r.in:
			if !d.s.closed {
				r.handle(d)
			}
		case f := <-r.cmds:
			f()
		case <-timer.C:
			r.tick(r.o.Now())
		}
	}
}

func (r *Router) nextTimer() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, s := range r.socks {
		earlier(s.ep.NextTimer())
	}
	if r.ks != nil {
		earlier(r.ks.nextTimer())
	}
	for _, m := range r.gm {
		earlier(m.next)
	}
	return next
}

func (r *Router) tick(now time.Time) {
	for _, s := range r.socks {
		if t := s.ep.NextTimer(); !t.IsZero() && !t.After(now) {
			r.deliver(s, s.ep.Tick(now), now)
		}
	}
	if r.ks != nil {
		r.ks.tick(now)
	}
	for _, m := range r.gm {
		if !m.next.IsZero() && !m.next.After(now) {
			m.timer(now)
		}
	}
}

// leave tells each key server a member is registered with that it leaves
// the group (RFC 9838 §2.3.2: GSA_REGISTRATION with IDg and
// N(REGISTRATION_FAILED)), once, without waiting for the answer: the
// daemon is stopping.
func (r *Router) leave(now time.Time) {
	for _, m := range r.gm {
		if m.sa == nil || m.s == nil || m.s.closed || m.sa.State() != ikev2.StateEstablished || !m.status.Registered {
			continue
		}
		out, err := m.s.ep.Request(m.sa, wire.ExchangeGSARegistration, m.m.Leave(), now)
		if err != nil {
			continue
		}
		for _, p := range out.Send {
			m.s.conn.WriteToUDPAddrPort(p.Data, p.To)
		}
		r.log.Info("G-IKEv2 member leaving the group", "group", m.g.Name, "ks", m.sa.Peer().String())
	}
}

// handle routes one datagram: a GSA_REKEY (no IKE SA: the Rekey SA's SPI)
// to the member roles, anything else to the address's endpoint.
func (r *Router) handle(d datagram) {
	now := r.o.Now()
	h, err := wire.ParseHeader(d.data)
	if err != nil || h.Version>>4 != 2 {
		r.Drops.NotIKEv2++
		return
	}
	if h.Exchange == wire.ExchangeGSARekey && h.Flags&wire.FlagResponse == 0 {
		for _, m := range r.gm {
			if spi, ok := m.m.RekeySPI(); ok && [8]byte(spi[:8]) == [8]byte(h.SPIi[:]) {
				m.rekey(d.data, now)
				return
			}
		}
		r.Drops.RekeyNoGM++
		return
	}
	if d.s.mcast {
		r.Drops.McastNot++
		return
	}
	r.deliver(d.s, d.s.ep.Handle(d.from, d.data, now), now)
}

// joinWarnEvery is how often, at most, a group's failed multicast join is
// logged (the member retries it at each new Rekey SA).
const joinWarnEvery = time.Minute

// join makes the router receive a group's multicast GSA_REKEYs (SPEC T1:
// members join the group): a socket bound to dst, joined on the interface
// of local, the address the member registered from. Only GSA_REKEYs are
// taken from it. A group has one such socket: a new destination leaves the
// old one (closed when no other group uses it).
func (r *Router) join(group string, dst netip.AddrPort, local netip.Addr) {
	if s := r.joinedBy[group]; s != nil && s.local == dst {
		return
	}
	r.leaveMulticast(group)
	for _, s := range r.joined {
		if s.local == dst {
			r.joinedBy[group] = s
			return
		}
	}
	ifName := netinv.InterfaceOf(local)
	conn, err := r.o.ListenMulticast(dst, ifName)
	if err != nil {
		now := r.o.Now()
		if last, ok := r.joinWarned[group]; !ok || now.Sub(last) >= joinWarnEvery {
			r.joinWarned[group] = now
			r.log.Warn("cannot join the multicast rekey group; rekeys will be missed and the member registers again instead",
				"group", group, "address", dst.String(), "interface", ifName, "err", err.Error())
		}
		return
	}
	s := &sock{local: dst, conn: conn, mcast: true}
	r.joined = append(r.joined, s)
	r.joinedBy[group] = s
	if r.running {
		go r.read(s)
	}
	r.log.Info("joined the multicast rekey group", "group", group, "address", dst.String(), "interface", ifName)
}

// leaveMulticast drops group's multicast rekey socket, closing it when no
// other group receives on it (a unicast Rekey SA, a new destination).
func (r *Router) leaveMulticast(group string) {
	s := r.joinedBy[group]
	if s == nil {
		return
	}
	delete(r.joinedBy, group)
	for _, o := range r.joinedBy {
		if o == s {
			return
		}
	}
	s.closed = true
	s.conn.Close()
	r.joined = slices.DeleteFunc(r.joined, func(o *sock) bool { return o == s })
	r.log.Info("left the multicast rekey group", "group", group, "address", s.local.String())
}

// deliver sends an endpoint's datagrams and hands its events to the roles.
func (r *Router) deliver(s *sock, out ikev2.Output, now time.Time) {
	for _, p := range out.Send {
		// A lost datagram is retransmitted by the protocol.
		s.conn.WriteToUDPAddrPort(p.Data, p.To)
	}
	if s.plain {
		r.plainEvents(s, out.Events, now)
		return
	}
	for _, ev := range out.Events {
		switch e := ev.Event.(type) {
		case ikev2.Request:
			if r.ks != nil {
				r.ks.request(s, ev.SA, e, now)
			}
		default:
			for _, m := range r.gm {
				m.event(s, ev.SA, ev.Event, now)
			}
		}
	}
	// A member whose IKE SA was established without the keys in GSA_AUTH's
	// response (a GCKS answering the two-exchange form) registers by
	// GSA_REGISTRATION.
	for _, m := range r.gm {
		if m.pending {
			m.pending = false
			m.request(now)
		}
	}
}

// sockFor picks the socket to reach to from: the one of the source
// address the kernel's routing picks (a connected UDP socket sends
// nothing), else the first of its family.
func (r *Router) sockFor(to netip.AddrPort) *sock {
	if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to)); err == nil {
		src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
		for _, s := range r.socks {
			if !s.plain && s.local.Addr().Unmap() == src {
				return s
			}
		}
	}
	for _, s := range r.socks {
		if !s.plain && s.local.Addr().Is4() == to.Addr().Is4() {
			return s
		}
	}
	return nil
}

// Stats are the IKEv2 endpoints' counters, closed sockets' included.
func (r *Router) Stats() ikev2.Stats {
	st := r.retired
	for _, s := range r.socks {
		st = addStats(st, s.ep.Stats)
	}
	return st
}

func addStats(a, b ikev2.Stats) ikev2.Stats {
	a.Malformed += b.Malformed
	a.UnknownSA += b.UnknownSA
	a.InitRejected += b.InitRejected
	a.RefusalSent += b.RefusalSent
	a.RefusalSuppressed += b.RefusalSuppressed
	a.CookieSent += b.CookieSent
	a.CookieSuppressed += b.CookieSuppressed
	a.CookieInvalid += b.CookieInvalid
	a.HalfOpenEvicted += b.HalfOpenEvicted
	a.HalfOpenPeerEvicted += b.HalfOpenPeerEvicted
	a.HalfOpenExpired += b.HalfOpenExpired
	a.SPICollision += b.SPICollision
	a.Dropped += b.Dropped
	a.Resent += b.Resent
	a.AuthFailed += b.AuthFailed
	return a
}

// plainEvents handles the events of an ordinary IKEv2 endpoint: its SAs
// belong to no group. A request the endpoint leaves to its owner (a
// CREATE_CHILD_SA, a G-IKEv2 exchange on an SA that is not a
// registration) is refused: NO_PROPOSAL_CHOSEN for a CREATE_CHILD_SA
// (RFC 7296 §1.3: no CHILD SA and no IKE SA rekey offered), INVALID_SYNTAX
// for anything else; the IKE SA stands. INFORMATIONAL (liveness, Delete)
// is internal/ikev2's.
func (r *Router) plainEvents(s *sock, evs []ikev2.SAEvent, now time.Time) {
	for _, ev := range evs {
		switch e := ev.Event.(type) {
		case ikev2.Established:
			r.log.Info("IKEv2 SA established (ordinary peer, no group)", "local", s.local.String(), "peer", e.Info.Peer.String(),
				"identity", e.Info.PeerID.String(), "suite", e.Info.Suite.String())
		case ikev2.Request:
			n := wire.NotifyInvalidSyntax
			if e.Exchange == wire.ExchangeCreateChildSA {
				n = wire.NotifyNoProposalChosen
			}
			r.Drops.PlainRefused++
			out, err := s.ep.Respond(ev.SA, []wire.Payload{&wire.Notify{NotifyType: n}}, now)
			if err != nil {
				continue
			}
			for _, p := range out.Send {
				s.conn.WriteToUDPAddrPort(p.Data, p.To)
			}
		case ikev2.Deleted, ikev2.Expired:
			r.log.Info("IKEv2 SA gone (ordinary peer)", "local", s.local.String(), "peer", ev.SA.Peer().String(), "why", fmt.Sprintf("%T", e))
		}
	}
}

// PlainSAs are the established IKE SAs of the ordinary IKEv2 sockets
// (Options.PlainPort). Use it inside Do; the SAs are
// the loop's: read them there.
func (r *Router) PlainSAs() []*ikev2.SA {
	var out []*ikev2.SA
	for _, s := range r.socks {
		if s.plain {
			out = append(out, s.ep.SAs()...)
		}
	}
	return out
}
