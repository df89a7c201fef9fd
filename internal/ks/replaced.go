package ks

import (
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/version"
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
// A counter-mode (AES-GCM) TEK only to members of
// version.ReplacedCounterTEKs or later: its sender IDs belong to its own
// generation (sid.go), and a GM of an earlier version that held it
// already (one registering again inside the activation delay sends with
// the old TEK until then) would take the download's IDs, of the new
// generation and maybe of another width, for it: the nonce reused. A
// later GM installs one it did not hold without sender IDs (it only opens
// packets with it, a replay window per sender told by the IV's top 32
// bits) and keeps one it held as it was. Only TEKs
// for traffic a new TEK is for (a policy replace may change the
// ACL: the new member's policy is the new one). Not after replace-now,
// whose members delete the old TEKs at once; a GM removal, keys adopted
// from a COOP primary or restored replace the TEKs otherwise, and
// whatever replaces the rekey's TEKs ends the hand-out. Not written to the
// state file: a KS restarted inside the window hands out the new TEKs
// alone.
type replacedTEKs struct {
	// teks is what is handed out to members that take counter-mode TEKs
	// (ctr), plain the rest: those without counter mode, what others
	// get (teks itself when there is no counter-mode one).
	teks, plain []*tek
	// handedOut counts the pulls' messages 2 that listed them, over the
	// group's life (ReplacedHandedOut).
	handedOut uint64
	// by is the group's TEKs as the rekey left them; end, when the
	// hand-out ends: the rekey's time plus RekeyDTD (when the first
	// members to get it stop accepting the replaced ones), or sooner
	// (keep).
	by  []*tek
	end time.Time
}

// keyGrace is how long after the hand-out's end a registration's key
// download still carries the replaced TEKs' keys: its SA payload, sent
// before its member's message 3, may have listed them (a pull's message
// 3 retransmitted comes within it).
const keyGrace = 30 * time.Second

// keep records what a rekey at now replaced: old, the TEKs before it;
// g.teks, the new ones.
//
// A replaced TEK is one that ends at least a second before the new TEK
// for its traffic (the lifetimes go in whole seconds): a GM tells which
// is which by that (gm.InstallHolding) and sends with the one that ends
// later, so a TEK whose policy's lifetime was shortened, which ends
// after the new one, is not handed out.
//
// A GM of an earlier version times its next registration by every TEK of
// its download (gm.ReregisterAt: the earliest end less one or two of its
// re-registration windows w), the replaced ones included. So the hand-out
// ends at least two windows (and a second) before any replaced TEK
// without counter mode ends (a scheduled rekey comes three windows before
// the TEKs end: the hand-out then lasts one window less a second, 29 s
// for TEKs of 10 minutes, 90 s from TEKs of about 31 minutes, if the
// group's first TEK policy has the same lifetime: w is that policy's),
// each with the lifetime it has left: such a GM registers once more,
// after the hand-out, instead of again and again while it lasts (each
// registration taking sender IDs). A counter-mode one, which
// only later GMs get (they time their registrations by the current TEKs),
// does not shorten the hand-out: it is handed out only if it ends after
// the hand-out and its keyGrace (and a second).
func (r *replacedTEKs) keep(g *group, old []*tek, now time.Time) {
	*r = replacedTEKs{handedOut: r.handedOut}
	if len(g.teks) == 0 {
		return
	}
	w := gdoi.ReregistrationWindow(g.teks[0].policy.Lifetime) // a GM's: its download's first TEK's (gm.ReregisterAt)
	end := now.Add(RekeyDTD)
	var kept []*tek
	for _, t := range old {
		if i := slices.IndexFunc(g.teks, func(n *tek) bool { return n.sel == t.sel }); i < 0 || g.teks[i].expires.Before(t.expires.Add(time.Second)) {
			continue
		}
		if t.counter() {
			kept = append(kept, t) // checked against the end below
			continue
		}
		// Two windows and a second (a lifetime goes in whole seconds,
		// rounded down: a GM may see it end up to a second early).
		last := t.expires.Add(-2*w - time.Second)
		if !now.Before(last) {
			continue
		}
		kept = append(kept, t)
		if last.Before(end) {
			end = last
		}
	}
	for _, t := range kept {
		if !t.counter() || !t.expires.Before(end.Add(keyGrace+time.Second)) {
			r.teks = append(r.teks, t)
		}
	}
	if len(r.teks) > 0 {
		r.by, r.end = slices.Clone(g.teks), end
		r.plain = r.teks
		if slices.ContainsFunc(r.teks, (*tek).counter) {
			r.plain = slices.DeleteFunc(slices.Clone(r.teks), (*tek).counter)
		}
	}
}

// live is the replaced TEKs handed out at now in a registration's SA
// payload, ctr for a member that takes counter-mode ones
// (Server.counterReplacedTo): none once the rekey's TEKs were replaced
// in turn, or the hand-out ended.
func (r *replacedTEKs) live(g *group, now time.Time, ctr bool) []*tek {
	return r.liveUntil(g, now, r.end, ctr)
}

// liveKeys is those whose keys its KD payload carries at now: keyGrace
// longer.
func (r *replacedTEKs) liveKeys(g *group, now time.Time, ctr bool) []*tek {
	return r.liveUntil(g, now, r.end.Add(keyGrace), ctr)
}

func (r *replacedTEKs) liveUntil(g *group, now, end time.Time, ctr bool) []*tek {
	if len(r.teks) == 0 || !now.Before(end) || !slices.Equal(r.by, g.teks) {
		return nil
	}
	if ctr {
		return r.teks
	}
	return r.plain
}

// counterLive reports whether a member that takes counter-mode TEKs is
// handed out, at now, anything others are not (its own layout: laidOut).
func (r *replacedTEKs) counterLive(g *group, now time.Time) bool {
	return len(r.plain) != len(r.teks) && len(r.liveKeys(g, now, true)) > 0
}

// counterReplacedTo reports whether p is handed out the counter-mode
// TEKs a rekey replaced: by a KS of version.ReplacedCounterTEKs or later
// (one told to announce an older version behaves as one: SPEC V1) to a
// groupvpn member of that version or later (its Vendor ID, SPEC V2;
// another implementation's members, of no version known, are not).
func (s *Server) counterReplacedTo(p Peer) bool {
	return !s.version.Less(version.ReplacedCounterTEKs) && !p.Version.IsZero() && !p.Version.Less(version.ReplacedCounterTEKs)
}

// ReplacedHandedOut is the number of GROUPKEY-PULL answers (message 2,
// JoinPayload) that listed the TEKs a rekey replaced (all groups;
// replacedTEKs).
func (s *Server) ReplacedHandedOut() uint64 {
	var n uint64
	for _, g := range s.groups {
		n += g.replaced.handedOut
	}
	return n
}
