package iked

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/internal/netinv"
	"github.com/groupvpn/groupvpn/internal/rundir"
)

// DefaultPorts are the ports iked owns: 848 (GDOI, RFC 6407 §5.2; G-IKEv2,
// RFC 9838), 500 (IKE, RFC 7296 §2) and 4500 (IKE behind NAT, RFC 3948).
var DefaultPorts = []uint16{848, 500, 4500}

// NATTPort is the port on which IKE messages carry the non-ESP marker
// (RFC 3948 §2.2).
const NATTPort = 4500

// ikeHeaderLen is the length of the ISAKMP / IKEv2 header (RFC 2408 §3.1,
// RFC 7296 §3.1); the version octet is at offset 17.
const (
	ikeHeaderLen  = 28
	versionOffset = 17
)

// readBuffer is the receive buffer asked for on each UDP socket: a KS
// answered by thousands of GMs at once must not lose datagrams to a full
// socket buffer (the idea of internal/node/sockbuf.go).
const readBuffer = 16 << 20

// helloTimeout bounds how long a connecting daemon may take to say hello.
const helloTimeout = 10 * time.Second

// Bounds of the broker socket: a local process that connects and stays
// silent, or a daemon that stops reading, holds a bounded number of
// goroutines and buffers for a bounded time, and never stalls the UDP
// readers, which serve every IKE version.
const (
	// DefaultMaxConns is Options.MaxConns's default: two daemons, and
	// room for restarts and probes.
	DefaultMaxConns = 16
	// forwardTimeout bounds handing one datagram to a daemon; a daemon
	// that does not take it in time loses it (Stats.Stalled), as a full
	// UDP socket buffer would.
	forwardTimeout = 100 * time.Millisecond
	// replyTimeout bounds writing a reply frame to a daemon; the
	// connection is closed when it does not read it.
	replyTimeout = 5 * time.Second
	// refusalLinger and maxLingering bound the refusals of connections
	// over MaxConns.
	refusalLinger = time.Second
	maxLingering  = 16
)

// Options configure a Server.
type Options struct {
	// Ports are the UDP ports served on every address; default
	// DefaultPorts.
	Ports []uint16
	// NATTPort is the port whose datagrams carry the non-ESP marker
	// (RFC 3948 §2.2); default NATTPort. Tests move it off 4500.
	NATTPort uint16
	// Inventory returns the addresses to serve (SPEC D3); default
	// netinv.WithPorts(Ports...).
	Inventory func() ([]netip.AddrPort, error)
	// Logger receives the broker's log; default slog.Default().
	Logger *slog.Logger
	// MaxConns bounds the daemon connections served at once; one more is
	// refused with a welcome saying so (Stats.Refused). Default
	// DefaultMaxConns.
	MaxConns int
}

// Stats are the broker's counters since start.
type Stats struct {
	Received   uint64 // UDP datagrams read
	Forwarded  uint64 // datagrams handed to a daemon
	Sent       uint64 // datagrams sent for a daemon
	Short      uint64 // dropped: shorter than an IKE header
	NoDaemon   uint64 // dropped: no daemon serves the IKE version
	ESP        uint64 // dropped: on the NAT-T port without the non-ESP marker
	NoSocket   uint64 // dropped: a daemon sent from an address not served
	SendErrors uint64 // a UDP send or a forward to a daemon failed
	BadFrames  uint64 // malformed or unexpected frames from daemons
	Refused    uint64 // daemon connections refused at hello or over MaxConns
	Stalled    uint64 // dropped: the daemon did not take the datagram in time
}

// Counters lists the counters by their stable snake_case names, in a
// stable order, with what each counts: the stats answer (FrameStatsAnswer)
// carries them, and isakmpd's show crypto isakmp statistics prints them
// (SPEC S5). A counter added to Stats is added here too.
func (st Stats) Counters() []ike.Counter {
	return []ike.Counter{
		{Name: "received", Help: "UDP datagrams read", Value: st.Received},
		{Name: "forwarded", Help: "datagrams handed to a daemon", Value: st.Forwarded},
		{Name: "sent", Help: "datagrams sent for a daemon", Value: st.Sent},
		{Name: "short", Help: "dropped: shorter than an IKE header", Value: st.Short},
		{Name: "no_daemon", Help: "dropped: no daemon serves the IKE version", Value: st.NoDaemon},
		{Name: "esp_on_natt_port", Help: "dropped: on the NAT-T port without the non-ESP marker", Value: st.ESP},
		{Name: "no_socket", Help: "dropped: a daemon sent from an address not served", Value: st.NoSocket},
		{Name: "send_errors", Help: "a UDP send or a forward to a daemon failed", Value: st.SendErrors},
		{Name: "bad_frames", Help: "malformed or unexpected frames from daemons", Value: st.BadFrames},
		{Name: "daemons_refused", Help: "daemon connections refused at hello or over the limit", Value: st.Refused},
		{Name: "stalled", Help: "dropped: the daemon did not take the datagram in time", Value: st.Stalled},
	}
}

// frameCounters is Counters without the help texts, for a stats answer.
func (st Stats) frameCounters() []FrameCounter {
	cs := st.Counters()
	out := make([]FrameCounter, len(cs))
	for i, c := range cs {
		out[i] = FrameCounter{Name: c.Name, Value: c.Value}
	}
	return out
}

type stats struct {
	received, forwarded, sent, short, noDaemon, esp, noSocket, sendErrors, badFrames, refused, stalled atomic.Uint64
}

// Server is the broker. Create it with New, then Serve (or Start + Run).
type Server struct {
	o   Options
	log *slog.Logger
	st  stats

	refreshMu sync.Mutex // one Refresh at a time

	mu      sync.Mutex
	socks   map[netip.AddrPort]*udpSock
	daemons map[uint8]*daemonConn // by IKE major version
	conns   map[*daemonConn]struct{}
	ln      *net.UnixListener
	path    string
	closed  bool

	wg        sync.WaitGroup
	nconns    atomic.Int64  // daemon connections being served
	lingering chan struct{} // refusals under way (refuseOverCap)
}

type udpSock struct {
	local netip.AddrPort
	conn  *net.UDPConn
	natt  bool
}

type daemonConn struct {
	conn    *net.UnixConn
	name    string
	version uint8
	pid     int32
	wmu     sync.Mutex // one frame encoded and written at a time
	buf     []byte
	// stalled is set when a datagram could not be handed over within
	// forwardTimeout; until one is taken again, datagrams are offered
	// without waiting (wmu guards it).
	stalled bool
}

// New returns a broker; it opens nothing until Start.
func New(o Options) *Server {
	if len(o.Ports) == 0 {
		o.Ports = slices.Clone(DefaultPorts)
	}
	if o.NATTPort == 0 {
		o.NATTPort = NATTPort
	}
	if o.Inventory == nil {
		ports := slices.Clone(o.Ports)
		o.Inventory = func() ([]netip.AddrPort, error) { return netinv.WithPorts(ports...) }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	return &Server{
		o:         o,
		log:       o.Logger,
		socks:     map[netip.AddrPort]*udpSock{},
		daemons:   map[uint8]*daemonConn{},
		conns:     map[*daemonConn]struct{}{},
		lingering: make(chan struct{}, maxLingering),
	}
}

// Start takes the inventory, opens a UDP socket per address (SPEC D3) and
// listens on the unix socket path (mode 0600). It refuses when another
// iked answers on path, and removes a stale socket file. An address that
// cannot be bound is logged and skipped; none at all is an error.
func (s *Server) Start(path string) error {
	// Bind the broker socket first: a second iked must not touch the
	// UDP sockets of the running one.
	ln, err := rundir.Listen("unixpacket", path, 0o600)
	switch {
	case errors.Is(err, rundir.ErrInUse):
		return fmt.Errorf("iked: another iked answers on %s", path)
	case err != nil:
		return fmt.Errorf("iked: %w", err)
	}
	addrs, err := s.o.Inventory()
	if err != nil {
		ln.Close()
		return fmt.Errorf("iked: address inventory: %w", err)
	}
	var errs []error
	for _, a := range addrs {
		if err := s.open(a); err != nil {
			errs = append(errs, err)
			s.log.Warn("address not served", "address", a.String(), "err", err.Error())
		}
	}
	if len(s.Addrs()) == 0 {
		ln.Close()
		s.closeSockets()
		if len(errs) == 0 {
			return errors.New("iked: the address inventory is empty: nothing to serve")
		}
		return fmt.Errorf("iked: no address could be served: %w", errors.Join(errs...))
	}
	s.mu.Lock()
	s.ln, s.path = ln, path
	s.mu.Unlock()
	s.log.Info("iked serving", "socket", path, "addresses", netinv.Join(s.Addrs()))
	return nil
}

// Run accepts daemon connections until ctx ends, then closes every socket
// and removes the socket file. Start must have succeeded.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("iked: Run before Start")
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	var delay time.Duration
	for {
		c, aerr := ln.AcceptUnix()
		if aerr != nil {
			if ctx.Err() == nil && rundir.RetryAccept(ctx.Done(), aerr, &delay) {
				if rundir.FirstRetry(delay) {
					s.log.Warn("iked: accept failed; retrying", "err", aerr)
				}
				continue
			}
			if ctx.Err() == nil {
				err = fmt.Errorf("iked: accept: %w", aerr)
			}
			break
		}
		delay = 0
		if s.nconns.Add(1) > int64(s.o.MaxConns) {
			s.nconns.Add(-1)
			s.refuseOverCap(c)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.nconns.Add(-1)
			s.serveDaemon(c)
		}()
	}
	s.shutdown()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// refuseOverCap answers a connection over Options.MaxConns with a welcome
// refusing it, and closes it; it is counted, and logged for the 1st, 2nd,
// 4th, 8th... time. The client's hello is read first (for at most
// refusalLinger, by at most maxLingering goroutines): closing a socket
// with a frame unread would reset the client's read of the refusal.
func (s *Server) refuseOverCap(c *net.UnixConn) {
	msg := fmt.Sprintf("iked: too many connections (limit %d)", s.o.MaxConns)
	if n := s.st.refused.Add(1); n&(n-1) == 0 {
		s.log.Warn("daemon connection refused", "reason", msg, "refused_total", n)
	}
	b, err := AppendFrame(nil, &Frame{Type: FrameWelcome, OK: false, Message: msg})
	if err != nil {
		c.Close()
		return
	}
	select {
	case s.lingering <- struct{}{}:
	default:
		c.Close() // too many refusals under way: no answer
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.lingering }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refusalLinger))
		c.Read(make([]byte, 64)) // the hello (a seqpacket read takes one frame, cut)
		c.Write(b)
	}()
}

func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for dc := range s.conns {
		dc.conn.Close()
	}
	path := s.path
	s.mu.Unlock()
	s.closeSockets()
	s.wg.Wait()
	if path != "" {
		os.Remove(path)
	}
}

func (s *Server) closeSockets() {
	s.mu.Lock()
	socks := s.socks
	s.socks = map[netip.AddrPort]*udpSock{}
	s.mu.Unlock()
	for _, u := range socks {
		u.conn.Close()
	}
}

// Addrs returns the addresses served now, sorted.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(s.socks))
	for a := range s.socks {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Received:   s.st.received.Load(),
		Forwarded:  s.st.forwarded.Load(),
		Sent:       s.st.sent.Load(),
		Short:      s.st.short.Load(),
		NoDaemon:   s.st.noDaemon.Load(),
		ESP:        s.st.esp.Load(),
		NoSocket:   s.st.noSocket.Load(),
		SendErrors: s.st.sendErrors.Load(),
		BadFrames:  s.st.badFrames.Load(),
		Refused:    s.st.refused.Load(),
		Stalled:    s.st.stalled.Load(),
	}
}

// Refresh takes a new inventory (SPEC D4): it opens sockets for the new
// addresses and closes those of the removed ones. Connected daemons stay
// connected. added lists the sockets actually opened; err joins the
// addresses that could not be opened (the others are served regardless).
func (s *Server) Refresh() (added, removed []netip.AddrPort, err error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	next, err := s.o.Inventory()
	if err != nil {
		return nil, nil, fmt.Errorf("iked: refresh: address inventory: %w", err)
	}
	toAdd, toRemove := netinv.Diff(s.Addrs(), next)
	for _, a := range toRemove {
		s.mu.Lock()
		u := s.socks[a]
		delete(s.socks, a)
		s.mu.Unlock()
		if u != nil {
			u.conn.Close()
			removed = append(removed, a)
		}
	}
	var errs []error
	for _, a := range toAdd {
		if e := s.open(a); e != nil {
			errs = append(errs, e)
			continue
		}
		added = append(added, a)
	}
	if len(errs) > 0 {
		err = fmt.Errorf("iked: refresh: %w", errors.Join(errs...))
	}
	return added, removed, err
}

// open binds one UDP socket and starts its reader.
func (s *Server) open(a netip.AddrPort) error {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	network := "udp4"
	if a.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(a))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a, err)
	}
	growReadBuffer(c)
	u := &udpSock{local: a, conn: c, natt: a.Port() == s.o.NATTPort}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return fmt.Errorf("listen on %s: %w", a, net.ErrClosed)
	}
	if _, dup := s.socks[a]; dup {
		s.mu.Unlock()
		c.Close()
		return fmt.Errorf("listen on %s: already served", a)
	}
	s.socks[a] = u
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.readUDP(u)
	}()
	return nil
}

// growReadBuffer enlarges the socket's receive buffer; as root it goes
// past net.core.rmem_max with SO_RCVBUFFORCE. Failure only costs
// retransmissions.
func growReadBuffer(c *net.UDPConn) {
	c.SetReadBuffer(readBuffer)
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, readBuffer)
		})
	}
}

// readUDP is the one reader of a UDP socket: it strips the non-ESP marker
// on the NAT-T port, checks the IKE header length and hands the datagram
// to the daemon of its IKE major version.
func (s *Server) readUDP(u *udpSock) {
	buf := make([]byte, MaxPayload+1)
	frame := make([]byte, 0, MaxFrame)
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "local", u.local.String(), "err", err.Error())
			continue
		}
		s.st.received.Add(1)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p := buf[:n]
		if u.natt {
			// RFC 3948 §2.2: IKE on the NAT-T port starts with four zero
			// octets; anything else is ESP (not handled here yet).
			if len(p) < 4 || p[0]|p[1]|p[2]|p[3] != 0 {
				s.st.esp.Add(1)
				s.log.Debug("ESP datagram on the NAT-T port dropped", "local", u.local.String(), "remote", from.String(), "octets", n)
				continue
			}
			p = p[4:]
		}
		if len(p) < ikeHeaderLen {
			s.st.short.Add(1)
			s.log.Debug("datagram shorter than an IKE header dropped", "local", u.local.String(), "remote", from.String(), "octets", len(p))
			continue
		}
		version := p[versionOffset] >> 4
		s.mu.Lock()
		dc := s.daemons[version]
		s.mu.Unlock()
		if dc == nil {
			s.st.noDaemon.Add(1)
			s.log.Debug("no daemon serves the IKE version; datagram dropped", "version", version, "local", u.local.String(), "remote", from.String())
			continue
		}
		var ferr error
		frame, ferr = AppendFrame(frame[:0], &Frame{Type: FrameDatagram, Local: u.local, Remote: from, Payload: p})
		if ferr == nil {
			ferr = dc.write(frame)
		}
		if ferr != nil {
			if errors.Is(ferr, errStalled) {
				s.st.stalled.Add(1)
			} else {
				s.st.sendErrors.Add(1)
			}
			s.log.Debug("datagram not forwarded", "daemon", dc.name, "err", ferr.Error())
			continue
		}
		s.st.forwarded.Add(1)
	}
}

// errStalled reports a datagram a stalled daemon had no room for.
var errStalled = errors.New("the daemon does not read: datagram dropped")

// write sends one datagram frame (one SOCK_SEQPACKET message) to the
// daemon, giving up after forwardTimeout; once a daemon has let one time
// out, the next are only offered, without waiting, until it takes one:
// a daemon that stops reading costs the UDP reader, which serves every
// IKE version, one timeout, not one per datagram.
func (dc *daemonConn) write(frame []byte) error {
	dc.wmu.Lock()
	defer dc.wmu.Unlock()
	if dc.stalled {
		// The deadline of the write that timed out has passed: cleared,
		// or every offer would fail on it before being tried.
		dc.conn.SetWriteDeadline(time.Time{})
		rc, err := dc.conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), frame, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
			return true // never wait for room
		}); err != nil {
			return err
		}
		switch {
		case serr == nil:
			dc.stalled = false
			return nil
		case errors.Is(serr, unix.EAGAIN):
			return errStalled
		default:
			return serr
		}
	}
	dc.conn.SetWriteDeadline(time.Now().Add(forwardTimeout))
	_, err := dc.conn.Write(frame)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		dc.stalled = true
		return errStalled
	}
	return err
}

func (dc *daemonConn) send(f *Frame) error {
	dc.wmu.Lock()
	defer dc.wmu.Unlock()
	b, err := AppendFrame(dc.buf[:0], f)
	if err != nil {
		return err
	}
	dc.buf = b
	dc.conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err = dc.conn.Write(b)
	return err
}

// serveDaemon runs one daemon connection: the hello, then its frames
// until it disconnects, when its IKE version becomes free again.
func (s *Server) serveDaemon(c *net.UnixConn) {
	defer c.Close()
	dc := &daemonConn{conn: c}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.conns[dc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, dc)
		if dc.version != 0 && s.daemons[dc.version] == dc {
			delete(s.daemons, dc.version)
		}
		s.mu.Unlock()
	}()
	dc.pid = peerPID(c)
	buf := make([]byte, MaxFrame+1)
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	n, err := c.Read(buf)
	if err != nil {
		s.log.Debug("daemon connection closed before hello", "err", err.Error())
		return
	}
	c.SetReadDeadline(time.Time{})
	hello, err := ParseFrame(buf[:n])
	if err != nil || hello.Type != FrameHello {
		s.st.badFrames.Add(1)
		s.refuse(dc, "the first frame must be a hello")
		return
	}
	if msg := s.register(dc, hello); msg != "" {
		s.refuse(dc, msg)
		return
	}
	s.log.Info("daemon registered", "daemon", dc.name, "ike_version", dc.version, "pid", dc.pid)
	defer s.log.Info("daemon disconnected; its IKE version is free", "daemon", dc.name, "ike_version", dc.version, "pid", dc.pid)
	if err := dc.send(&Frame{Type: FrameWelcome, OK: true, Addrs: s.Addrs()}); err != nil {
		return
	}
	out := make([]byte, MaxPayload+4)
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		f, err := ParseFrame(buf[:n])
		if err != nil {
			s.st.badFrames.Add(1)
			s.log.Debug("malformed frame dropped", "daemon", dc.name, "err", err.Error())
			continue
		}
		switch f.Type {
		case FrameDatagram:
			s.sendUDP(dc, f, out)
		case FrameAddrsRequest:
			if err := dc.send(&Frame{Type: FrameAddrsAnswer, ID: f.ID, Addrs: s.Addrs()}); err != nil {
				return
			}
		case FrameStatsRequest:
			if err := dc.send(&Frame{Type: FrameStatsAnswer, ID: f.ID, Counters: s.Stats().frameCounters()}); err != nil {
				return
			}
		case FrameSetMulticast:
			res := Frame{Type: FrameResult, ID: f.ID, OK: true}
			if err := s.setMulticast(f); err != nil {
				res.OK, res.Message = false, truncate(err.Error(), MaxMessage)
			}
			if err := dc.send(&res); err != nil {
				return
			}
		default:
			s.st.badFrames.Add(1)
			s.log.Debug("unexpected frame dropped", "daemon", dc.name, "type", f.Type)
		}
	}
}

// register claims the IKE version of hello for dc; it returns why not.
func (s *Server) register(dc *daemonConn, hello Frame) string {
	if hello.API != APIVersion {
		return fmt.Sprintf("iked speaks API %d, not %d", APIVersion, hello.API)
	}
	if hello.IKEVersion != 1 && hello.IKEVersion != 2 {
		return fmt.Sprintf("IKE version %d is not one iked brokers (1 or 2)", hello.IKEVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.daemons[hello.IKEVersion]; cur != nil {
		return fmt.Sprintf("IKE version %d is already served by %s (pid %d)", hello.IKEVersion, cur.name, cur.pid)
	}
	dc.name, dc.version = hello.Name, hello.IKEVersion
	s.daemons[hello.IKEVersion] = dc
	return ""
}

func (s *Server) refuse(dc *daemonConn, msg string) {
	s.st.refused.Add(1)
	s.log.Warn("daemon refused", "pid", dc.pid, "reason", msg)
	dc.send(&Frame{Type: FrameWelcome, OK: false, Message: truncate(msg, MaxMessage)})
}

// sendUDP sends a daemon's datagram from the socket of its local address,
// adding the non-ESP marker on the NAT-T port (RFC 3948 §2.2).
func (s *Server) sendUDP(dc *daemonConn, f Frame, out []byte) {
	local := netip.AddrPortFrom(f.Local.Addr().Unmap(), f.Local.Port())
	s.mu.Lock()
	u := s.socks[local]
	s.mu.Unlock()
	if u == nil {
		s.st.noSocket.Add(1)
		s.log.Debug("datagram from an address not served dropped", "daemon", dc.name, "local", local.String())
		return
	}
	p := f.Payload
	if u.natt {
		out = append(out[:0], 0, 0, 0, 0)
		p = append(out, p...)
	}
	if _, err := u.conn.WriteToUDPAddrPort(p, f.Remote); err != nil {
		s.st.sendErrors.Add(1)
		s.log.Debug("udp send", "local", local.String(), "remote", f.Remote.String(), "err", err.Error())
		return
	}
	s.st.sent.Add(1)
}

func (s *Server) setMulticast(f Frame) error {
	local := netip.AddrPortFrom(f.Local.Addr().Unmap(), f.Local.Port())
	s.mu.Lock()
	u := s.socks[local]
	s.mu.Unlock()
	if u == nil {
		return fmt.Errorf("iked does not serve %s", local)
	}
	if err := mcast.SetMulticastOptions(u.conn, f.IfName, int(f.TTL)); err != nil {
		return fmt.Errorf("iked: %s: %w", local, err)
	}
	return nil
}

// peerPID returns the pid of the process at the other end (SO_PEERCRED),
// 0 when unknown.
func peerPID(c *net.UnixConn) int32 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var pid int32
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = cred.Pid
		}
	})
	return pid
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
