// Package netinv takes the inventory of the addresses a daemon serves
// (SPEC D3): every unicast address of every up interface, IPv4 and IPv6
// (link-local excluded: a GM cannot name a KS by one without a zone), and
// compares two inventories for a refresh (D4).
package netinv

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Addresses returns every unicast address of every up interface.
func Addresses() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
				continue
			}
			out = append(out, ip.Unmap())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no usable address on any up interface")
	}
	return out, nil
}

// WithPorts returns every address of the inventory on every port, in
// address order then port order.
func WithPorts(ports ...uint16) ([]netip.AddrPort, error) {
	addrs, err := Addresses()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		for _, p := range ports {
			out = append(out, netip.AddrPortFrom(a, p))
		}
	}
	return out, nil
}

// Diff returns what is in next and not in cur (to open) and what is in cur
// and not in next (to close).
func Diff(cur, next []netip.AddrPort) (added, removed []netip.AddrPort) {
	for _, a := range next {
		if !slices.Contains(cur, a) {
			added = append(added, a)
		}
	}
	for _, a := range cur {
		if !slices.Contains(next, a) {
			removed = append(removed, a)
		}
	}
	return added, removed
}

// Join formats addresses for a log line or a listing: "none" for none.
func Join(addrs []netip.AddrPort) string {
	if len(addrs) == 0 {
		return "none"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Strings formats addresses one string each.
func Strings(addrs []netip.AddrPort) []string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return s
}
