package iked

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// connQueue is how many datagrams wait for a Conn's reader; past it the
// client's reader blocks (backpressure to iked, then to the UDP socket
// buffers) rather than drop.
const connQueue = 256

// requestTimeout bounds a request to iked made without a deadline of its
// own (Listen, SetMulticastOptions).
const requestTimeout = 10 * time.Second

// Client is a protocol daemon's connection to iked (isakmpd for IKE
// version 1, ikev2d for 2; SPEC D1). It hands out one virtual socket
// (*Conn) per local address iked serves.
type Client struct {
	conn    *net.UnixConn
	path    string
	name    string
	version int

	wmu sync.Mutex // one frame encoded and written at a time
	wb  []byte

	mu      sync.Mutex
	conns   map[netip.AddrPort]*Conn
	pending map[uint32]chan Frame
	nextID  uint32
	addrs   []netip.AddrPort // from the welcome

	dead    chan struct{} // closed when the broker connection is gone
	deadErr error         // why; set before dead is closed

	dropped   atomic.Uint64
	badFrames atomic.Uint64
}

// Dial connects to iked at path and registers name as the daemon serving
// IKE major version ikeVersion (1 or 2). It fails with a message saying
// what to do when iked is not running, and with iked's reason when iked
// refuses (another daemon already serves the version, another API).
func Dial(ctx context.Context, path, name string, ikeVersion int) (*Client, error) {
	if ikeVersion != 1 && ikeVersion != 2 {
		return nil, fmt.Errorf("iked: IKE version %d is not 1 or 2", ikeVersion)
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("iked is not running (no socket at %s): start the group with startsrc -g ike", path)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("iked is not running (stale socket at %s): start the group with startsrc -g ike", path)
		}
		return nil, fmt.Errorf("iked: connect to %s: %w", path, err)
	}
	uc := nc.(*net.UnixConn)
	c := &Client{
		conn:    uc,
		path:    path,
		name:    name,
		version: ikeVersion,
		conns:   map[netip.AddrPort]*Conn{},
		pending: map[uint32]chan Frame{},
		dead:    make(chan struct{}),
	}
	if err := c.hello(ctx); err != nil {
		uc.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *Client) hello(ctx context.Context) error {
	if err := c.send(&Frame{Type: FrameHello, API: APIVersion, IKEVersion: uint8(c.version), Name: c.name}); err != nil {
		return fmt.Errorf("iked: hello to %s: %w", c.path, err)
	}
	deadline := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, MaxFrame+1)
	n, err := c.conn.Read(buf)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("iked: no answer to hello from %s: %w", c.path, err)
	}
	c.conn.SetReadDeadline(time.Time{})
	f, err := ParseFrame(buf[:n])
	if err != nil || f.Type != FrameWelcome {
		return fmt.Errorf("iked: unexpected answer to hello from %s: %v", c.path, err)
	}
	if !f.OK {
		return fmt.Errorf("iked refused %s: %s", c.name, f.Message)
	}
	c.addrs = f.Addrs
	return nil
}

// send writes one frame.
func (c *Client) send(f *Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := AppendFrame(c.wb[:0], f)
	if err != nil {
		return err
	}
	c.wb = b
	_, err = c.conn.Write(b)
	return err
}

// read is the one reader of the broker connection: datagrams go to the
// Conn of their local address, answers to their waiting request.
func (c *Client) read() {
	buf := make([]byte, MaxFrame+1)
	var err error
	for {
		var n int
		n, err = c.conn.Read(buf)
		if err != nil {
			break
		}
		if n == 0 {
			err = errors.New("iked closed the connection")
			break
		}
		f, perr := ParseFrame(buf[:n])
		if perr != nil {
			c.badFrames.Add(1)
			continue
		}
		switch f.Type {
		case FrameDatagram:
			c.deliver(f)
		case FrameAddrsAnswer, FrameResult, FrameStatsAnswer:
			c.mu.Lock()
			ch := c.pending[f.ID]
			delete(c.pending, f.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- f // buffered, one answer per request
			}
		default:
			c.badFrames.Add(1)
		}
	}
	c.deadErr = fmt.Errorf("iked: connection to %s lost: %w", c.path, err)
	close(c.dead)
}

// deliver queues a datagram for the Conn of its local address, blocking
// while that Conn is open and its queue full.
func (c *Client) deliver(f Frame) {
	local := netip.AddrPortFrom(f.Local.Addr().Unmap(), f.Local.Port())
	c.mu.Lock()
	cn := c.conns[local]
	c.mu.Unlock()
	if cn == nil {
		c.dropped.Add(1)
		return
	}
	d := datagram{from: f.Remote, data: append([]byte(nil), f.Payload...)}
	select {
	case cn.ch <- d:
	case <-cn.closed:
		c.dropped.Add(1)
	}
}

// request sends f with a fresh ID and waits for the answer carrying it.
func (c *Client) request(ctx context.Context, f Frame) (Frame, error) {
	ch := make(chan Frame, 1)
	c.mu.Lock()
	c.nextID++
	f.ID = c.nextID
	c.pending[f.ID] = ch
	c.mu.Unlock()
	cleanup := func() {
		c.mu.Lock()
		delete(c.pending, f.ID)
		c.mu.Unlock()
	}
	if err := c.send(&f); err != nil {
		cleanup()
		return Frame{}, fmt.Errorf("iked: request to %s: %w", c.path, err)
	}
	select {
	case a := <-ch:
		return a, nil
	case <-c.dead:
		cleanup()
		return Frame{}, c.deadErr
	case <-ctx.Done():
		cleanup()
		return Frame{}, fmt.Errorf("iked: no answer from %s: %w", c.path, ctx.Err())
	}
}

// Addrs asks iked which addresses it serves now (after its refresh, SPEC D4).
func (c *Client) Addrs(ctx context.Context) ([]netip.AddrPort, error) {
	a, err := c.request(ctx, Frame{Type: FrameAddrsRequest})
	if err != nil {
		return nil, err
	}
	if a.Type != FrameAddrsAnswer {
		return nil, fmt.Errorf("iked: answer of type %d to an address request", a.Type)
	}
	return a.Addrs, nil
}

// Stats asks iked for its counters (Stats.Counters): the drops made
// before a datagram reaches the daemon, for its show commands (SPEC S5);
// then this end's (daemon_unclaimed: Dropped, daemon_bad_frames:
// BadFrames). A counter this side does not know by name is kept, without
// help text.
func (c *Client) Stats(ctx context.Context) ([]ike.Counter, error) {
	a, err := c.request(ctx, Frame{Type: FrameStatsRequest})
	if err != nil {
		return nil, err
	}
	if a.Type != FrameStatsAnswer {
		return nil, fmt.Errorf("iked: answer of type %d to a stats request", a.Type)
	}
	help := map[string]string{}
	for _, k := range (Stats{}).Counters() {
		help[k.Name] = k.Help
	}
	out := make([]ike.Counter, len(a.Counters), len(a.Counters)+2)
	for i, k := range a.Counters {
		out[i] = ike.Counter{Name: k.Name, Help: help[k.Name], Value: k.Value}
	}
	// This end's drops of the broker connection.
	return append(out,
		ike.Counter{Name: "daemon_unclaimed", Help: "dropped by this daemon: for a local address it has no socket open on", Value: c.Dropped()},
		ike.Counter{Name: "daemon_bad_frames", Help: "malformed or unexpected frames from iked, dropped by this daemon", Value: c.BadFrames()},
	), nil
}

// Listen returns the virtual socket of local, an address iked serves. One
// Conn per address at a time.
func (c *Client) Listen(local netip.AddrPort) (*Conn, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	addrs, err := c.Addrs(ctx)
	if err != nil {
		return nil, fmt.Errorf("iked: listen on %s: %w", local, err)
	}
	served := false
	for _, a := range addrs {
		if a == local {
			served = true
			break
		}
	}
	if !served {
		return nil, fmt.Errorf("iked: listen on %s: iked does not serve it (refresh iked after adding an address: refresh -g ike)", local)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.conns[local]; dup {
		return nil, fmt.Errorf("iked: listen on %s: already open", local)
	}
	cn := &Conn{c: c, local: local, ch: make(chan datagram, connQueue), closed: make(chan struct{})}
	c.conns[local] = cn
	return cn, nil
}

// Done is closed when the connection to iked is gone; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.dead }

// Err returns why the connection to iked ended, nil while it lives.
func (c *Client) Err() error {
	select {
	case <-c.dead:
		return c.deadErr
	default:
		return nil
	}
}

// Dropped counts datagrams for a local address with no open Conn.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// BadFrames counts malformed or unexpected frames from iked.
func (c *Client) BadFrames() uint64 { return c.badFrames.Load() }

// Close ends the connection to iked; iked frees the IKE version. Every
// Conn's reads then fail.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.dead
	return err
}

type datagram struct {
	from netip.AddrPort
	data []byte
}

// Conn is a virtual UDP socket bound to one local address iked serves: it
// satisfies node.PacketConn and its multicast options, so that a daemon
// started with its group runs unchanged over iked (SPEC D1).
type Conn struct {
	c         *Client
	local     netip.AddrPort
	ch        chan datagram
	closed    chan struct{}
	closeOnce sync.Once
}

// ReadFromUDPAddrPort returns the next datagram iked received on the
// Conn's address. After Close it returns net.ErrClosed; when the broker
// connection is gone, the reason.
func (cn *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case <-cn.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	default:
	}
	select {
	case d := <-cn.ch:
		return copy(b, d.data), d.from, nil
	case <-cn.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	case <-cn.c.dead:
		// Deliver what was queued before the connection died.
		select {
		case d := <-cn.ch:
			return copy(b, d.data), d.from, nil
		default:
		}
		return 0, netip.AddrPort{}, cn.c.deadErr
	}
}

// WriteToUDPAddrPort has iked send b from the Conn's address to to.
func (cn *Conn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	select {
	case <-cn.closed:
		return 0, net.ErrClosed
	case <-cn.c.dead:
		return 0, cn.c.deadErr
	default:
	}
	if err := cn.c.send(&Frame{Type: FrameDatagram, Local: cn.local, Remote: to, Payload: b}); err != nil {
		return 0, fmt.Errorf("iked: send from %s to %s: %w", cn.local, to, err)
	}
	return len(b), nil
}

// LocalAddr returns the address the Conn stands for (a *net.UDPAddr).
func (cn *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(cn.local) }

// SetMulticastOptions has iked set the outgoing interface and TTL of
// multicast sends from the Conn's address (RFC 6407 §4.2 rekeys).
func (cn *Conn) SetMulticastOptions(ifName string, ttl int) error {
	if ttl < 0 || ttl > 255 {
		return fmt.Errorf("iked: multicast TTL %d out of range 0..255", ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	a, err := cn.c.request(ctx, Frame{Type: FrameSetMulticast, Local: cn.local, IfName: ifName, TTL: uint8(ttl)})
	if err != nil {
		return err
	}
	if a.Type != FrameResult {
		return fmt.Errorf("iked: answer of type %d to set-multicast", a.Type)
	}
	if !a.OK {
		return fmt.Errorf("iked: set multicast options on %s: %s", cn.local, a.Message)
	}
	return nil
}

// Close ends the Conn: its reads return net.ErrClosed and datagrams for
// its address are dropped until it is opened again.
func (cn *Conn) Close() error {
	cn.closeOnce.Do(func() {
		close(cn.closed)
		cn.c.mu.Lock()
		if cn.c.conns[cn.local] == cn {
			delete(cn.c.conns, cn.local)
		}
		cn.c.mu.Unlock()
	})
	return nil
}
