// Package mcast sends and receives the IPv4 multicast datagrams of GDOI
// rekeys (GROUPKEY-PUSH, SPEC T1: "`rekey address ipv4 ACL` selects the
// group address; sent with the configured TTL on the configured interface;
// GMs join the group").
//
// Only IPv4 is supported: IOS GET VPN multicast rekeys are IPv4
// (`rekey address ipv4`), and every function here rejects IPv6 addresses.
// It is Linux-only, like the rest of the daemon's socket code.
//
// # Sending
//
// The key server sends rekeys from its own address and port (udp/848). The
// daemon already has a socket bound there (one per local address,
// internal/node), so the preferred way is [SetMulticastOptions] on that
// socket: it sets IP_MULTICAST_IF, IP_MULTICAST_TTL and IP_MULTICAST_LOOP,
// and then conn.WriteToUDPAddrPort(b, group) sends the rekey with the
// configured TTL out of the configured interface, with the socket's address
// and port as source.
//
// [NewSender] makes a separate socket for the same purpose. Linux only lets
// it bind an address and port another socket has bound when both sockets
// set SO_REUSEADDR or SO_REUSEPORT; a socket made by net.ListenUDP (as
// internal/node's are) sets neither, so NewSender fails with "address
// already in use" next to it. See NewSender for why the Sender never takes
// datagrams away from the socket it shares the port with.
//
// # Receiving
//
// On Linux a UDP socket bound to a unicast address never receives datagrams
// sent to a multicast address (the destination must match the bound
// address), so a group member cannot receive rekeys on its unicast socket.
// [Listen] makes a second socket, bound to the group address and port, that
// receives exactly the datagrams described there; it coexists with a
// unicast socket on the same port.
package mcast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkGroup reports an error unless group is an IPv4 multicast address.
func checkGroup(group netip.Addr) error {
	if !group.Is4() || !group.IsMulticast() {
		return fmt.Errorf("%v is not an IPv4 multicast address", group)
	}
	return nil
}

// ifIndex resolves an interface name to its index and its first IPv4
// address (the zero Addr if it has none). The empty name is index 0: the
// kernel chooses by its routing table.
func ifIndex(ifName string) (int, netip.Addr, error) {
	if ifName == "" {
		return 0, netip.Addr{}, nil
	}
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("interface %q: %w", ifName, err)
	}
	var first netip.Addr
	addrs, err := ifi.Addrs()
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("interface %q: addresses: %w", ifName, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() {
				first = ip.Unmap()
				break
			}
		}
	}
	return ifi.Index, first, nil
}

// control runs f on the socket's file descriptor.
func control(conn *net.UDPConn, f func(fd int) error) error {
	if conn == nil {
		return errors.New("nil connection")
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// SetMulticastOptions configures an existing IPv4 UDP socket to send
// multicast datagrams:
//
//   - IP_MULTICAST_IF: out of interface ifName (by index; the interface's
//     first IPv4 address, if it has one, is given as well and is what
//     getsockopt(IP_MULTICAST_IF) reads back). The empty ifName leaves the
//     choice to the routing table, which, when the socket is bound to a
//     specific address, picks the interface owning that address.
//   - IP_MULTICAST_TTL: ttl, 0 to 255 (1, the usual value, keeps rekeys on
//     the local link).
//   - IP_MULTICAST_LOOP on: a group member on the same host (the lab, a KS
//     that is also a GM) receives the rekey too.
//
// The source address and port of what the socket sends stay those it is
// bound to. The socket's receiving side is not changed.
func SetMulticastOptions(conn *net.UDPConn, ifName string, ttl int) error {
	if ttl < 0 || ttl > 255 {
		return fmt.Errorf("mcast: multicast TTL %d out of range 0..255", ttl)
	}
	idx, addr, err := ifIndex(ifName)
	if err != nil {
		return fmt.Errorf("mcast: set multicast options: %w", err)
	}
	mreqn := &unix.IPMreqn{Ifindex: int32(idx)}
	if addr.IsValid() {
		mreqn.Address = addr.As4()
	}
	err = control(conn, func(fd int) error {
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreqn); err != nil {
			return fmt.Errorf("IP_MULTICAST_IF %q: %w", ifName, err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, ttl); err != nil {
			return fmt.Errorf("IP_MULTICAST_TTL %d: %w", ttl, err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1); err != nil {
			return fmt.Errorf("IP_MULTICAST_LOOP: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mcast: set multicast options on %v: %w", localAddr(conn), err)
	}
	return nil
}

func localAddr(conn *net.UDPConn) string {
	if conn == nil {
		return "<nil>"
	}
	return conn.LocalAddr().String()
}

// Sender sends multicast datagrams from its own socket. It is safe for
// concurrent use.
type Sender struct {
	conn  *net.UDPConn
	local netip.AddrPort
}

// neverPeer is the address a Sender's socket is connected to so that it is
// never chosen to receive a datagram: 224.0.0.0 is the unassignable base
// multicast address, and Linux drops every packet with a multicast source
// address as a martian before it reaches a socket.
var neverPeer = &unix.SockaddrInet4{Addr: [4]byte{224, 0, 0, 0}, Port: 9}

// NewSender opens a UDP socket bound to local (an IPv4 address and port,
// typically the key server's address and 848) with SO_REUSEADDR and
// SO_REUSEPORT, and configures it with [SetMulticastOptions] (ifName, ttl).
//
// Binding the port of another socket succeeds only if that socket set
// SO_REUSEADDR or SO_REUSEPORT too; prefer SetMulticastOptions on the
// daemon's existing socket. When the bind does share a port, the Sender's
// socket never receives: it is connected to a peer that cannot be the
// source of any datagram (see neverPeer), and Linux delivers a datagram to a
// connected UDP socket only if it comes from the connected peer, so the
// port's unicast and multicast datagrams all go to the other sockets.
// [Sender.Send] still reaches any group (sendto overrides the connected
// peer).
func NewSender(local netip.AddrPort, ifName string, ttl int) (*Sender, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	if !local.Addr().Is4() {
		return nil, fmt.Errorf("mcast: sender: local address %v is not IPv4", local)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = setReuse(int(fd)) })
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", local.String())
	if err != nil {
		return nil, fmt.Errorf("mcast: sender: %w", err)
	}
	conn := pc.(*net.UDPConn)
	if err := SetMulticastOptions(conn, ifName, ttl); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mcast: sender on %v: %w", local, err)
	}
	if err := control(conn, func(fd int) error { return unix.Connect(fd, neverPeer) }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mcast: sender on %v: connect to %v:%d (to receive nothing): %w",
			local, netip.AddrFrom4(neverPeer.Addr), neverPeer.Port, err)
	}
	// Connecting a socket bound to 0.0.0.0 binds it to the address the route
	// to neverPeer gives: read back what it is bound to now.
	var bound netip.AddrPort
	err = control(conn, func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		sa4, ok := sa.(*unix.SockaddrInet4)
		if !ok {
			return fmt.Errorf("bound to %T, not IPv4", sa)
		}
		bound = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port))
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mcast: sender on %v: getsockname: %w", local, err)
	}
	return &Sender{conn: conn, local: bound}, nil
}

// setReuse sets SO_REUSEADDR and SO_REUSEPORT.
func setReuse(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	return nil
}

// LocalAddr returns the address and port the Sender sends from.
func (s *Sender) LocalAddr() netip.AddrPort { return s.local }

// Conn returns the Sender's socket (for reading its options back; reading
// from it returns nothing).
func (s *Sender) Conn() *net.UDPConn { return s.conn }

// Send sends b as one datagram to group (an IPv4 multicast address and
// port).
func (s *Sender) Send(group netip.AddrPort, b []byte) error {
	group = netip.AddrPortFrom(group.Addr().Unmap(), group.Port())
	if err := checkGroup(group.Addr()); err != nil {
		return fmt.Errorf("mcast: send from %v: %w", s.local, err)
	}
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("mcast: send from %v to %v: %w", s.local, group, err)
	}
	sa := &unix.SockaddrInet4{Addr: group.Addr().As4(), Port: int(group.Port())}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, sa)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("mcast: send from %v to %v: %w", s.local, group, err)
	}
	return nil
}

// Close closes the Sender's socket.
func (s *Sender) Close() error { return s.conn.Close() }

// Join joins conn's socket to the IPv4 multicast group on interface ifName
// (IP_ADD_MEMBERSHIP by interface index; the empty ifName lets the routing
// table choose). Membership makes the host accept the group's datagrams on
// that interface (and announce it with IGMP); the socket itself receives
// them only if it is bound to the group address or to 0.0.0.0, and to the
// group's port: [Listen] makes such a socket. Membership ends when the
// socket is closed.
func Join(conn *net.UDPConn, group netip.Addr, ifName string) error {
	group = group.Unmap()
	if err := checkGroup(group); err != nil {
		return fmt.Errorf("mcast: join: %w", err)
	}
	idx, _, err := ifIndex(ifName)
	if err != nil {
		return fmt.Errorf("mcast: join %v: %w", group, err)
	}
	mreqn := &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(idx)}
	err = control(conn, func(fd int) error {
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreqn)
	})
	if err != nil {
		return fmt.Errorf("mcast: join %v on %q (socket %v): IP_ADD_MEMBERSHIP: %w", group, ifName, localAddr(conn), err)
	}
	return nil
}

// Listen opens a UDP socket for a group member to receive the rekeys sent
// to group (an IPv4 multicast address and port, e.g. 239.192.1.1:848) on
// interface ifName (the empty name lets the routing table choose).
//
// The socket is bound to the group address and port with SO_REUSEADDR and
// SO_REUSEPORT, joined to the group on the interface (IP_ADD_MEMBERSHIP),
// and has IP_MULTICAST_ALL off. It receives exactly the UDP datagrams whose
// destination is the group address and port and which arrived on ifName
// (including those this host sends there with IP_MULTICAST_LOOP on), from
// any source: the caller checks the source against its key servers, and
// authenticates the content. It receives no unicast datagram (their
// destination is not the group address) and no other group's datagrams,
// even groups other sockets of this host joined (the bound address, and
// IP_MULTICAST_ALL off, which also keeps out this group's datagrams arriving
// on interfaces it was not joined on).
//
// (Go's net.ListenUDP on a multicast address binds 0.0.0.0 instead, which
// would receive the port's unicast too and collide with a unicast socket of
// the same port; Listen binds the socket itself.)
//
// It coexists with a unicast socket of the same port (different bound
// address), and with other Listen sockets for the same group and port: each
// of them receives its own copy of every datagram.
func Listen(group netip.AddrPort, ifName string) (*net.UDPConn, error) {
	group = netip.AddrPortFrom(group.Addr().Unmap(), group.Port())
	if err := checkGroup(group.Addr()); err != nil {
		return nil, fmt.Errorf("mcast: listen: %w", err)
	}
	conn, err := bindGroup(group)
	if err != nil {
		return nil, fmt.Errorf("mcast: listen on %v: %w", group, err)
	}
	if err := Join(conn, group.Addr(), ifName); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mcast: listen on %v: %w", group, err)
	}
	return conn, nil
}

// bindGroup makes the socket Listen returns, not yet joined: SO_REUSEADDR,
// SO_REUSEPORT, IP_MULTICAST_ALL off, bound to group.
func bindGroup(group netip.AddrPort) (*net.UDPConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "udp4 "+group.String())
	defer f.Close() // net.FilePacketConn works on a duplicate
	if err := setReuse(fd); err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		return nil, fmt.Errorf("IP_MULTICAST_ALL off: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: group.Addr().As4(), Port: int(group.Port())}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("socket is a %T, not UDP", pc)
	}
	return conn, nil
}
