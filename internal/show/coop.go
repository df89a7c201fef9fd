package show

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
)

// Cooperative key servers (SPEC C1, V3; docs/cli.md says where each
// layout comes from).

// NoCOOP is `show crypto gdoi ks coop` on a key server none of whose
// groups has `redundancy`.
const NoCOOP = "% COOP is not configured for any group\n"

// roleName is a COOP role as IOS shows it ("Primary", "Secondary"), and
// groupvpn's "Electing" for a KS that follows no primary yet; "Unknown"
// for a peer never heard.
func roleName(r coop.Role) string {
	switch r {
	case coop.Primary, coop.Secondary, coop.Electing:
		return r.String()
	}
	return "Unknown"
}

// roleKey is a role as a `| json` enum.
func roleKey(r coop.Role) string {
	switch r {
	case coop.Primary, coop.Secondary, coop.Electing:
		return strings.ToLower(r.String())
	}
	return ""
}

func peerStatus(p coop.PeerStatus) string {
	if p.Reachable {
		return "Alive"
	}
	return "Dead"
}

// addrOrNone is an address, or IOS's 0.0.0.0 when none is known.
func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "0.0.0.0"
	}
	return a.String()
}

// redundancy writes the COOP lines of a KS group in `show crypto gdoi`,
// in IOS's layout (Redundancy, then the local KS's address, priority,
// status, role and version indented under it).
func redundancy(b *strings.Builder, s node.Snapshot, g ks.GroupSnapshot) {
	st, ok := s.COOP[g.Name]
	switch {
	case ok:
		b.WriteString("    Redundancy               : Configured\n")
		fmt.Fprintf(b, "        %-21s: %s\n", "Local Address", addrOrNone(st.Local))
		fmt.Fprintf(b, "        %-21s: %d\n", "Local Priority", st.Priority)
		fmt.Fprintf(b, "        %-21s: %s\n", "Local KS Status", "Alive")
		fmt.Fprintf(b, "        %-21s: %s\n", "Local KS Role", roleName(st.Role))
		fmt.Fprintf(b, "        %-21s: %s\n", "Local KS Version", st.Version)
	case g.Redundancy != nil:
		// Configured, but the node reports no COOP state (yet).
		role := "Primary"
		if g.Secondary {
			role = "Secondary"
		}
		b.WriteString("    Redundancy               : Configured\n")
		fmt.Fprintf(b, "        %-21s: %s\n", "Local KS Role", role)
	default:
		b.WriteString("    Redundancy               : Not configured\n")
	}
}

// ago is how long before now t was ("12 secs ago"), or "Never".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "Never"
	}
	return fmt.Sprintf("%d secs ago", secs(now.Sub(t)))
}

// COOP renders `show crypto gdoi ks coop`: per group with redundancy, the
// local KS (IOS's lines: address, priority, role and status, version),
// the groupvpn timers, the primary followed, the member list generation
// and last sync, the announcement counters, then each configured peer as
// IOS's Peer Sessions (address, version, priority, role and status, the
// last sequence number accepted) with when it was last heard.
func COOP(s node.Snapshot) (string, any) {
	if len(s.COOP) == 0 {
		return NoCOOP, COOPView(s)
	}
	var b strings.Builder
	for _, name := range coopGroups(s) {
		st := s.COOP[name]
		fmt.Fprintf(&b, "Crypto Gdoi Group Name :%s\n", name)
		fmt.Fprintf(&b, "        Local Address: %s\n", addrOrNone(st.Local))
		fmt.Fprintf(&b, "        Local Priority: %d\n", st.Priority)
		fmt.Fprintf(&b, "        Local KS Role: %-10s, Local KS Status: Alive\n", roleName(st.Role))
		fmt.Fprintf(&b, "        Local KS version: %s\n", st.Version)
		primary := "None (election)"
		if st.Primary.IsValid() {
			primary = st.Primary.String()
		}
		fmt.Fprintf(&b, "        Primary KS: %s\n", primary)
		b.WriteString("        Timers:\n")
		fmt.Fprintf(&b, "                Announcement Period: %d secs\n", secs(st.Period))
		fmt.Fprintf(&b, "                Dead Interval: %d secs\n", secs(st.Dead))
		fmt.Fprintf(&b, "                Election Wait: %d secs\n", secs(st.ElectionWait))
		fmt.Fprintf(&b, "        Member List Generation: %d\n", st.MembersGen)
		fmt.Fprintf(&b, "        Last Sync: %s\n", ago(st.LastSync, s.Now))
		b.WriteString("        Counters:\n")
		for _, c := range coopCounters(st.Stats) {
			fmt.Fprintf(&b, "                %s: %d\n", c.title, c.value)
		}
		b.WriteString("\n        Peer Sessions:\n")
		for i, p := range st.Peers {
			fmt.Fprintf(&b, "        Session %d:\n", i+1)
			fmt.Fprintf(&b, "                Peer Address: %s\n", p.Addr)
			v, prio := "unknown", "unknown"
			if !p.Version.IsZero() {
				v = p.Version.String()
			}
			if p.Priority != 0 {
				prio = fmt.Sprint(p.Priority)
			}
			fmt.Fprintf(&b, "                Peer Version: %s\n", v)
			fmt.Fprintf(&b, "                Peer Priority: %s\n", prio)
			fmt.Fprintf(&b, "                Peer KS Role: %-10s, Peer KS Status: %s\n", roleName(p.Role), peerStatus(p))
			fmt.Fprintf(&b, "                Antireplay Sequence Number: %d\n", p.Seq)
			fmt.Fprintf(&b, "                Last Heard: %s\n", ago(p.LastHeard, s.Now))
		}
		b.WriteString("\n")
	}
	return b.String(), COOPView(s)
}

// coopGroups are the groups with COOP state, in the order the KS lists
// its groups (then by name, for any it does not list).
func coopGroups(s node.Snapshot) []string {
	var out []string
	for _, g := range s.KS {
		if _, ok := s.COOP[g.Name]; ok {
			out = append(out, g.Name)
		}
	}
	var rest []string
	for name := range s.COOP {
		if !slices.Contains(out, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// coopCounter is one of coop.Stats: its stable snake_case name (the
// node's COOPCounters, | json, metrics) and its show line.
type coopCounter struct {
	key, title string
	value      uint64
}

func coopCounters(st coop.Stats) []coopCounter {
	return []coopCounter{
		{"ann_sent", "Ann msgs sent", st.Sent},
		{"ann_accepted", "Ann msgs recv", st.Accepted},
		{"ann_replayed", "Ann msgs dropped, replayed", st.Replayed},
		{"ann_unknown_peer", "Ann msgs dropped, unknown peer", st.Unknown},
		{"ann_invalid", "Ann msgs dropped, invalid", st.Invalid},
		{"ann_incompatible", "Ann msgs dropped, incompatible version", st.Incompatible},
		{"ann_exhausted", "Ann msgs not sent, sequence numbers used up", st.Exhausted},
		{"elections", "Elections", st.Elections},
	}
}
