package node

import (
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// Fail-close before the first registration (SPEC T3). A fail-close group
// whose GM holds no TEK of it when isakmpd starts gets the bootstrap policy
// (gm.Bootstrap): the fail-close ACL's deny entries and the GDOI traffic to
// the key servers pass, everything else is dropped by the data plane. The
// key server's policy replaces it at the first registration. Keys lost
// later (expiry without re-registration, GM removal) leave the key
// server's last policy in force: what it covers is dropped, the rest
// passes; the bootstrap comes back only when isakmpd starts again without
// keys.

// holdsTEK reports whether the data plane holds a TEK of group still
// accepted at now.
func (n *Node) holdsTEK(group string, now time.Time) bool {
	return slices.ContainsFunc(n.dp.TEKs(), func(t sadb.TEK) bool {
		return t.Group == group && now.Before(t.Expires) && (t.Deactivate.IsZero() || now.Before(t.Deactivate))
	})
}

// allServers are the key servers of every member group, in order.
func (n *Node) allServers() []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range n.regs {
		out = append(out, r.cfg.Servers...)
	}
	return out
}

// installBootstrap installs r's bootstrap policy, when the data plane
// keeps policies.
func (n *Node) installBootstrap(r *registration) {
	ps, ok := n.dp.(sadb.PolicyStore)
	if !ok {
		return
	}
	p := gm.Bootstrap(n.allServers(), r.cfg.FailCloseBypass)
	ps.SetPolicy(r.cfg.Name, p)
	r.bootstrap = true
	n.log.Info("fail-close: bootstrap policy installed until the first registration",
		"group", r.cfg.Name, "fail_close_acl_entries", len(r.cfg.FailCloseBypass), "entries", len(p))
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
	mode := sadb.FailOpen
	if failClose {
		mode = sadb.FailClose
	}
	n.dp.SetFailMode(group, mode)
	if n.holdsTEK(group, n.o.Now()) {
		return true
	}
	ps, ok := n.dp.(sadb.PolicyStore)
	if !ok {
		return true
	}
	switch {
	case failClose && (r.bootstrap || len(ps.Policy(group)) == 0):
		n.installBootstrap(r)
	case !failClose && r.bootstrap:
		ps.SetPolicy(group, nil)
		r.bootstrap = false
		n.log.Info("fail-close off: bootstrap policy removed", "group", group)
	}
	return true
}
