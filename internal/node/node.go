// Package node is one groupvpn isakmpd: UDP sockets on its addresses, an
// IKEv1 endpoint per socket, the key-server role (ks) and the group-member
// role (gm) for any groups, all owned by one goroutine fed by channels
// (DESIGN.md §3). The protocol work is done by the sans-IO packages; this
// package moves datagrams, runs timers and routes events.
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/kswriter"
	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/internal/ratelog"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// GMGroup is a group this node joins as a member.
type GMGroup struct {
	Name    string
	ID      uint32
	Servers []netip.AddrPort // tried in order
	SIDs    uint16           // sender IDs to ask for (counter-mode TEKs)
	// FailClose: traffic the group's policy covers is dropped while the
	// GM holds no TEK (SPEC T3); else it passes in the clear.
	FailClose bool
	// FailCloseBypass are the deny entries of the fail-close ACL (Bypass
	// entries): with FailClose, what passes in the clear before the first
	// registration (gm.Bootstrap).
	FailCloseBypass []sadb.PolicyEntry
}

// Options configure a Node.
type Options struct {
	Hostname  string
	Listen    []netip.AddrPort
	IKE       *ike.Config
	Limits    ike.Limits
	KS        []ks.GroupConfig
	GM        []GMGroup
	Dataplane sadb.Dataplane // nil: sadb.NewMemory()
	KEKs      gm.KEKStore    // the GM groups' KEKs; nil: the Dataplane if it keeps them (sadb.Memory, tmd.Client), else a sadb.NewMemory()
	Logger    *slog.Logger
	Rand      io.Reader
	Now       func() time.Time
	// PullTimeout is how long a GM waits for each GROUPKEY-PULL answer
	// before retransmitting (3 tries, then the next KS). Default 5 s.
	PullTimeout time.Duration
	// Backoff bounds the wait before retrying registration after a
	// failure: it starts at Backoff.Min and doubles up to Backoff.Max.
	BackoffMin, BackoffMax time.Duration
	// Hold keeps the GM registrations from starting until Register is
	// called (benchmarks release many GMs at once).
	Hold bool
	// Store keeps the key server's state across restarts (SPEC O4);
	// nil: nothing is kept.
	Store Store
	// Warnings are configuration notes to log at start.
	Warnings []string
	// ListenPacket opens the socket of one local address; nil: a UDP
	// socket of the node's own (net.ListenUDP).
	ListenPacket func(netip.AddrPort) (PacketConn, error)
	// SourceFor is the local address the routing picks to reach a key
	// server (a GM registers from the socket bound to it); nil: the
	// kernel's choice, read from a connected UDP socket that sends
	// nothing (route.go). Called on a goroutine of its own at each
	// connect, never on the event loop; it may block.
	SourceFor func(peer netip.AddrPort) (netip.Addr, error)
	// InterfaceOf names the interface holding a local address (a GM joins
	// its multicast rekey group there); nil: net.Interfaces (route.go).
	// Called by New and Refresh for each socket they open (a GM's only),
	// never on the event loop.
	InterfaceOf func(netip.Addr) string
	// Turns, when set, is told when the loop begins and ends handling
	// what one wait returned: the daemon's log writer keeps a turn's
	// lines and writes them together at its end (syslog.TurnWriter: one
	// write(2) for a batch of registrations, not one each). The loop ends
	// its turn before each wait and when Run returns or panics.
	Turns Turns
}

// Turns is told when a node's loop begins and ends a turn (Options.Turns).
type Turns interface {
	Begin()
	End()
}

// PacketConn is a UDP socket bound to one local address. *net.UDPConn is
// one; the iked broker's client provides others (the daemon started with
// its group, SPEC D1), whose datagrams arrive through iked.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// multicastConn is a PacketConn that sends multicast rekeys with an
// outgoing interface and TTL of its own (RFC 6407 §4.2: the SAK's
// multicast destination).
type multicastConn interface {
	SetMulticastOptions(ifName string, ttl int) error
}

// setMulticastOptions sets the interface and TTL of the multicast rekeys
// leaving from c.
func setMulticastOptions(c PacketConn, ifName string, ttl int) error {
	switch c := c.(type) {
	case *net.UDPConn:
		return mcast.SetMulticastOptions(c, ifName, ttl)
	case multicastConn:
		return c.SetMulticastOptions(ifName, ttl)
	}
	return fmt.Errorf("node: %T cannot send multicast", c)
}

type sock struct {
	conn   PacketConn
	ep     *ike.Endpoint
	local  netip.AddrPort
	closed bool // closed by Refresh: what it still delivers is dropped
	// ifName is the interface holding local's address (Options.InterfaceOf,
	// asked when the socket is opened, by a GM only): where a GM
	// registered from it joins its multicast rekey group.
	ifName string
	batch  batchConn // nil: one datagram per system call (batch.go)
	out    sendQueue // what this loop turn sends (flush)
	io     sockIO
}

// datagram is one received datagram. Its data is valid only while the
// loop handles it (Node.datagram): the loop's own read of its socket
// (readDirect) hands it in the read's buffer, which the next read
// overwrites, not a copy (issue 18: a copy per datagram). Whatever keeps
// part of it copies that part, as isakmp.ParseMessage does the message.
type datagram struct {
	sock *sock
	from netip.AddrPort
	data []byte
}

type serveKey struct {
	sa  *ike.SA
	mid uint32
}

// serving is a KS-side GROUPKEY-PULL kept for the GM's retransmissions.
type serving struct {
	sv      *gdoi.Serve
	started time.Time
}

// serveLinger is how long a KS keeps an exchange to answer retransmissions:
// twice what a GM of this project waits for an answer before it starts
// over (3 tries of PullTimeout, 5 s). A done exchange keeps only the
// digest of message 3 and what message 4 is made of (gdoi.Serve); it was
// 2 minutes, the whole Serve (issue 18: ~1 KB per registration of the
// last 2 minutes), then 30 s with message 4 itself (~520 octets in all,
// ~250 now).
const serveLinger = 30 * time.Second

// maxServesPerSA bounds the GROUPKEY-PULL exchanges served over one
// phase-1 SA and kept (in progress, or lingering serveLinger): a member
// pulls once per group at a time, and again only after a failure.
const maxServesPerSA = 32

// Node is a running isakmpd.
type Node struct {
	stopped chan struct{} // closed when Run returns: the readers stop
	ended   chan struct{} // made by New, closed when Run has returned: Do refuses
	o       Options
	log     *slog.Logger
	// unauth logs what unauthenticated input causes: bounded in size and
	// rate-limited per message, with a count of what it suppressed.
	unauth    *slog.Logger
	unauthLim *ratelog.Handler // unauth's handler: what it suppressed
	// refuseLim rate-limits the line of a refused GROUPKEY-PULL per peer
	// (refuse: an authenticated member may retry without pause).
	refuseLim *ratelog.Handler
	socks     []*sock
	ks        *ks.Server
	dp        sadb.Dataplane
	keks      gm.KEKStore
	regs      []*registration
	serves    serveTable
	in        chan []datagram // what one read returned: inQueue datagrams at most (batch.go)
	// inbox holds the functions other goroutines run on the loop (Do,
	// lookupSource); wake tells the loop (loop.go).
	inboxMu sync.Mutex
	inbox   []*command
	wakeCh  chan struct{}
	// direct is the one socket the loop reads itself while it has no
	// other (loop.go); directConn is its conn for wake, nil otherwise.
	direct     *sock
	directConn atomic.Pointer[net.UDPConn]

	// delivery is the KS role's rekey delivery (nil without KS groups).
	delivery   *ks.Delivery
	pull       *pullPolicy      // the KS role as GROUPKEY-PULL asks it
	saver      *kswriter.Writer // writes the KS's state off the loop; nil without a store
	mcastSocks []*sock
	joined     map[netip.AddrPort]bool
	stats      counters
	retired    []ike.Counter // the endpoint counters of sockets Refresh closed
	retiredLog uint64        // log records their endpoints suppressed
	// retiredDrops are the datagrams the kernel dropped on those
	// sockets (kernelDrops)
	retiredDrops uint64
	// suspects are our phase-1 SAs to a KS that no new pull may use
	// (register.go); bounded by the SAs we initiated.
	suspects map[*ike.SA]bool
	// unserved are the KS groups whose configured address no socket
	// serves (rekey.go checkServed).
	unserved map[string]netip.Addr
	// coop are the KS groups with redundancy, by name; ksPeers the
	// phase-1 SAs with their peer KSs (coop.go).
	coop    map[string]*coopGroup
	ksPeers map[netip.Addr]*peerKS
	cstats  coopCounters
	// handled is the Output a datagram's Endpoint.HandleInto appends to,
	// its arrays reused datagram after datagram (issue 18: two
	// allocations per datagram); taken while in use (datagram).
	handled ike.Output
}

// New binds the sockets and builds the roles; Run starts the node.
func New(o Options) (*Node, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PullTimeout == 0 {
		o.PullTimeout = 5 * time.Second
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 2 * time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 60 * time.Second
	}
	if o.Dataplane == nil {
		o.Dataplane = sadb.NewMemory()
	}
	if o.KEKs == nil {
		if k, ok := o.Dataplane.(gm.KEKStore); ok {
			o.KEKs = k
		} else {
			o.KEKs = sadb.NewMemory()
		}
	}
	if o.SourceFor == nil {
		o.SourceFor = kernelSource
	}
	if o.InterfaceOf == nil {
		o.InterfaceOf = interfaceOf
	}
	if o.IKE == nil {
		return nil, errors.New("node: no phase-1 policy")
	}
	o.IKE.DOI = isakmp.DOIGDOI
	if o.IKE.Logger == nil {
		o.IKE.Logger = o.Logger
	}
	if o.IKE.Rand == nil {
		o.IKE.Rand = o.Rand
	}
	lim := ratelog.New(o.Logger.Handler(), ratelog.Options{Now: o.Now})
	n := &Node{o: o, log: o.Logger, unauth: slog.New(lim), unauthLim: lim, refuseLim: ratelog.New(o.Logger.Handler(), ratelog.Options{Now: o.Now}), dp: o.Dataplane, keks: o.KEKs, serves: newServeTable(),
		in: make(chan []datagram, inQueue/readBatch), wakeCh: make(chan struct{}, 1), ended: make(chan struct{})}
	if len(o.KS) > 0 {
		n.ks = ks.New(ks.Options{Rand: o.Rand, Logger: o.Logger, Now: o.Now, Version: o.IKE.Version})
		var st ks.Store
		if o.Store != nil {
			n.saver = kswriter.New(o.Store, o.Logger)
			st = n.saver
		}
		n.delivery = ks.NewDelivery(n.ks, st)
		n.pull = &pullPolicy{ks: n.ks, saver: n.saver}
		now := o.Now()
		for _, g := range o.KS {
			if err := n.ks.AddGroup(g, now); err != nil {
				return nil, err
			}
		}
		// A restart: the groups' state from the store; a rekey that was
		// being delivered resumes once the sockets are open (checkServed).
		res, err := n.delivery.Restore(now)
		if err != nil {
			return nil, err
		}
		n.apply(res)
		if err := n.newCoop(); err != nil {
			return nil, err
		}
	}
	for _, g := range o.GM {
		if len(g.Servers) == 0 {
			return nil, fmt.Errorf("node: group %s has no key server address", g.Name)
		}
		n.regs = append(n.regs, n.newRegistration(g))
	}
	now := o.Now()
	for _, r := range n.regs {
		// Before registering: the fail mode, and a fail-close group
		// without keys gets the bootstrap policy (whatever policy an
		// earlier run left in tmd).
		n.execute(r, r.m.Init(n.allServers(), now), now)
	}
	if len(o.Listen) == 0 {
		return nil, errors.New("node: no address to listen on")
	}
	for _, a := range o.Listen {
		s, err := n.open(a)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.socks = append(n.socks, s)
	}
	n.checkServed()
	return n, nil
}

// open binds a UDP socket to a with its own IKEv1 endpoint.
func (n *Node) open(a netip.AddrPort) (*sock, error) {
	var conn PacketConn
	if n.o.ListenPacket != nil {
		c, err := n.o.ListenPacket(a)
		if err != nil {
			return nil, fmt.Errorf("node: listen on %s: %w", a, err)
		}
		conn = c
	} else {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, fmt.Errorf("node: listen on %s: %w", a, err)
		}
		growReadBuffer(c)
		conn = c
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	ep, err := ike.NewEndpoint(n.o.IKE, local, n.o.Limits)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &sock{conn: conn, ep: ep, local: local, batch: batchOf(conn)}
	if len(n.o.GM) > 0 {
		s.ifName = n.o.InterfaceOf(local.Addr())
	}
	return s, nil
}

// Addrs returns the bound addresses.
func (n *Node) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range n.socks {
		out = append(out, s.local)
	}
	return out
}

// Close closes the sockets (Run also does when it returns).
func (n *Node) Close() {
	for _, s := range n.socks {
		s.conn.Close()
	}
	for _, s := range n.mcastSocks {
		s.conn.Close()
	}
}

// Do runs f on the node's goroutine and waits for it. Until the loop
// accepts f, ctx can end the wait (f then never runs); once accepted, f
// is always waited for, so what it writes is the caller's when Do
// returns nil. After Run has returned, Do returns ErrStopped at once.
func (n *Node) Do(ctx context.Context, f func()) error {
	select {
	case <-n.ended:
		return ErrStopped
	default:
	}
	done := make(chan struct{})
	c := &command{f: func() { f(); close(done) }}
	n.post(c)
	var err error
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-n.ended:
		err = ErrStopped
	}
	if n.withdraw(c) {
		return err // never ran
	}
	<-done // accepted: waited for
	return nil
}

// Register starts registrations held by Options.Hold.
func (n *Node) Register(ctx context.Context) error {
	return n.Do(ctx, func() {
		now := n.o.Now()
		for _, r := range n.regs {
			r.m.Start(now)
		}
	})
}

// Run serves until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.ended)
	defer n.Close()
	n.stopped = make(chan struct{})
	defer close(n.stopped)
	if n.saver != nil {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { n.saver.Run(stop); close(done) }()
		defer func() { close(stop); <-done }() // what is queued is written before Run returns
	}
	n.direct = n.directSock()
	if n.direct != nil {
		n.directConn.Store(n.direct.conn.(*net.UDPConn))
		go func() {
			select {
			case <-ctx.Done():
				n.wake()
			case <-n.stopped:
			}
		}()
	}
	for _, s := range n.socks {
		if s != n.direct {
			go n.read(s)
		}
	}
	for _, w := range n.o.Warnings {
		n.log.Warn(w)
	}
	now := n.o.Now()
	if !n.o.Hold {
		for _, r := range n.regs {
			r.m.Wake(now) // register at once
		}
	}
	n.startCoop(now)
	timer := time.NewTimer(0)
	defer timer.Stop()
	n.beginTurn()
	defer n.endTurn() // also when the loop panics: the turn's log lines are written
	var rd *directReader
	for {
		now = n.o.Now()
		n.tick(now)
		n.flush() // what this turn sent: one sendmmsg per socket
		next := n.nextTimer()
		if n.direct != nil && !n.directValid() {
			n.leaveDirect()
		}
		if n.direct != nil {
			if rd == nil {
				rd = newDirectReader()
			}
			if err := n.readDirect(ctx, rd, next); err != nil {
				return err
			}
			continue
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(n.o.Now()), 0))
		} else {
			timer.Reset(time.Hour)
		}
		n.endTurn()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ds := <-n.in:
			n.beginTurn()
			for _, d := range ds {
				n.datagram(d)
			}
		case <-n.wakeCh:
			n.beginTurn()
			n.runInbox()
		case <-timer.C:
			n.beginTurn()
		}
	}
}

// beginTurn and endTurn tell Options.Turns, if set, that the loop begins
// and ends handling what one wait returned.
func (n *Node) beginTurn() {
	if n.o.Turns != nil {
		n.o.Turns.Begin()
	}
}

func (n *Node) endTurn() {
	if n.o.Turns != nil {
		n.o.Turns.End()
	}
}

// datagram routes a received datagram: rekeys and their acknowledgements
// travel outside any phase-1 SA; everything else goes to the endpoint.
func (n *Node) datagram(d datagram) {
	if d.sock.closed {
		n.stats.closedSocket++
		return // its address was removed by Refresh
	}
	now := n.o.Now()
	if len(d.data) >= isakmp.HeaderLen {
		switch isakmp.ExchangeType(d.data[18]) {
		case isakmp.ExchangePush:
			if len(n.regs) > 0 {
				n.onPush(d.sock, d.from, d.data, now)
				return
			}
		case isakmp.ExchangePushAck:
			if n.ks != nil {
				n.apply(n.delivery.Ack(d.from, d.data, now))
				return
			}
		}
	}
	if d.sock.ep == nil {
		n.stats.notRekey++
		return // a multicast rekey socket carries nothing else
	}
	// The Output is taken from the node while its events are routed: a
	// handler that gets here again (none does today) appends to its own.
	out := n.handled
	n.handled = ike.Output{}
	d.sock.ep.HandleInto(&out, d.from, d.data, now)
	n.process(d.sock, out, now)
	if cap(out.Send)+cap(out.Events) > 64 {
		return // an outlier's arrays (INITIAL-CONTACT's Deletes) are not kept
	}
	// Cleared: its entries name SAs and alias their datagrams.
	clear(out.Send)
	clear(out.Events)
	n.handled = ike.Output{Send: out.Send[:0], Events: out.Events[:0]}
}

func (n *Node) read(s *sock) {
	if s.batch != nil {
		n.readBatches(s, s.batch)
		return
	}
	buf := make([]byte, 65536)
	for {
		k, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		// Wait for the event loop rather than drop: while it is busy, the
		// socket's receive buffer (sockbuf.go) holds what arrives, and only
		// a full buffer loses datagrams, as the network would.
		select {
		case n.in <- []datagram{{sock: s, from: from, data: append([]byte(nil), buf[:k]...)}}:
		case <-n.stopped:
			return
		}
	}
}

func (n *Node) nextTimer() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, s := range n.socks {
		earlier(s.ep.NextTimer())
	}
	for _, r := range n.regs {
		if !r.awaiting {
			earlier(r.m.Next())
		}
	}
	if n.delivery != nil {
		earlier(n.delivery.Next())
	}
	earlier(n.coopNext())
	earlier(n.serves.due())
	return next
}

func (n *Node) tick(now time.Time) {
	for _, s := range n.socks {
		if t := s.ep.NextTimer(); !t.IsZero() && !t.After(now) {
			n.process(s, s.ep.Tick(now), now)
		}
	}
	for _, r := range n.regs {
		if t := r.m.Next(); !r.awaiting && !t.IsZero() && !t.After(now) {
			n.execute(r, r.m.Timer(now), now)
		}
	}
	n.sweep(now)
	n.coopTick(now)
	n.rekeyTick(now)
	if due := n.serves.due(); !due.IsZero() && !now.Before(due) {
		n.serves.expire(now)
	}
}

// sweep has the SA databases expire the TEKs and KEKs whose lifetime is
// over (sadb.Expirer: the rule and the deletion are the database's, one
// place; under tmd its client drops them from its mirror and tmd's sweep
// from tmd). Old TEKs stay installed until then, so traffic keeps flowing
// across re-registration.
func (n *Node) sweep(now time.Time) {
	dbs := []any{n.dp}
	if any(n.keks) != any(n.dp) {
		dbs = append(dbs, n.keks)
	}
	for _, db := range dbs {
		e, ok := db.(sadb.Expirer)
		if !ok {
			continue // a database that expires its SAs on its own clock
		}
		teks, _, _ := e.Expire(now)
		for _, t := range teks {
			n.log.Info("TEK expired", "group", t.Group, "spi", fmt.Sprintf("0x%08x", t.SPI))
		}
	}
}

// send queues b for to on s; the loop sends it at the end of its turn
// (flush). A lost datagram is the retransmission timers' business, as is
// one for a socket Refresh closed (a COOP peer's until it is found
// unreachable): it is not queued, since no flush would ever take it.
func (n *Node) send(s *sock, to netip.AddrPort, b []byte) {
	if s.closed {
		return
	}
	s.out.q = append(s.out.q, outbound{to: to, data: b})
}

// process sends an endpoint's datagrams and routes its events, at now (the
// time the endpoint was handed).
func (n *Node) process(s *sock, out ike.Output, now time.Time) {
	for _, p := range out.Send {
		n.send(s, p.To, p.Data)
	}
	for _, ev := range out.Events {
		switch e := ev.Event.(type) {
		case ike.Established:
			// A KS-KS SA may serve a registration too: this node can be
			// a GM of a group its COOP peer serves, with one SA for both.
			n.coopPhase1Up(s, ev.SA, now)
			for _, r := range n.regs {
				if e.Info.Initiator && r.m.AwaitsPhase1(e.Info.Peer) {
					r.sock = s
					n.execute(r, r.m.Phase1Up(ev.SA, false, now), now)
				}
			}
			if e.Info.Initiator {
				n.dropSuspects(s, e.Info.Peer, now)
			}
		case ike.PeerLostState:
			n.onPeerLost(ev.SA, now)
		case ike.Failed, ike.Deleted, ike.Expired:
			delete(n.suspects, ev.SA)
			n.coopPhase1Down(ev.SA, now)
			for _, r := range n.regs {
				f, failed := ev.Event.(ike.Failed)
				dead := failed && errors.Is(f.Err, ike.ErrDeadPeer)
				n.execute(r, r.m.Phase1Down(ev.SA, describe(ev.Event), dead, now), now)
			}
			n.serves.dropSA(ev.SA)
		case ike.Notified:
			for _, r := range n.regs {
				n.execute(r, r.m.Refused(ev.SA, e.Notify.NotifyType, now), now)
			}
		case ike.Phase2:
			n.phase2(s, ev.SA, e.Msg, e.Raw, now)
		}
	}
}

func describe(e ike.Event) string {
	switch e := e.(type) {
	case ike.Failed:
		return e.Err.Error()
	case ike.Deleted:
		return "deleted by the peer"
	case ike.Expired:
		return "lifetime expired"
	}
	return fmt.Sprintf("%T", e)
}

// phase2 routes a GROUPKEY-PULL message to the GM registration that owns
// it or to the KS. raw is m as received (ike.Phase2.Raw): gdoi.Serve keeps
// its digest only.
func (n *Node) phase2(s *sock, sa *ike.SA, m *isakmp.Message, raw []byte, now time.Time) {
	if m.Header.Exchange == isakmp.ExchangeCOOPAnn && n.ks != nil {
		n.onANN(s, sa, m, now)
		return
	}
	if m.Header.Exchange != isakmp.ExchangePull {
		n.stats.phase2Other++
		n.log.Debug("dropped phase-2 message of another exchange", "exchange", m.Header.Exchange.String(), "peer", sa.Peer().String())
		return
	}
	for _, r := range n.regs {
		if r.m.OwnsPull(sa, m.Header.MessageID) {
			n.onPull(r, s, m, now)
			return
		}
	}
	if n.ks == nil {
		n.stats.pullUnmatched++
		return
	}
	n.pull.now = now
	key := serveKey{sa, m.Header.MessageID}
	s0, held := n.serves.lookup(key)
	if s0 != nil {
		wasDone := s0.sv.Done()
		reply, done, err := s0.sv.Handle(m, raw)
		if errors.Is(err, gdoi.ErrUnauthenticated) {
			n.stats.pullForgedKS++ // the exchange stays for the GM's real message
			return
		}
		if errors.Is(err, gdoi.ErrAnswerGone) {
			// The member's message 3 again, not answered: the keys its
			// message 4 handed out were replaced (none goes with keys the
			// group no longer has), or it was answered again enough (a
			// replay). The member's retransmissions end in a new exchange.
			n.stats.pullAnswerGone++
			n.unauth.Debug("dropped GROUPKEY-PULL message 3 received again", "peer", sa.Peer().String(), "why", err.Error())
			return
		}
		if err != nil && wasDone {
			// Not the GM's message 3 again (its digest differs), and a done
			// exchange checks no HASH(3) any more: nothing authenticated
			// it. Dropped and counted; the exchange stays
			// for the GM's real retransmission (issue 18, review: it was
			// answered, logged at Warn per datagram and deleted).
			n.stats.pullAfterDone++
			n.unauth.Debug("dropped GROUPKEY-PULL message for a finished exchange", "peer", sa.Peer().String())
			return
		}
		if err != nil {
			n.refuse(s, sa, err)
			n.serves.del(key)
			return
		}
		if reply != nil {
			if wasDone {
				n.stats.pullAnsweredAgain++
			}
			n.send(s, sa.Peer(), reply)
		}
		if done {
			// Kept to answer a retransmitted message 3 by its digest:
			// the exchange's IV chain is no longer needed.
			sa.ForgetMessageID(key.mid)
		}
		return
	}
	if held >= maxServesPerSA {
		// A member runs one pull per group at a time; the exchanges
		// linger serveLinger. Without a bound one authenticated member
		// would make every pull over its SA walk an ever longer list
		// (review of a397e44: MEDIUM).
		n.stats.pullsOverSALimit++
		n.unauth.Debug("dropped GROUPKEY-PULL message 1: its phase-1 SA has the most exchanges one may", "peer", sa.Peer().String(), "exchanges", held)
		return
	}
	sv, reply, err := gdoi.NewServe(sa, m, raw, n.pull, n.o.Rand)
	if errors.Is(err, gdoi.ErrUnauthenticated) {
		n.stats.pullForgedKS++ // no notification to what nothing authenticated
		return
	}
	if err != nil {
		n.refuse(s, sa, err)
		return
	}
	n.serves.add(key, &serving{sv: sv, started: now})
	n.send(s, sa.Peer(), reply)
}

// refuse answers a failed registration with the notification the error
// names (PAYLOAD-MALFORMED for anything else... or INVALID-HASH).
func (n *Node) refuse(s *sock, sa *ike.SA, err error) {
	var r *gdoi.Refusal
	notify := isakmp.NotifyPayloadMalformed
	switch {
	case errors.As(err, &r):
		notify = r.Notify
	case errors.Is(err, gdoi.ErrHash):
		notify = isakmp.NotifyInvalidHashInformation
	}
	n.stats.pullsRefused++
	// Rate-limited per peer (a refused member may retry without pause),
	// not per text: one peer's flood does not hide another's refusal.
	slog.New(n.refuseLim.Keyed(sa.Peer().Addr().String())).Warn("refusing GROUPKEY-PULL", "peer", sa.Peer().String(), "notify", notify.String(), "err", err)
	if msg, merr := sa.Notify(notify, nil); merr == nil {
		n.send(s, sa.Peer(), msg)
	}
}

// Dataplane is the node's SA database.
func (n *Node) Dataplane() sadb.Dataplane { return n.dp }

// KEKStore is where the node's GM groups keep their KEKs.
func (n *Node) KEKStore() gm.KEKStore { return n.keks }

// phaseOneCount is len(PhaseOneSAs()) without copying them.
func (n *Node) phaseOneCount() int {
	k := 0
	for _, s := range n.socks {
		k += s.ep.Established()
	}
	return k
}

// PhaseOneSAs lists the established phase-1 SAs; use inside Do.
func (n *Node) PhaseOneSAs() []ike.Info {
	var out []ike.Info
	for _, s := range n.socks {
		for _, sa := range s.ep.SAs() {
			out = append(out, sa.Info())
		}
	}
	return out
}
