package ks

import (
	"fmt"
	"math"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Sender IDs (RFC 6054 §3, RFC 6407 §5.6.4). A counter-mode TEK is shared
// by every member, so each sender puts an ID of its own in the high-order
// bits of the 64-bit IV and its packet counter in the rest: two senders
// never use one IV under one key. The KS tells a member the width of its
// IDs in the SID key packet of its registration (NUMBER_OF_SID_BITS) and
// chooses it: here per group, when the group's keys are made (AddGroup,
// a rekey, a restart), from the group's size (chooseSIDBits), so that a
// key's IDs all have the width its generation started with. Members keep
// their IDs across rekeys (RFC 6054 App. B), so a key's IDs may be of
// several widths: an ID of w bits is the IV prefix it puts there, and an
// ID is free under a key only when it is no prefix of one in use and none
// in use is a prefix of it (sidSet).

const (
	// MinSIDBits is the narrowest sender-ID width this KS hands out (and
	// the width of every ID before widths were chosen per group: what a
	// stored member or key without a width has).
	MinSIDBits = 16
	// MaxSIDBits is the widest: 16,777,215 senders per key, and 40 bits
	// of counter below them, more than the 32-bit ESP sequence number a
	// groupvpn GM counts with (docs/wire.md).
	MaxSIDBits = 24
)

// sidPage holds the bits of 65,536 consecutive IDs of one width.
type sidPage [1 << 16 / 64]uint64

// sidBitmap is a set of IDs of one width, its pages allocated as IDs land
// in them: a key with a few members holds one 8 KiB page, not 2^width bits.
type sidBitmap struct{ pages []*sidPage }

func (b *sidBitmap) has(id uint32) bool {
	p := int(id >> 16)
	if p >= len(b.pages) || b.pages[p] == nil {
		return false
	}
	o := id & 0xffff
	return b.pages[p][o/64]&(1<<(o%64)) != 0
}

func (b *sidBitmap) add(id uint32) {
	p := int(id >> 16)
	if p >= len(b.pages) {
		b.pages = append(b.pages, make([]*sidPage, p+1-len(b.pages))...)
	}
	if b.pages[p] == nil {
		b.pages[p] = new(sidPage)
	}
	o := id & 0xffff
	b.pages[p][o/64] |= 1 << (o % 64)
}

// anyIn reports whether an ID in [lo, hi) is in the set (hi-lo is at
// most 2^(MaxSIDBits-MinSIDBits)).
func (b *sidBitmap) anyIn(lo, hi uint32) bool {
	for id := lo; id < hi; id++ {
		if b.has(id) {
			return true
		}
	}
	return false
}

// sidSet is the sender IDs in use with one key, of any width
// MinSIDBits..MaxSIDBits: one lazily paged bitmap per width present.
type sidSet struct {
	byWidth [MaxSIDBits - MinSIDBits + 1]*sidBitmap
}

// validSIDBits reports whether bits is a width this KS hands out.
func validSIDBits(bits int) bool { return bits >= MinSIDBits && bits <= MaxSIDBits }

// has reports whether id of width bits collides with an ID in the set:
// either is a prefix of the other (equal IDs of equal width included).
func (s *sidSet) has(id uint32, bits int) bool {
	for w := MinSIDBits; w <= MaxSIDBits; w++ {
		b := s.byWidth[w-MinSIDBits]
		if b == nil {
			continue
		}
		if w <= bits {
			if b.has(id >> (bits - w)) {
				return true
			}
		} else if b.anyIn(id<<(w-bits), (id+1)<<(w-bits)) {
			return true
		}
	}
	return false
}

// add puts id of width bits in the set (a width outside
// MinSIDBits..MaxSIDBits, which this KS never hands out, is ignored).
func (s *sidSet) add(id uint32, bits int) {
	if !validSIDBits(bits) || id>>bits != 0 {
		return
	}
	b := s.byWidth[bits-MinSIDBits]
	if b == nil {
		b = &sidBitmap{}
		s.byWidth[bits-MinSIDBits] = b
	}
	b.add(id)
}

// sidRange is the IDs lo..hi-1 of width bits.
type sidRange struct {
	lo, hi uint32
	bits   uint8
}

// counter reports whether t is a counter-mode key (it needs sender IDs).
func (t *tek) counter() bool { return t.authKey == nil }

// chooseSIDBits picks the width of the sender IDs of the group's next
// keys (a new generation: every key of the group made anew). The rule:
// the narrowest width, not below the current one, MinSIDBits at least and
// MaxSIDBits at most, whose space, less the part the members' IDs take
// (they carry them into the new keys: an ID of w bits takes 2^-w of the
// space at any width), leaves room for four times the group's members
// (every member could register twice and the group double). A group of a
// few thousand members stays at 16 bits; 30,000 members holding 16-bit
// IDs move to 18. It never narrows: an ID carried from wider keys would
// take a whole block of narrower ones. It also sets how many IDs this KS
// may hand out under the new keys before it asks for an early rekey
// (sidCap; sidPressure).
func (g *group) chooseSIDBits() {
	free, n := g.sidFree()
	need := 4 * float64(n+1)
	w := max(g.sidBits, MinSIDBits)
	for w < MaxSIDBits && free*math.Ldexp(1, w) < need {
		w++
	}
	g.setSIDBits(w)
}

// setSIDBits makes bits the width of the IDs handed out from now, and
// sizes what this KS may hand out under the current keys (sidCap).
func (g *group) setSIDBits(bits int) {
	free, _ := g.sidFree()
	stride, _ := g.sidSlot()
	g.sidBits = bits
	g.sidCap = uint32(free * math.Ldexp(1, bits) / float64(stride))
	g.sidGiven, g.sidPressure = 0, time.Time{}
	g.sidEpoch++
}

// sidFree is the part of the sender-ID space (at any width) the IDs the
// members hold leave free, and the number of members (with the peer KSs').
func (g *group) sidFree() (free float64, members int) {
	members = g.members.len()
	for _, r := range g.remote {
		members += len(r)
	}
	var taken float64
	for i := range int32(g.members.len()) {
		m := g.members.at(i)
		taken += float64(m.nsid) * math.Ldexp(1, -m.sidWidth())
	}
	for _, prev := range g.members.prevSIDs {
		for _, v := range prev {
			if _, bits, ok := unpackPrevSID(v); ok {
				taken += math.Ldexp(1, -bits)
			}
		}
	}
	for _, r := range g.sidGhost {
		taken += float64(r.hi-r.lo) * math.Ldexp(1, -int(r.bits))
	}
	// Peer KSs' members: their IDs are not known here, one each at the
	// current width.
	taken += float64(members-g.members.len()) * math.Ldexp(1, -max(g.sidBits, MinSIDBits))
	return max(1-taken, 0), members
}

// newGeneration makes ts the group's keys' sender-ID bookkeeping for a
// new generation: the width chosen (chooseSIDBits), every member's IDs
// marked in use with each new counter-mode key (carrySIDs).
func (g *group) newGeneration(ts []*tek) {
	g.chooseSIDBits()
	for _, t := range ts {
		if t.counter() {
			t.sidBits = uint8(g.sidBits)
		}
		g.carrySIDs(t)
	}
}

// carrySIDs marks in a new key the sender IDs the group's members hold:
// GMs keep their sender IDs across rekeys (RFC 6054 App. B: a push
// carries none), so those go on being used with the keys that replace the
// current ones. Handing one out again under the new key gave two members
// the same GCM nonces, and one's packets fell in the other's replay window
// (issue 13's bench: dropped as replays at a third member after a
// registration that followed a rekey). An ID of a narrower width than the
// key's takes the whole block of the key's IDs it is a prefix of.
//
// A rekey writes the members with its keys (Delivery.start), so a
// restart knows every member that got them by a rekey, and the IDs
// handed out under them after that are below their own mark. But a
// member the store lost at a crash (registered after the last save)
// still holds its key and ID, and may get later keys: with multicast
// rekeys every one; with unicast rekeys every one too once it is on the
// rekey list, as the member it was stored as (re-registered since the
// save) or after it registers with the restarted KS and that answer is
// lost (the KS never learns it: it goes on with the ID it had). So in a
// group with rekeys t's floor is the highest mark and floor of the
// group's other counter-mode keys (the ones it replaces, still the
// group's here), written with t: a restart keeps every ID below it that
// no stored member holds (Restore), as it does below t's own mark, until
// a GM removal (issue 18 review 3: with unicast rekeys exempt, a second
// crash handed such an ID out again under the key the member held).
// Without rekeys a member gets new keys only by registering, with new
// IDs.
func (g *group) carrySIDs(t *tek) {
	if !t.counter() {
		return
	}
	g.sidEpoch++ // new keys: each member's bound starts again
	if g.sig.alg != 0 {
		for _, o := range g.teks {
			if o != t && o.counter() {
				t.sidFloor = max(t.sidFloor, sidCeilAt(max(o.sidReserved, o.sidFloor), o.sidBits, t.sidBits))
			}
		}
	}
	for _, r := range g.sidGhost {
		for id := r.lo; id < r.hi; id++ {
			t.sidUsed.add(id, int(r.bits))
		}
	}
	for i := range int32(g.members.len()) {
		m := g.members.at(i)
		w := m.sidWidth()
		g.members.eachSID(m, func(id uint32) {
			if id > 0 {
				t.sidUsed.add(id, w)
			}
		})
	}
	// And the IDs members held before their latest registrations: a
	// member may never have got that registration's answer (retire).
	for _, prev := range g.members.prevSIDs {
		for _, v := range prev {
			if id, bits, ok := unpackPrevSID(v); ok {
				t.sidUsed.add(id, bits)
			}
		}
	}
}

// allocSID hands out a sender ID of the group's current width for its
// counter-mode keys: the next one in use with none of them (RFC 6054 §3:
// never reused with the same key, nor given while a member carries it into
// the key: carrySIDs). Each new key starts the count again. now marks when
// the IDs run low (sidPressure: NextRekey then rekeys early, and the next
// keys are wider), counting the ID only when counted (a member's first
// registration under the keys: sidEpoch), or when none is left.
func (g *group) allocSID(now time.Time, counted bool) (uint32, error) {
	bits := max(g.sidBits, MinSIDBits)
	var next uint32 = 1
	for _, t := range g.teks {
		if !t.counter() {
			continue
		}
		n := t.sidNext
		if tb := int(t.sidBits); validSIDBits(tb) && tb < bits {
			n <<= bits - tb // counted at a narrower width
		}
		next = max(next, n)
	}
	// With cooperative KSs, only this KS's share of the IDs (sidSlot,
	// sidShareFrom).
	stride, rank := g.sidSlot()
	for next = sidShareFrom(next, bits, stride, rank); next < 1<<bits; next = sidShareFrom(next+1, bits, stride, rank) {
		used := false
		for _, t := range g.teks {
			if t.counter() && t.sidUsed.has(next, bits) {
				used = true
				break
			}
		}
		if !used {
			break
		}
	}
	if next >= 1<<bits {
		if g.sidPressure.IsZero() && bits < MaxSIDBits && g.sig.alg != 0 {
			g.sidPressure = now // none left: the next rekey comes now
		}
		return 0, &gdoi.Refusal{Notify: isakmp.NotifyAttributesNotSupported,
			Reason: fmt.Sprintf("group %s: all %d-bit sender IDs of the current keys are in use", g.cfg.Name, bits)}
	}
	for _, t := range g.teks {
		if t.counter() {
			// The high-water mark, at this width: an ID at or above it
			// raises it by a block, to be written before the ID leaves.
			mark := t.sidReserved
			if tb := int(t.sidBits); validSIDBits(tb) && tb < bits {
				mark <<= bits - tb
			}
			if next >= mark {
				mark = uint32(min(uint64(next)+uint64(sidReserveBlock(stride, t.sidRaises)), 1<<bits))
				t.sidRaises = min(t.sidRaises+1, 32)
				g.sidUnwritten = true
			}
			t.sidFloor = sidCeilAt(t.sidFloor, t.sidBits, uint8(bits))
			t.sidNext, t.sidBits, t.sidReserved = next+1, uint8(bits), mark
			t.sidUsed.add(next, bits)
		}
	}
	if counted {
		g.sidGiven++
	}
	if g.sidPressure.IsZero() && bits < MaxSIDBits && g.sig.alg != 0 && g.sidGiven >= g.sidCap/2 {
		// Half of what the keys were sized for is handed out: the next
		// rekey comes now, with wider IDs if the group needs them.
		g.sidPressure = now
	}
	return next, nil
}

// sidCeilAt is a bound of IDs of width from (0 or invalid: MinSIDBits),
// the IDs below it, at width to, rounded up: the IDs of width to below it
// are those with a prefix below the bound, or a prefix of one (capped at
// 1<<to).
func sidCeilAt(bound uint32, from, to uint8) uint32 {
	f, t := int(from), int(to)
	if !validSIDBits(f) {
		f = MinSIDBits
	}
	if !validSIDBits(t) {
		t = MinSIDBits
	}
	b := uint64(bound)
	if f <= t {
		b <<= t - f
	} else {
		sh := f - t
		b = (b + 1<<sh - 1) >> sh
	}
	return uint32(min(b, 1<<t))
}

// sidReserveBlock is how far a key's sender-ID high-water mark rises past
// an ID that reaches it, the raises-th time since the key was made or
// restored: 16 of this KS's IDs the first time, doubling each time up to
// sidReserveMax (stride cooperative KSs share the IDs out, sidShareFrom).
// At the KS's measured ceiling (some 5,000 registrations a second, one ID
// each) that is a keys-only write every ~200 ms once the block is full
// (six more writes per key before), and a restart loses at most one block
// of each key's IDs, which a group with rekeys keeps out of use until a GM
// removal (the floors: carrySIDs): a block no bigger than about the IDs
// handed out since the key was made or restored, so that a restart
// followed by a few registrations keeps a few IDs, not 1,024 (issue 18
// review 3: 72 such restarts used up a group's IDs).
func sidReserveBlock(stride uint32, raises uint8) uint32 {
	return min(uint32(sidReserveFirst)<<min(raises, 10), sidReserveMax) * max(stride, 1)
}

const (
	sidReserveFirst = 16   // the first block of a key's IDs
	sidReserveMax   = 1024 // the largest
)

// sidShareFrom is the first ID of width bits from id on that lies in the
// share of the KS of rank among stride cooperative KSs (id itself when it
// does; 1<<bits or more when none is left). The share goes by an ID's top
// MinSIDBits bits, its 16-bit prefix p: a KS takes the IDs whose
// (p-1) mod stride is its rank, at every width. An ID and every ID it is a
// prefix of (of any width) then belong to one KS, which alone checks them
// against each other (sidSet): two KSs never hand out IDs that put the
// same octets in an IV, whatever width each chose (a partition's merge, a
// secondary restarted with expired keys sizing its own, a KS of an earlier
// version handing out 16-bit IDs, which split by (id-1) mod stride: the
// same rule at 16 bits). IDs whose 16-bit prefix is 0 are never handed
// out (no KS owns them; 16-bit ID 0 is not an ID): 2^-16 of the space.
func sidShareFrom(id uint32, bits int, stride, rank uint32) uint32 {
	shift := bits - MinSIDBits
	p := id >> shift
	if p == 0 {
		p, id = 1, 1<<shift
	}
	if off := (p - 1) % stride; off != rank {
		p += (rank + stride - off) % stride
		id = p << shift
	}
	return id
}

// SIDRefusedMemberBound is the number of registrations refused because
// the member had SIDsPerMemberPerKeys sender IDs under the current keys
// (all groups).
func (s *Server) SIDRefusedMemberBound() uint64 {
	var n uint64
	for _, g := range s.groups {
		n += g.sidRefusedMember
	}
	return n
}

// SIDPreviousForgotten is the number of a member's previous sender IDs
// the KS stopped counting as held because the member had
// MaxPrevSIDsPerMember newer ones (all groups): each is an ID the member
// may still use if none of its last registrations' answers reached it.
func (s *Server) SIDPreviousForgotten() uint64 {
	var n uint64
	for _, g := range s.groups {
		n += g.sidPrevForgotten
	}
	return n
}

// SIDBits is the width of the sender IDs the group hands out now (what a
// registration's SID key packet says; 0 for no such group).
func (s *Server) SIDBits(name string) int {
	if g := s.byName[name]; g != nil {
		return max(g.sidBits, MinSIDBits)
	}
	return 0
}
