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
	"github.com/groupvpn/groupvpn/internal/udpserve"
)

// Server is an ikev2.Endpoint bound to a UDP socket.
type Server struct {
	conn   *net.UDPConn
	natt   *net.UDPConn // port 4500 of the same address, with Config.NATT
	loop   *udpserve.Loop[*ikev2.Endpoint, ikev2.Output]
	events chan ikev2.SAEvent
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
	s := &Server{conn: conn, events: make(chan ikev2.SAEvent, 64)}
	s.loop = udpserve.New(ep, now, s.deliver)
	if cfg.NATT {
		s.natt, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), ikev2.NATTPort)))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("ikev2udp: listen NAT-T port: %w", err)
		}
	}
	return s, nil
}

// nonESPMarker starts every IKE message on the NAT-T port (RFC 3948 §2.2).
var nonESPMarker = []byte{0, 0, 0, 0}

// Events delivers SA events; events nobody reads are dropped once the
// buffer is full rather than stall the protocol.
func (s *Server) Events() <-chan ikev2.SAEvent { return s.events }

// Do runs f on the goroutine that owns the endpoint and waits for it.
func (s *Server) Do(ctx context.Context, f func(ep *ikev2.Endpoint, now time.Time) ikev2.Output) error {
	return s.loop.Do(ctx, f)
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
		if p.NATT && s.natt != nil {
			s.natt.WriteToUDPAddrPort(append(append([]byte{}, nonESPMarker...), p.Data...), p.To)
			continue
		}
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
	read := func(conn *net.UDPConn, natt bool) {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if !natt {
					close(in)
				}
				return
			}
			d := buf[:n]
			if natt {
				// NAT keepalives (one 0xff octet) and ESP (a non-zero SPI
				// where the marker would be) are not ours.
				if n < 4 || string(d[:4]) != string(nonESPMarker) {
					continue
				}
				d = d[4:]
			}
			select {
			case in <- udpserve.Datagram{From: from, Data: append([]byte(nil), d...)}:
			default: // owner overloaded: drop, as the network would
			}
		}
	}
	go read(s.conn, false)
	defer s.conn.Close()
	if s.natt != nil {
		go read(s.natt, true)
		defer s.natt.Close()
	}
	return s.loop.Run(ctx, in, errors.New("ikev2udp: socket closed"))
}
