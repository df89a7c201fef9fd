package node

import (
	"net/netip"
	"sort"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Member lists between cooperative KSs (docs/coop.md, docs/wire.md
// "MEMBERS"): each KS announces the GMs registered with it, with their
// versions, so that every KS lists every GM of the group (SPEC V3, R5).
// A sender sends a peer its whole list (FULL) at the start of each KS-KS
// SA and when the peer asks (FULL-SYNC-REQUEST), else the changes since
// the generation it last sent (DELTA), whenever it announces and its
// generation moved. A list that does not fit one announcement goes in
// parts, one per further announcement (coop.Elector.Extra), each inside
// about 1,400 octets. A receiver assembles the parts of one generation in
// order; a part out of order, a delta whose base is not the generation it
// holds, or a generation announced twice without its parts arriving makes
// it ask for the full list.

// annMembersBudget is the octets a MEMBERS part may take in one
// announcement: 1,400 less the header, HASH, SEQ, ID, COOP and MEMBERS
// fixed part (about 150 octets) and padding.
const annMembersBudget = 1240

// memberSync is the member lists exchanged with one peer for one group.
type memberSync struct {
	// received from the peer
	gen        uint64 // generation of the peer's list held
	have       map[netip.Addr]version.Version
	cached     []ks.MemberVersion // have as a sorted list (nil: rebuild)
	asm        *membersAsm
	pendingGen uint64 // a generation announced without its parts
	wantFull   bool   // ask the peer for its whole list
	// sent to the peer
	sentValid bool
	sentGen   uint64
	sent      map[netip.Addr]version.Version
	fullAsked bool // the peer asked for the whole list
	// queue are the parts not sent yet (coopParts: a few per turn).
	queue []*isakmp.Members
}

// membersAsm is a list or delta being assembled from its parts.
type membersAsm struct {
	kind      isakmp.MembersKind
	base, gen uint64
	parts     uint16
	next      uint16
	total     uint32
	entries   []isakmp.Member
}

// newSession: a new KS-KS SA; a part assembly in progress is dropped
// (its announcements' numbers restarted), and so is a list in flight to
// the peer, which goes out whole again.
//
// A list that went out whole on the previous SA is not sent again: the
// peer keeps what it assembled across SAs (two KSs that initiated at once
// switch to the SA of lowest cookie moments after the first came up,
// which sent 100,000 members twice), and the next announcements carry the
// generation only. A peer that holds nothing of this KS's list (it
// restarted) asks for it in its first announcement on the new SA; one
// that holds an older generation asks once it sees a generation twice
// without its parts (receive). A list still in flight is restarted.
func (m *memberSync) newSession() {
	if len(m.queue) > 0 {
		m.sentValid = false
	}
	m.asm, m.queue, m.pendingGen = nil, nil, 0
	if m.have == nil {
		m.wantFull = true
	}
}

// announceGen is the member generation an announcement to the peer
// carries: while a list or delta is in flight (queued parts), the
// generation of that list, not the current one (current), which the peer
// gets as a delta once this one is through. Announcing current instead
// made a peer that saw it twice while the parts of an older generation
// were still arriving (a long list outlasting a period while members
// registered) ask for the whole list again, which then went out twice
// (issue 16).
func (m *memberSync) announceGen(current uint64) uint64 {
	if m.sentValid && len(m.queue) > 0 {
		return m.sentGen
	}
	return current
}

// fullRequested records a peer's FULL-SYNC request. One that arrives while
// a whole list of the current generation is still in flight to it is
// answered by that list and not queued again (false); a peer that still
// misses parts of it asks again once it has been through.
func (m *memberSync) fullRequested(current uint64) bool {
	if m.sentValid && len(m.queue) > 0 && m.queue[0].Kind == isakmp.MembersFull && m.sentGen == current {
		return false
	}
	m.fullAsked = true
	return true
}

// askFull reports (once) whether the peer is to be asked for its list.
func (m *memberSync) askFull() bool {
	w := m.wantFull
	m.wantFull = false
	return w
}

// list is the peer's member list held, by address.
func (m *memberSync) list() []ks.MemberVersion {
	if m.cached == nil && len(m.have) > 0 {
		m.cached = make([]ks.MemberVersion, 0, len(m.have))
		for a, v := range m.have {
			m.cached = append(m.cached, ks.MemberVersion{Addr: a, Version: v})
		}
		sort.Slice(m.cached, func(i, j int) bool { return m.cached[i].Addr.Less(m.cached[j].Addr) })
	}
	return m.cached
}

// receive takes an accepted announcement's member generation and part
// (nil: none); false when the part was dropped.
func (m *memberSync) receive(gen uint64, part *isakmp.Members) bool {
	if part == nil {
		if gen != m.gen && (m.asm == nil || m.asm.gen != gen) {
			if m.pendingGen == gen {
				m.wantFull = true // announced twice and its parts never came
			}
			m.pendingGen = gen
		}
		return true
	}
	if part.Gen != gen {
		m.asm, m.wantFull = nil, true
		return false
	}
	if part.Part == 0 {
		m.asm = &membersAsm{kind: part.Kind, base: part.BaseGen, gen: part.Gen, parts: part.Parts, total: part.Total}
	}
	a := m.asm
	if a == nil || a.kind != part.Kind || a.base != part.BaseGen || a.gen != part.Gen || a.parts != part.Parts || a.total != part.Total || part.Part != a.next {
		m.asm, m.wantFull = nil, true
		return false
	}
	a.entries = append(a.entries, part.Entries...)
	a.next++
	if a.next < a.parts {
		return true
	}
	m.asm = nil
	switch a.kind {
	case isakmp.MembersFull:
		have := make(map[netip.Addr]version.Version, len(a.entries))
		for _, e := range a.entries {
			have[e.Addr.Unmap()] = swVersion(e.Version)
		}
		if len(have) != int(a.total) {
			m.wantFull = true
			return false
		}
		m.have, m.gen = have, a.gen
	case isakmp.MembersDelta:
		if a.base != m.gen {
			m.wantFull = true
			return false
		}
		if m.have == nil {
			m.have = map[netip.Addr]version.Version{}
		}
		for _, e := range a.entries {
			if e.Op == isakmp.MemberRemove {
				delete(m.have, e.Addr.Unmap())
			} else {
				m.have[e.Addr.Unmap()] = swVersion(e.Version)
			}
		}
		m.gen = a.gen
		if len(m.have) != int(a.total) {
			// Out of step (or a peer adding past its total): drop the
			// list, so that nothing grows beyond what a FULL bounds, and
			// ask for the whole of it.
			m.have, m.gen, m.wantFull = nil, 0, true
		}
	}
	m.cached, m.pendingGen = nil, 0
	return true
}

func swVersion(v isakmp.SWVersion) version.Version {
	return version.Version{Major: v.Major, Minor: v.Minor, Mini: v.Mini}
}

func wireVersion(v version.Version) isakmp.SWVersion {
	return isakmp.SWVersion{Major: v.Major, Minor: v.Minor, Mini: v.Mini}
}

// outgoing is the MEMBERS parts to send the peer with this KS's list at
// gen: the whole list first and when asked, else the changes since the
// last generation sent; nil when the peer is up to date.
func (m *memberSync) outgoing(list []ks.MemberVersion, gen uint64) []*isakmp.Members {
	var kind isakmp.MembersKind
	var entries []isakmp.Member
	base := uint64(0)
	switch {
	case !m.sentValid || m.fullAsked:
		kind = isakmp.MembersFull
		m.sent = make(map[netip.Addr]version.Version, len(list))
		entries = make([]isakmp.Member, 0, len(list))
		for _, e := range list {
			m.sent[e.Addr] = e.Version
			entries = append(entries, isakmp.Member{Op: isakmp.MemberAdd, Addr: e.Addr, Version: wireVersion(e.Version)})
		}
	case gen != m.sentGen:
		kind, base = isakmp.MembersDelta, m.sentGen
		now := make(map[netip.Addr]bool, len(list))
		for _, e := range list {
			now[e.Addr] = true
			if v, ok := m.sent[e.Addr]; !ok || v != e.Version {
				m.sent[e.Addr] = e.Version
				entries = append(entries, isakmp.Member{Op: isakmp.MemberAdd, Addr: e.Addr, Version: wireVersion(e.Version)})
			}
		}
		for a := range m.sent {
			if !now[a] {
				delete(m.sent, a)
				entries = append(entries, isakmp.Member{Op: isakmp.MemberRemove, Addr: a})
			}
		}
	default:
		return nil
	}
	per := annMembersBudget / 21 // IPv6 entries
	all4 := true
	for i := range entries {
		all4 = all4 && entries[i].Addr.Is4()
	}
	if all4 {
		per = annMembersBudget / 9
	}
	per = min(max(per, (len(entries)+isakmp.MaxMemberParts-1)/isakmp.MaxMemberParts), isakmp.MaxMemberEntries)
	parts, err := isakmp.SplitMembers(kind, base, gen, uint32(len(list)), entries, per)
	if err != nil {
		m.sentValid = false // over the bounds: try again whole next time
		return nil
	}
	m.sentValid, m.sentGen, m.fullAsked = true, gen, false
	return parts
}
