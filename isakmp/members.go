package isakmp

import (
	"fmt"
	"net/netip"
)

// MembersKind says whether a MEMBERS payload carries (part of) the whole
// member list or the changes between two generations.
type MembersKind uint8

const (
	MembersFull  MembersKind = 1 // every member at Generation; Base Generation is 0
	MembersDelta MembersKind = 2 // the changes from Base Generation to Generation
)

var membersKindNames = map[MembersKind]string{MembersFull: "FULL", MembersDelta: "DELTA"}

func (k MembersKind) String() string { return nameOf(membersKindNames, k, "KIND") }

// MemberOp is what an entry of a MEMBERS payload does.
type MemberOp uint8

const (
	MemberAdd    MemberOp = 1 // the member is in the list with this version (added or updated)
	MemberRemove MemberOp = 2 // the member left the list (DELTA only; version zero)
)

var memberOpNames = map[MemberOp]string{MemberAdd: "ADD", MemberRemove: "REMOVE"}

func (o MemberOp) String() string { return nameOf(memberOpNames, o, "OP") }

// Bounds of the MEMBERS payload, enforced when reading. 2,048 IPv6 entries
// (21 octets each) fit one payload (43,040 octets); 100,000 IPv4 members
// take 49 full parts; a list is at most MaxMemberParts parts and
// MaxGroupMembers members.
const (
	MaxMemberEntries = 2048
	MaxMemberParts   = 1024
	MaxGroupMembers  = 1 << 20
	membersFixedLen  = 28
	memberEntryMin   = 9 // op, addr type, 3 version octets, IPv4 address
)

// Member is one entry of a MEMBERS payload: a GM's registration address
// and the version it announced (zero: it sent none, SPEC V2).
type Member struct {
	Op      MemberOp
	Addr    netip.Addr // an invalid one is written as 0.0.0.0, which the reader refuses
	Version SWVersion
}

func (m *Member) wireLen() int { return 5 + addrLen(m.Addr) }

// Members is the MEMBERS payload (groupvpn private use, type 193;
// docs/wire.md):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!     Kind      !   RESERVED    !          Entry Count          !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                                                               !
//	+                        Base Generation                        +
//	!                                                               !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                                                               !
//	+                          Generation                           +
//	!                                                               !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!             Part              !             Parts             !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                         Total Members                         !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Entries (Entry Count of them)               ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Each entry:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!      Op       !   Addr Type   ! Version Major ! Version Minor !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	! Version Mini  !   Address (4 or 16 octets) ...                ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The reader refuses an unknown kind, op or address type, an unspecified
// address, Entry Count above MaxMemberEntries or not matching the entries
// present, Parts of 0 or above MaxMemberParts, Part not below Parts, Total
// Members above MaxGroupMembers, a FULL part with a non-zero Base
// Generation, a REMOVE entry or more entries than Total Members, a DELTA
// whose Base Generation is not below Generation, and a REMOVE entry with a
// version.
type Members struct {
	Kind    MembersKind
	BaseGen uint64 // DELTA: the generation the changes apply to; FULL: 0
	Gen     uint64 // the generation the list has once applied
	Part    uint16 // 0-based index of this part
	Parts   uint16 // parts making up the list (or delta) at Gen
	Total   uint32 // members in the whole list at Gen
	Entries []Member
}

func (*Members) Type() PayloadType { return PayloadMembers }

func (p *Members) BodyLen() int {
	n := membersFixedLen
	for i := range p.Entries {
		n += p.Entries[i].wireLen()
	}
	return n
}

func (p *Members) AppendBody(b []byte) []byte {
	b = append(b, byte(p.Kind), 0)
	b = appendU16(b, uint16(len(p.Entries)))
	b = appendU64(b, p.BaseGen)
	b = appendU64(b, p.Gen)
	b = appendU16(b, p.Part)
	b = appendU16(b, p.Parts)
	b = appendU32(b, p.Total)
	for i := range p.Entries {
		m := &p.Entries[i]
		at, ab := addrWire(m.Addr)
		b = append(b, byte(m.Op), byte(at), m.Version.Major, m.Version.Minor, m.Version.Mini)
		b = append(b, ab...)
	}
	return b
}

func parseMembers(b []byte) (*Members, error) {
	r := newReader("MEMBERS payload", b)
	p := &Members{Kind: MembersKind(r.u8())}
	r.reserved(1, "RESERVED")
	n := int(r.u16())
	p.BaseGen = r.u64()
	p.Gen = r.u64()
	p.Part = r.u16()
	p.Parts = r.u16()
	p.Total = r.u32()
	if r.err == nil {
		switch {
		case p.Kind != MembersFull && p.Kind != MembersDelta:
			r.fail("kind %d is not defined", p.Kind)
		case n > MaxMemberEntries:
			r.fail("%d entries exceed %d", n, MaxMemberEntries)
		case n*memberEntryMin > r.left():
			r.fail("%d entries need at least %d octets, %d present", n, n*memberEntryMin, r.left())
		case p.Parts == 0 || p.Parts > MaxMemberParts:
			r.fail("%d parts outside 1..%d", p.Parts, MaxMemberParts)
		case p.Part >= p.Parts:
			r.fail("part %d of %d", p.Part, p.Parts)
		case p.Total > MaxGroupMembers:
			r.fail("%d members exceed %d", p.Total, MaxGroupMembers)
		case p.Kind == MembersFull && p.BaseGen != 0:
			r.fail("full list with base generation %d", p.BaseGen)
		case p.Kind == MembersFull && uint32(n) > p.Total:
			r.fail("full list part with %d entries of %d members", n, p.Total)
		case p.Kind == MembersDelta && p.BaseGen >= p.Gen:
			r.fail("delta from generation %d to %d", p.BaseGen, p.Gen)
		}
	}
	if r.err == nil && n > 0 {
		p.Entries = make([]Member, 0, n) // n*memberEntryMin octets are present
	}
	for i := 0; i < n && r.err == nil; i++ {
		m := Member{Op: MemberOp(r.u8())}
		at := IDType(r.u8())
		m.Version = SWVersion{r.u8(), r.u8(), r.u8()}
		if r.err == nil {
			switch {
			case m.Op != MemberAdd && m.Op != MemberRemove:
				r.fail("entry %d: op %d is not defined", i, m.Op)
			case m.Op == MemberRemove && p.Kind == MembersFull:
				r.fail("entry %d: REMOVE in a full list", i)
			case m.Op == MemberRemove && m.Version != SWVersion{}:
				r.fail("entry %d: REMOVE with version %s", i, m.Version)
			}
		}
		m.Addr = r.addr(at, "member address")
		p.Entries = append(p.Entries, m)
	}
	return p, r.done()
}

// SplitMembers cuts a full member list (kind MembersFull, base 0, every
// member an ADD) or a delta into MEMBERS payloads of at most per entries
// each, numbered 0..Parts-1, all carrying gen and total. An empty list or
// delta is one part with no entries. It refuses what a reader would refuse:
// per outside 1..MaxMemberEntries, more than MaxMemberParts parts, total
// above MaxGroupMembers, a full list whose length is not total.
func SplitMembers(kind MembersKind, base, gen uint64, total uint32, entries []Member, per int) ([]*Members, error) {
	switch {
	case per < 1 || per > MaxMemberEntries:
		return nil, fmt.Errorf("isakmp: %d entries per MEMBERS payload outside 1..%d", per, MaxMemberEntries)
	case total > MaxGroupMembers:
		return nil, fmt.Errorf("isakmp: %d members exceed %d", total, MaxGroupMembers)
	case kind == MembersFull && len(entries) != int(total):
		return nil, fmt.Errorf("isakmp: full list of %d entries for %d members", len(entries), total)
	}
	parts := max(1, (len(entries)+per-1)/per)
	if parts > MaxMemberParts {
		return nil, fmt.Errorf("isakmp: %d entries need %d MEMBERS parts of %d, more than %d", len(entries), parts, per, MaxMemberParts)
	}
	out := make([]*Members, parts)
	for i := range out {
		lo, hi := min(i*per, len(entries)), min((i+1)*per, len(entries))
		out[i] = &Members{Kind: kind, BaseGen: base, Gen: gen, Part: uint16(i), Parts: uint16(parts), Total: total,
			Entries: entries[lo:hi:hi]}
	}
	return out, nil
}
