package node

import (
	"net"
	"net/netip"
)

// What a GM asks the host about its addresses: the two lookups are
// Options (SourceFor, InterfaceOf), so that the event loop calls nothing
// it was not given; these are the defaults.

// sockFor picks the socket to reach peer from: the one bound to the source
// address the routing chooses for peer (Options.SourceFor), else the first
// of the same address family.
func (n *Node) sockFor(peer netip.AddrPort) *sock {
	if src, err := n.o.SourceFor(peer); err == nil {
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
