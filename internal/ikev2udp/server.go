// Package ikev2udp runs an ikev2.Endpoint on a real UDP socket, for the
// interoperability tests with strongSwan. One goroutine owns the endpoint
// (DESIGN.md §3): the socket reader hands it datagrams through a channel,
// callers hand it commands, and it arms one timer for the endpoint's next
// deadline. It is internal/ikeudp's twin for IKEv2.
package ikev2udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/ikev2"
)

// Server is an ikev2.Endpoint bound to a UDP socket.
type Server struct {
	conn   *net.UDPConn
	ep     *ikev2.Endpoint
	now    func() time.Time
	cmds   chan func()
	events chan ikev2.SAEvent
}

type datagram struct {
	from netip.AddrPort
	data []byte
}

// Listen binds addr and creates the endpoint. now is the clock (nil:
// time.Now).
func Listen(addr netip.AddrPort, cfg *ikev2.Config, limits ikev2.Limits, now func() time.Time) (*Server, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("ikev2udp: listen %s: %w", addr, err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	ep, err := ikev2.NewEndpoint(cfg, local, limits)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Server{conn: conn, ep: ep, now: now, cmds: make(chan func()), events: make(chan ikev2.SAEvent, 64)}, nil
}

// Addr is the bound address.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Events delivers SA events; events nobody reads are dropped once the
// buffer is full rather than stall the protocol.
func (s *Server) Events() <-chan ikev2.SAEvent { return s.events }

// Do runs f on the goroutine that owns the endpoint and waits for it.
func (s *Server) Do(ctx context.Context, f func(ep *ikev2.Endpoint, now time.Time) ikev2.Output) error {
	done := make(chan struct{})
	cmd := func() {
		defer close(done)
		s.deliver(f(s.ep, s.now()))
	}
	select {
	case s.cmds <- cmd:
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

// Initiate starts an IKE SA toward peer.
func (s *Server) Initiate(ctx context.Context, peer netip.AddrPort) error {
	var ierr error
	err := s.Do(ctx, func(ep *ikev2.Endpoint, now time.Time) ikev2.Output {
		_, out, err := ep.Initiate(peer, now)
		ierr = err
		return out
	})
	return errors.Join(err, ierr)
}

func (s *Server) deliver(out ikev2.Output) {
	for _, p := range out.Send {
		// A send error is a lost datagram: retransmission covers it.
		s.conn.WriteToUDPAddrPort(p.Data, p.To)
	}
	for _, ev := range out.Events {
		select {
		case s.events <- ev:
		default:
		}
	}
}

// Run serves until ctx ends; it closes the socket when it returns.
func (s *Server) Run(ctx context.Context) error {
	in := make(chan datagram, 256)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(in)
				return
			}
			select {
			case in <- datagram{from: from, data: append([]byte(nil), buf[:n]...)}:
			default: // owner overloaded: drop, as the network would
			}
		}
	}()
	defer s.conn.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if next := s.ep.NextTimer(); !next.IsZero() {
			timer.Reset(max(next.Sub(s.now()), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-in:
			if !ok {
				return errors.New("ikev2udp: socket closed")
			}
			s.deliver(s.ep.Handle(d.from, d.data, s.now()))
		case cmd := <-s.cmds:
			cmd()
		case <-timer.C:
			s.deliver(s.ep.Tick(s.now()))
		}
	}
}
