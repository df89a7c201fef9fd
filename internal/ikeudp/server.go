// Package ikeudp runs an ike.Endpoint on a real UDP socket. One goroutine
// owns the endpoint (DESIGN.md §3): the socket reader hands it datagrams
// through a channel, callers hand it commands, and it arms one timer for
// the endpoint's next deadline.
package ikeudp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/udpserve"
)

// Server is an ike.Endpoint bound to a UDP socket.
type Server struct {
	conn   *net.UDPConn
	loop   *udpserve.Loop[*ike.Endpoint, ike.Output]
	events chan ike.SAEvent
}

// Listen binds addr and creates the endpoint. now is the clock (nil:
// time.Now).
func Listen(addr netip.AddrPort, cfg *ike.Config, limits ike.Limits, now func() time.Time) (*Server, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("ikeudp: listen %s: %w", addr, err)
	}
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	ep, err := ike.NewEndpoint(cfg, local, limits)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	s := &Server{conn: conn, events: make(chan ike.SAEvent, 64)}
	s.loop = udpserve.New(ep, now, s.deliver)
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Events delivers SA events; the server drops events nobody reads once the
// buffer is full rather than stall the protocol.
func (s *Server) Events() <-chan ike.SAEvent { return s.events }

// Do runs f on the goroutine that owns the endpoint and waits for it.
func (s *Server) Do(ctx context.Context, f func(ep *ike.Endpoint, now time.Time) ike.Output) error {
	return s.loop.Do(ctx, f)
}

// Initiate starts main mode toward peer.
func (s *Server) Initiate(ctx context.Context, peer netip.AddrPort) error {
	var ierr error
	err := s.Do(ctx, func(ep *ike.Endpoint, now time.Time) ike.Output {
		_, out, err := ep.Initiate(peer, now)
		ierr = err
		return out
	})
	return errors.Join(err, ierr)
}

func (s *Server) deliver(out ike.Output) {
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
	in := make(chan udpserve.Datagram, 256)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(in)
				return
			}
			select {
			case in <- udpserve.Datagram{From: from, Data: append([]byte(nil), buf[:n]...)}:
			default: // owner overloaded: drop, as the network would
			}
		}
	}()
	defer s.conn.Close()
	return s.loop.Run(ctx, in, errors.New("ikeudp: socket closed"))
}
