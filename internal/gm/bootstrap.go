package gm

import (
	"net/netip"
	"slices"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Bootstrap is the policy of a fail-close group while the GM has no policy
// from a key server: before its first registration (SPEC T3; IOS's `crypto
// map NAME gdoi fail-close` with `activate`). In order:
//
//   - Bypass: UDP to and from each key server's GDOI port, so that the
//     GM can register (IKE phase 1 runs on the same port; IOS lets its
//     control traffic through implicitly too); servers are every key
//     server of every group the GM is a member of, since the first group
//     whose policy matches a packet decides (dataplane) and each
//     group's bootstrap covers everything;
//   - Bypass: denies, the deny entries of the fail-close ACL (match
//     address in the fail-close block), in ACL order;
//   - Protect 0.0.0.0/0 to 0.0.0.0/0 with no TEK: everything else is
//     covered by the group and, with no TEK held and the group fail-close,
//     dropped (and counted).
//
// The key server's policy replaces it at the first registration.
func Bootstrap(servers []netip.AddrPort, denies []sadb.PolicyEntry) []sadb.PolicyEntry {
	const udp = 17
	any4 := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	var out []sadb.PolicyEntry
	seen := map[netip.AddrPort]bool{}
	for _, s := range servers {
		a := s.Addr().Unmap()
		if !a.Is4() || seen[netip.AddrPortFrom(a, s.Port())] {
			continue // IPv4 only, as the data plane
		}
		seen[netip.AddrPortFrom(a, s.Port())] = true
		ks := netip.PrefixFrom(a, 32)
		out = append(out,
			sadb.PolicyEntry{Action: sadb.Bypass, IPProto: udp, Src: any4, Dst: ks, DstPort: s.Port()},
			sadb.PolicyEntry{Action: sadb.Bypass, IPProto: udp, Src: ks, SrcPort: s.Port(), Dst: any4})
	}
	for _, d := range denies {
		d.Action, d.SPI = sadb.Bypass, 0
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return append(out, sadb.PolicyEntry{Action: sadb.Protect, Src: any4, Dst: any4})
}
