package ks

import (
	"slices"
	"time"
)

// replacedTEKs is what a group's last rekey replaced, handed out
// with the new TEKs to members that register before the other members stop
// accepting it.
//
// A rekey's GMs go on sending with the TEKs it replaces until its
// activation delay (RekeyATD) has passed since they got it, and accept
// them until its deactivation delay (RekeyDTD). A member that registers
// meanwhile without holding them (a router rebooted, a new one) got the
// new TEKs alone: it dropped the others' packets as of no SA until they
// switched, up to RekeyATD plus the time the rekey took to reach them all
// (a unicast rekey to 100,000 members: 15 s). Handed the replaced TEKs
// too, it opens those packets; it sends with the newest TEK, as before.
//
// Only TEKs without counter mode: a counter-mode TEK's sender IDs belong
// to its own generation (sid.go), and a GM of an earlier version that held
// it already (one registering again inside the activation delay sends
// with the old TEK until then) would take the download's IDs, of the new
// generation and maybe of another width, for it: the nonce reused. Only
// TEKs for traffic a new TEK is for (a policy replace may change the
// ACL: the new member's policy is the new one). Not after replace-now,
// whose members delete the old TEKs at once; a GM removal, keys adopted
// from a COOP primary or restored replace the TEKs otherwise, and
// whatever replaces the rekey's TEKs ends the hand-out. Not written to the
// state file: a KS restarted inside the window hands out the new TEKs
// alone.
type replacedTEKs struct {
	teks []*tek
	// by is the group's TEKs as the rekey left them; end, when the first
	// members to get it stop accepting the replaced ones (the rekey's
	// time plus RekeyDTD, or sooner if one expires before), the end of
	// every replaced TEK's life as handed out.
	by  []*tek
	end time.Time
}

// keep records what a plain rekey at now replaced: old, the TEKs before
// it; g.teks, the new ones.
func (r *replacedTEKs) keep(g *group, old []*tek, now time.Time) {
	*r = replacedTEKs{}
	for _, t := range old {
		if !t.counter() && now.Before(t.expires) && slices.ContainsFunc(g.teks, func(n *tek) bool { return n.sel == t.sel }) {
			r.teks = append(r.teks, t)
		}
	}
	if len(r.teks) == 0 {
		return
	}
	r.by, r.end = slices.Clone(g.teks), now.Add(RekeyDTD)
	for _, t := range r.teks {
		if t.expires.Before(r.end) {
			r.end = t.expires // so that every one lives while handed out
		}
	}
}

// live is the replaced TEKs handed out at now: none once the rekey's TEKs
// were replaced in turn, or the window ended.
func (r *replacedTEKs) live(g *group, now time.Time) []*tek {
	if len(r.teks) == 0 || !now.Before(r.end) || !slices.Equal(r.by, g.teks) {
		return nil
	}
	return r.teks
}

// until is when the replaced TEKs end as handed out.
func (r *replacedTEKs) until() time.Time { return r.end }
