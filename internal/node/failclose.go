package node

import (
	"net/netip"
	"slices"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Fail-close before the first registration (SPEC T3) is the member's
// decision (gm.Member.Init, SetFailClose); the node gives it the key
// servers of every group, which the bootstrap policy lets through.

// allServers are the key servers of every member group, in order.
func (n *Node) allServers() []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range n.regs {
		out = append(out, r.cfg.Servers...)
	}
	return out
}

// SetFailClose changes a member group's fail mode and fail-close ACL
// (a reload; use inside Do). While the group holds no TEK, its bootstrap
// policy follows: installed (or reinstalled with the new ACL) when the
// group becomes fail-close or is in its bootstrap, removed when it stops
// being fail-close. A group holding keys, or only the key server's last
// policy, keeps its policy: only the fail mode changes. It reports
// whether a member group of that name exists.
func (n *Node) SetFailClose(group string, failClose bool, bypass []sadb.PolicyEntry) bool {
	i := slices.IndexFunc(n.regs, func(r *registration) bool { return r.cfg.Name == group })
	if i < 0 {
		return false
	}
	r := n.regs[i]
	r.cfg.FailClose, r.cfg.FailCloseBypass = failClose, slices.Clone(bypass)
	now := n.o.Now()
	n.execute(r, r.m.SetFailClose(failClose, bypass, n.allServers(), now), now)
	return true
}
