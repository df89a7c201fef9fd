package gm

import (
	"net/netip"
	"slices"
	"time"

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

// Fail-close before the first registration (SPEC T3). A fail-close group
// whose GM holds no TEK of it when the member starts gets the bootstrap
// policy: the fail-close ACL's deny entries and the GDOI traffic to the key
// servers pass, everything else is dropped by the data plane. The key
// server's policy replaces it at the first registration. Keys lost later
// (expiry without re-registration, GM removal) leave the key server's last
// policy in force: what it covers is dropped, the rest passes; the
// bootstrap comes back only when the member starts again without keys.

// holdsTEK reports whether the data plane holds a TEK of the group still
// accepted at now.
func (m *Member) holdsTEK(now time.Time) bool {
	return slices.ContainsFunc(m.o.Dataplane.TEKs(), func(t sadb.TEK) bool {
		return t.Group == m.cfg.Name && now.Before(t.Expires) && (t.Deactivate.IsZero() || now.Before(t.Deactivate))
	})
}

func (m *Member) setFailMode() {
	mode := sadb.FailOpen
	if m.cfg.FailClose {
		mode = sadb.FailClose
	}
	m.o.Dataplane.SetFailMode(m.cfg.Name, mode)
}

// Init gives the data plane the group's fail mode and, to a fail-close
// group without keys, the bootstrap policy (whatever policy an earlier
// run left there). servers are the key servers of every group the node is
// a member of (Bootstrap).
func (m *Member) Init(servers []netip.AddrPort, now time.Time) Result {
	var res Result
	m.setFailMode()
	if m.cfg.FailClose && !m.holdsTEK(now) {
		m.installBootstrap(&res, servers)
	}
	return res
}

// installBootstrap installs the bootstrap policy, when the data plane
// keeps policies.
func (m *Member) installBootstrap(res *Result, servers []netip.AddrPort) {
	ps, ok := m.o.Dataplane.(sadb.PolicyStore)
	if !ok {
		return
	}
	p := Bootstrap(servers, m.cfg.FailCloseBypass)
	ps.SetPolicy(m.cfg.Name, p)
	m.bootstrap = true
	res.note(SevInfo, "fail-close: bootstrap policy installed until the first registration",
		"group", m.cfg.Name, "fail_close_acl_entries", len(m.cfg.FailCloseBypass), "entries", len(p))
}

// SetFailClose changes the group's fail mode and fail-close ACL (a
// reload). While the group holds no TEK, its bootstrap policy follows:
// installed (or reinstalled with the new ACL) when the group becomes
// fail-close or is in its bootstrap, removed when it stops being
// fail-close. A group holding keys, or only the key server's last policy,
// keeps its policy: only the fail mode changes.
func (m *Member) SetFailClose(failClose bool, bypass []sadb.PolicyEntry, servers []netip.AddrPort, now time.Time) Result {
	var res Result
	m.cfg.FailClose, m.cfg.FailCloseBypass = failClose, slices.Clone(bypass)
	m.setFailMode()
	if m.holdsTEK(now) {
		return res
	}
	ps, ok := m.o.Dataplane.(sadb.PolicyStore)
	if !ok {
		return res
	}
	switch {
	case failClose && (m.bootstrap || len(ps.Policy(m.cfg.Name)) == 0):
		m.installBootstrap(&res, servers)
	case !failClose && m.bootstrap:
		ps.SetPolicy(m.cfg.Name, nil)
		m.bootstrap = false
		res.note(SevInfo, "fail-close off: bootstrap policy removed", "group", m.cfg.Name)
	}
	return res
}
