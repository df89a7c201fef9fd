package node

import (
	"errors"
	"net"
	"net/netip"
)

// What a GM asks the host about its addresses: the two lookups are
// Options (SourceFor, InterfaceOf), and neither runs on the event loop
// (issue 15: nothing in the loop dials or lists interfaces behind its
// back). SourceFor is asked by a goroutine at each connect, as before,
// and its answer comes back to the loop through cmds (the member waits
// for it); InterfaceOf is asked when a socket is opened (New, Refresh:
// I/O points already), so a GM's join reads the interface its socket's
// address was on then. These are the defaults.

// withSource finds the socket to reach peer from, off the loop, and hands
// it to then on the loop: the one bound to the source address the routing
// chooses for peer (Options.SourceFor), else the first of the same address
// family. An answer that arrives after r asked again (a newer connect) or
// after Run ended is dropped. Until the answer comes the member's timer
// waits (r.awaiting: tick and nextTimer pass it over), as it did while
// the loop looked up the address itself.
func (n *Node) withSource(r *registration, peer netip.AddrPort, then func(*sock)) {
	r.lookups++
	gen := r.lookups
	r.awaiting = true
	n.lookupSource(peer, func(s *sock) {
		if r.lookups == gen {
			r.awaiting = false
			then(s)
		}
	})
}

// lookupSource asks Options.SourceFor on a goroutine and hands the socket
// it names (sockFrom) to then on the loop, unless Run ended first.
func (n *Node) lookupSource(peer netip.AddrPort, then func(*sock)) {
	go func() {
		src, err := n.o.SourceFor(peer)
		n.post(&command{f: func() { then(n.sockFrom(src, err, peer)) }}) // dropped if Run has ended
	}()
}

var errNotLooked = errors.New("node: source address not looked up")

// sockFrom picks the socket bound to src (unless err), else the first of
// peer's address family, else the first.
func (n *Node) sockFrom(src netip.Addr, err error, peer netip.AddrPort) *sock {
	if err == nil {
		for _, s := range n.socks {
			if s.local.Addr() == src {
				return s
			}
		}
	}
	for _, s := range n.socks {
		if s.local.Addr().Is4() == peer.Addr().Is4() {
			return s
		}
	}
	return n.socks[0]
}

// kernelSource is the source address the kernel's routing picks for
// peer: a connected UDP socket's local address (connecting sends nothing).
func kernelSource(peer netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(peer))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(), nil
}

// interfaceOf names the interface that holds addr ("" if none does).
func interfaceOf(addr netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == addr.Unmap() {
					return ifc.Name
				}
			}
		}
	}
	return ""
}
