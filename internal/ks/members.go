package ks

import (
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// memberRec is one registered GM as the KS keeps it: a value in its group's
// list (no allocation of its own), found by address through the group's
// index (issue 18: the KS's memory per member). Member is its exported
// copy.
type memberRec struct {
	addr netip.Addr
	// identity is what show lists; "" when it is the address (members
	// that authenticated with a pre-shared key and an address ID): no
	// string per member then.
	identity                 string
	registered, lastRegister int64 // Unix nanoseconds (0: never)
	registrations            uint32
	acksReceived, acksMissed uint32
	rekeysSent, rekeyRetries uint32
	missed                   uint32 // consecutive unacknowledged rekeys
	lastAckSeq               uint32
	sid                      uint32 // the first sender ID (nsid > 0); the others in group.moreSIDs
	port                     uint16
	version                  version.Version
	sidBits                  uint8
	nsid                     uint8
	removed                  bool
	sidEpochIDs              uint8 // sender IDs got since group.sidEpoch was sidEpoch
	// unsaved: listed in memberTable.unsaved (changed since the last
	// state handed out for the store). In the struct's padding.
	unsaved bool
	// removals is the group's removal count (group.removals) at its last
	// registration. 16 bits fit the struct's padding; a count that wraps
	// to the same value after 65,536 removals only keeps the member's
	// previous IDs held (the safe side).
	removals uint16
	sidEpoch uint32 // the group's sidEpoch at its first registration under the keys
}

// memberChunk is how many members a chunk of a memberTable's list holds.
const memberChunk = 1024

// memberTable is a group's member list: values in registration order (none
// is ever taken out: a removed member stays listed, flagged) and an index
// by address.
type memberTable struct {
	// chunks are the list, memberChunk members each but the last (the
	// first grows as a slice does, up to memberChunk; the others are made
	// whole): a new member never copies the list, which a slice of
	// 100,000 did at each growth, into fresh pages faulted in on the key
	// server's one core (issue 18). A member past the first chunk never
	// moves.
	chunks [][]memberRec
	n      int32 // members listed
	idx    map[netip.Addr]int32
	// moreSIDs are the sender IDs after the first of the members that
	// hold more than one (a GM may ask for up to MaxSIDsPerMember).
	moreSIDs map[netip.Addr][]uint32
	// prevSIDs are the sender IDs members held before their latest
	// registrations, oldest first, each packed with its width
	// (packPrevSID): only for members that registered again in a group
	// with rekeys (retire).
	prevSIDs map[netip.Addr][]uint32
	// unsaved are the members (indices into list) whose stored fields
	// (MemberState) changed since the last state handed out for the
	// store (Server.DeltaState), each listed once while its unsaved flag
	// is set; based is false until a state with every member was handed
	// out (and after every member changed: Restore, a GM removal): the
	// next one is whole. The periodic save then costs the members
	// changed, not the group (issue 18).
	unsaved []int32
	based   bool
}

// touch records that m's stored fields changed (the next delta lists it).
func (ms *memberTable) touch(m *memberRec) {
	if m.unsaved {
		return
	}
	i, ok := ms.idx[m.addr]
	if !ok {
		return
	}
	ms.touchAt(m, i)
}

// touchAt is touch for m = ms.at(i), which its caller got with the
// index (getAt, addAt): no lookup of the address again (issue 18: a map of
// every member, per registration).
func (ms *memberTable) touchAt(m *memberRec, i int32) {
	if m.unsaved {
		return
	}
	m.unsaved = true
	ms.unsaved = append(ms.unsaved, i)
}

// changedAll records that every member may have changed: the next state
// for the store is whole.
func (ms *memberTable) changedAll() { ms.based = false }

// saved records that a state with every member as it is now was handed
// out (and written: Delivery's synchronous writes) for the store.
func (ms *memberTable) saved() {
	for _, i := range ms.unsaved {
		ms.at(i).unsaved = false
	}
	ms.unsaved = ms.unsaved[:0]
	ms.based = true
}

func newMembers() memberTable {
	return memberTable{idx: map[netip.Addr]int32{}, moreSIDs: map[netip.Addr][]uint32{}, prevSIDs: map[netip.Addr][]uint32{}}
}

// MaxPrevSIDsPerMember bounds the previous sender IDs the KS keeps
// counting as held for one member (retire): the IDs of its last
// registrations before the latest, 64 of them (four full registrations
// of MaxSIDsPerMember, 64 of one ID each). Older ones are forgotten
// (SIDPreviousForgotten).
const MaxPrevSIDsPerMember = SIDsPerMemberPerKeys

// packPrevSID is a previous sender ID as prevSIDs keeps it: the ID (at
// most MaxSIDBits wide) in the top 24 bits, its width in the low 8.
func packPrevSID(id uint32, bits int) uint32 { return id<<8 | uint32(bits) }

// unpackPrevSID is packPrevSID's inverse; ok is false for a value that is
// no ID this KS hands out (a damaged or hostile store).
func unpackPrevSID(v uint32) (id uint32, bits int, ok bool) {
	id, bits = v>>8, int(v&0xff)
	return id, bits, validSIDBits(bits) && id > 0 && id>>bits == 0
}

// retire keeps m's current sender IDs among its previous ones before a
// registration replaces them: the KS never learns whether the GM got the
// registration's answer (GROUPKEY-PULL has no fifth message), and a GM
// that did not goes on with the IDs it had, into the keys of every rekey
// it gets (carrySIDs). At most MaxPrevSIDsPerMember are kept, the oldest
// forgotten first; it returns how many were forgotten.
func (ms *memberTable) retire(m *memberRec) (forgotten int) {
	if m.nsid == 0 {
		return 0
	}
	w := m.sidWidth()
	prev := ms.prevSIDs[m.addr]
	ms.eachSID(m, func(id uint32) {
		if id > 0 && id>>w == 0 {
			prev = append(prev, packPrevSID(id, w))
		}
	})
	if n := len(prev) - MaxPrevSIDsPerMember; n > 0 {
		forgotten = n
		prev = append(prev[:0:0], prev[n:]...)
	}
	if len(prev) > 0 {
		ms.prevSIDs[m.addr] = prev
	}
	return forgotten
}

// setPrevSIDs makes packed (packPrevSID) m's previous sender IDs, less
// those that are no IDs and past the bound (a stored member: Restore).
func (ms *memberTable) setPrevSIDs(m *memberRec, packed []uint32) {
	delete(ms.prevSIDs, m.addr)
	var prev []uint32
	for _, v := range packed {
		if _, _, ok := unpackPrevSID(v); ok {
			prev = append(prev, v)
		}
	}
	if n := len(prev) - MaxPrevSIDsPerMember; n > 0 {
		prev = prev[n:]
	}
	if len(prev) > 0 {
		ms.prevSIDs[m.addr] = slices.Clone(prev)
	}
}

// len is the number of members.
func (ms *memberTable) len() int { return int(ms.n) }

// at is the member at index i (0 <= i < len) of the list.
func (ms *memberTable) at(i int32) *memberRec {
	return &ms.chunks[uint32(i)/memberChunk][uint32(i)%memberChunk]
}

// get is the member at addr (nil: none). The pointer is into the list:
// valid until the next add while the list is within its first chunk
// (memberChunk members), which grows as a slice; for good after.
func (ms *memberTable) get(addr netip.Addr) *memberRec {
	m, _ := ms.getAt(addr)
	return m
}

// getAt is get with the member's index in the list (touchAt).
func (ms *memberTable) getAt(addr netip.Addr) (*memberRec, int32) {
	i, ok := ms.idx[addr]
	if !ok {
		return nil, -1
	}
	return ms.at(i), i
}

// add lists a new member at addr (which must not be listed) and returns
// it.
func (ms *memberTable) add(addr netip.Addr) *memberRec {
	m, _ := ms.addAt(addr)
	return m
}

// addAt is add with the member's index in the list (touchAt).
func (ms *memberTable) addAt(addr netip.Addr) (*memberRec, int32) {
	i := ms.n
	c := int(uint32(i) / memberChunk)
	if c == len(ms.chunks) {
		var chunk []memberRec
		if c > 0 {
			chunk = make([]memberRec, 0, memberChunk)
		}
		ms.chunks = append(ms.chunks, chunk)
	}
	ms.chunks[c] = append(ms.chunks[c], memberRec{addr: addr})
	ms.idx[addr] = i
	ms.n++
	return ms.at(i), i
}

// sids are m's sender IDs (a new slice; nil for none).
func (ms *memberTable) sids(m *memberRec) []uint32 {
	if m.nsid == 0 {
		return nil
	}
	return append([]uint32{m.sid}, ms.moreSIDs[m.addr]...)
}

// eachSID calls f with each of m's sender IDs, without a copy.
func (ms *memberTable) eachSID(m *memberRec, f func(uint32)) {
	if m.nsid == 0 {
		return
	}
	f(m.sid)
	if m.nsid == 1 {
		return // moreSIDs holds the members of more than one (setSIDs)
	}
	for _, id := range ms.moreSIDs[m.addr] {
		f(id)
	}
}

// setSIDs makes ids m's sender IDs.
func (ms *memberTable) setSIDs(m *memberRec, ids []uint32) {
	if m.nsid > 1 { // only they are in moreSIDs: no lookup for the others
		delete(ms.moreSIDs, m.addr)
	}
	m.nsid = uint8(min(len(ids), 255))
	m.sid = 0
	if len(ids) == 0 {
		return
	}
	m.sid = ids[0]
	if len(ids) > 1 {
		ms.moreSIDs[m.addr] = slices.Clone(ids[1:m.nsid])
	}
}

// setIdentity records what show lists for m ("" for the address itself).
func (m *memberRec) setIdentity(id string) {
	var buf [48]byte // an address's text without an allocation per registration (issue 18)
	if id == "" || id == string(m.addr.AppendTo(buf[:0])) {
		m.identity = ""
		return
	}
	m.identity = id
}

// ident is what show lists for m.
func (m *memberRec) ident() string {
	if m.identity == "" {
		return m.addr.String()
	}
	return m.identity
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// export is m as a Member.
func (ms *memberTable) export(m *memberRec) Member {
	return Member{Address: m.addr, Port: m.port, Identity: m.ident(), Version: m.version,
		Registered: fromUnixNano(m.registered), LastRegister: fromUnixNano(m.lastRegister), Registrations: int(m.registrations),
		SenderIDs: ms.sids(m), SIDBits: m.sidBits, AcksReceived: int(m.acksReceived), AcksMissed: int(m.acksMissed),
		RekeysSent: int(m.rekeysSent), RekeyRetries: int(m.rekeyRetries), Missed: int(m.missed), LastAckSeq: m.lastAckSeq, Removed: m.removed}
}

// sidWidth is the width of a member's sender IDs (MinSIDBits for a
// member stored before widths were recorded).
func (m *memberRec) sidWidth() int {
	if validSIDBits(int(m.sidBits)) {
		return int(m.sidBits)
	}
	return MinSIDBits
}
