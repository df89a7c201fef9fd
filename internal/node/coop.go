package node

import (
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// COOPStatus is one KS group's cooperative key server state (SPEC C1),
// for `show crypto gdoi ks coop` and the COOP lines of `show crypto gdoi`.
type COOPStatus struct {
	Local    netip.Addr // this KS's address in the group (the election's tie-break)
	Priority uint8      // `local priority`
	Role     coop.Role  // Primary, Secondary or Electing
	Primary  netip.Addr // the primary followed (this KS's address when primary; zero: none known)
	Version  version.Version
	// Period, Dead and ElectionWait are the timers in force (defaults
	// filled in).
	Period, Dead, ElectionWait time.Duration
	// Peers are the configured peer KSs as last heard, each with the
	// version it announced (SPEC V3).
	Peers []coop.PeerStatus
	Stats coop.Stats
	// MembersGen is the generation of this KS's own member list as
	// announced to its peers.
	MembersGen uint64
	// LastSync is when this KS last adopted the policy and keys of the
	// primary; zero: never.
	LastSync time.Time
}

// coopTimers fills in the timers a zero Redundancy field means.
func coopTimers(r *ks.Redundancy) (period, dead, wait time.Duration) {
	period, dead, wait = r.Period, r.Dead, r.ElectionWait
	if period <= 0 {
		period = coop.DefaultPeriod
	}
	if dead <= 0 {
		dead = coop.DefaultDeadPeriods * period
	}
	if wait <= 0 {
		wait = coop.DefaultElectionWait
	}
	return period, dead, wait
}

// COOPStatus returns, by KS group name, the COOP state of the groups
// configured with redundancy (nil without any). Use inside Do.
func (n *Node) COOPStatus() map[string]COOPStatus {
	if n.ks == nil {
		return nil
	}
	var out map[string]COOPStatus
	for _, g := range n.ks.Snapshot(n.o.Now()) {
		r := g.Redundancy
		if r == nil {
			continue
		}
		if out == nil {
			out = map[string]COOPStatus{}
		}
		st := COOPStatus{Local: n.ks.Address(g.Name), Priority: max(r.Priority, 1), Role: coop.Electing, Version: n.version()}
		st.Period, st.Dead, st.ElectionWait = coopTimers(r)
		for _, p := range r.Peers {
			st.Peers = append(st.Peers, coop.PeerStatus{Addr: p})
		}
		out[g.Name] = st
	}
	return out
}

// COOPCounters lists the COOP counters summed over the KS groups with
// redundancy (nil without any). Use inside Do.
func (n *Node) COOPCounters() []ike.Counter {
	sts := n.COOPStatus()
	if sts == nil {
		return nil
	}
	var s coop.Stats
	for _, st := range sts {
		s.Sent += st.Stats.Sent
		s.Accepted += st.Stats.Accepted
		s.Replayed += st.Stats.Replayed
		s.Unknown += st.Stats.Unknown
		s.Invalid += st.Stats.Invalid
		s.Incompatible += st.Stats.Incompatible
		s.Elections += st.Stats.Elections
		s.Exhausted += st.Stats.Exhausted
	}
	return []ike.Counter{
		{Name: "ann_sent", Help: "COOP announcements sent to peer key servers", Value: s.Sent},
		{Name: "ann_accepted", Help: "COOP announcements accepted from peer key servers", Value: s.Accepted},
		{Name: "ann_replayed", Help: "COOP announcements dropped: sequence number not above the last accepted", Value: s.Replayed},
		{Name: "ann_unknown_peer", Help: "COOP announcements dropped: from an address that is not a configured peer", Value: s.Unknown},
		{Name: "ann_invalid", Help: "COOP announcements dropped: bad role, priority 0 or oversized state", Value: s.Invalid},
		{Name: "ann_incompatible", Help: "COOP announcements dropped: another major or minor version", Value: s.Incompatible},
		{Name: "elections", Help: "COOP elections entered", Value: s.Elections},
		{Name: "ann_exhausted", Help: "COOP announcements not sent: the KS-KS SA's sequence numbers are used up", Value: s.Exhausted},
	}
}
