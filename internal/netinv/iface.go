package netinv

import (
	"net"
	"net/netip"
)

// InterfaceOf is the name of the up or down interface holding addr, "" if
// none does (a multicast join then lets the routing table choose).
func InterfaceOf(addr netip.Addr) string {
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
