package dataplane

import (
	"slices"
	"strconv"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Direct routing of a GM's control traffic. While a fail-close group's
// bootstrap policy (internal/gm.Bootstrap) protects 0.0.0.0/0, every
// destination is routed into the TUN device, with the route's source
// address (Routes.Src, a LAN address): the GM's own GDOI traffic to its key
// servers would leave from the wrong address (the kernel's routing picks
// the registration's source) although the engine passes it in the clear.
// So the deny entries that have the shape of that traffic, UDP to or from
// one host's port, and that no permit entry before them can match (first
// match, groups in name order as the engine looks them up), are routed by
// the main table directly, by rules at preference Routes.Pref+3, ahead of
// the lookup of the protected destinations:
//
//	ip rule add pref P+3 to KS/32 ipproto udp dport 848 lookup main
//	ip rule add pref P+3 from KS/32 ipproto udp sport 848 lookup main
//
// What they select is what the engine would pass in the clear anyway.

// DirectEntries returns the entries of policies (by group) that Routes
// routes directly: Bypass entries for UDP between one host and port and
// any address and port, which no Protect entry before them (in the
// engine's order: groups by name, entries in order) can match.
func DirectEntries(policies map[string][]sadb.PolicyEntry) []sadb.PolicyEntry {
	names := make([]string, 0, len(policies))
	for g := range policies {
		names = append(names, g)
	}
	slices.Sort(names)
	var protect, out []sadb.PolicyEntry
	for _, g := range names {
		for _, e := range policies[g] {
			if e.Action == sadb.Protect {
				protect = append(protect, e)
				continue
			}
			if !controlShape(e) || slices.ContainsFunc(protect, func(p sadb.PolicyEntry) bool { return overlaps(p, e) }) {
				continue
			}
			e.SPI = 0
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// controlShape: UDP between one IPv4 host's port and anything.
func controlShape(e sadb.PolicyEntry) bool {
	if e.IPProto != 17 || !e.Src.Addr().Is4() || !e.Dst.Addr().Is4() {
		return false
	}
	to := e.Src.Bits() == 0 && e.SrcPort == 0 && e.Dst.Bits() == 32 && e.DstPort != 0
	from := e.Dst.Bits() == 0 && e.DstPort == 0 && e.Src.Bits() == 32 && e.SrcPort != 0
	return to || from
}

// overlaps reports whether a packet can match both entries.
func overlaps(a, b sadb.PolicyEntry) bool {
	port := func(x, y uint16) bool { return x == 0 || y == 0 || x == y }
	return (a.IPProto == 0 || b.IPProto == 0 || a.IPProto == b.IPProto) &&
		a.Src.Overlaps(b.Src) && a.Dst.Overlaps(b.Dst) && port(a.SrcPort, b.SrcPort) && port(a.DstPort, b.DstPort)
}

// directRule is the selector and action of the rule of a direct entry.
func (r *Routes) directRule(e sadb.PolicyEntry) []string {
	a := []string{"pref", strconv.Itoa(r.Pref + 3)}
	if e.Src.Bits() != 0 {
		a = append(a, "from", e.Src.Masked().String())
	}
	if e.Dst.Bits() != 0 {
		a = append(a, "to", e.Dst.Masked().String())
	}
	a = append(a, "ipproto", strconv.Itoa(int(e.IPProto)))
	if e.SrcPort != 0 {
		a = append(a, "sport", strconv.Itoa(int(e.SrcPort)))
	}
	if e.DstPort != 0 {
		a = append(a, "dport", strconv.Itoa(int(e.DstPort)))
	}
	return append(a, "lookup", "main")
}

// SetDirect makes the direct rules those of entries (DirectEntries), after
// Install: rules no longer wanted are deleted, new ones added. On error
// Direct is what was done so far.
func (r *Routes) SetDirect(entries []sadb.PolicyEntry) error {
	r.defaults()
	var kept []sadb.PolicyEntry
	var first error
	for _, e := range r.Direct {
		if slices.Contains(entries, e) {
			kept = append(kept, e)
			continue
		}
		if err := r.IP(append([]string{"rule", "del"}, r.directRule(e)...)...); err != nil {
			kept = append(kept, e)
			if first == nil {
				first = err
			}
		}
	}
	for _, e := range entries {
		if slices.Contains(kept, e) || !controlShape(e) {
			continue
		}
		if err := r.IP(append([]string{"rule", "add"}, r.directRule(e)...)...); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		kept = append(kept, e)
	}
	r.Direct = kept
	return first
}

// removeDirect deletes every rule at the direct rules' preference, also
// those a tmd killed with -9 left behind (Remove).
func (r *Routes) removeDirect() {
	for _, e := range r.Direct {
		_ = r.IP(append([]string{"rule", "del"}, r.directRule(e)...)...)
	}
	r.Direct = nil
	// Rules of an earlier tmd: delete by preference until none is left
	// (bounded: at most one per policy entry of every group).
	for range 4096 {
		if r.IP("rule", "del", "pref", strconv.Itoa(r.Pref+3)) != nil {
			return
		}
	}
}
