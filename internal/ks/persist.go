package ks

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// State exports a group's state for the store: its keys, sequence number
// and members (SPEC O4).
func (s *Server) State(name string, now time.Time) (*GroupState, error) {
	return s.state(name, now, true)
}

// KeysState is State without the members (Members nil): what a write of
// the keys alone (Store.SaveKeys) or a reader of the keys needs, in time
// that does not grow with the members (issue 18).
func (s *Server) KeysState(name string, now time.Time) (*GroupState, error) {
	return s.state(name, now, false)
}

// DeltaState is the group's state for the store's periodic save: State
// with only the members changed since the previous DeltaState (marked
// Delta; MembersGone is empty: the KS lists every member it ever had,
// a removed one flagged), whole the first time, after Restore and after
// every member changed (a GM removal). Its cost is the members changed
// (issue 18). Each call consumes the changes: the caller hands every one
// to a store or writer that applies it, or merges it into an older one
// not yet written (kswriter.Writer), and must never drop one.
func (s *Server) DeltaState(name string, now time.Time) (*GroupState, error) {
	g := s.byName[name]
	if g == nil {
		return nil, fmt.Errorf("ks: no group %s", name)
	}
	if !g.members.based {
		st, err := s.state(name, now, true)
		if err == nil {
			g.members.saved()
		}
		return st, err
	}
	st, err := s.state(name, now, false)
	if err != nil {
		return nil, err
	}
	st.Delta = true
	st.Members = make([]MemberState, 0, len(g.members.unsaved))
	versions := map[version.Version]string{}
	for _, i := range g.members.unsaved {
		m := g.members.at(i)
		if !m.unsaved {
			continue // listed twice (Restore rewrote the records)
		}
		m.unsaved = false
		st.Members = append(st.Members, g.memberState(m, versions))
	}
	g.members.unsaved = g.members.unsaved[:0]
	return st, nil
}

// membersSaved records that a whole state of the group, taken now, was
// written: the next DeltaState lists only what changes after it.
func (s *Server) membersSaved(name string) {
	if g := s.byName[name]; g != nil {
		g.members.saved()
	}
}

// memberState is m as stored; versions caches the members' version
// strings (a group's members run a few versions: fmt per member was a
// third of a State's time with 100,000).
func (g *group) memberState(m *memberRec, versions map[version.Version]string) MemberState {
	vs, ok := versions[m.version]
	if !ok {
		vs = m.version.String()
		versions[m.version] = vs
	}
	ms := MemberState{Address: m.addr, Port: m.port, Identity: m.ident(), Version: vs,
		Registered: fromUnixNano(m.registered), LastRegister: fromUnixNano(m.lastRegister), Registrations: int(m.registrations),
		SenderIDs: g.members.sids(m), SIDBits: m.sidBits, MissedRekeys: int(m.missed), Removed: m.removed}
	if len(g.members.prevSIDs) > 0 {
		if prev := g.members.prevSIDs[m.addr]; len(prev) > 0 {
			ms.PrevSenderIDs = slices.Clone(prev)
		}
	}
	return ms
}

func (s *Server) state(name string, now time.Time, members bool) (*GroupState, error) {
	g := s.byName[name]
	if g == nil {
		return nil, fmt.Errorf("ks: no group %s", name)
	}
	st := &GroupState{Name: g.cfg.Name, ID: g.cfg.ID, Seq: g.seq, UpdatedAt: now, PseudotimeStart: g.ptStart,
		KEK: KEKState{SPI: g.kekSPI, Key: g.kekKey, KeyBits: g.cfg.KEKKeyBits, Expires: g.kekExp}}
	if g.sig.signer != nil {
		// The key the members hold, which the next rekey is signed with:
		// a KS restarted before it announced a new key still has the old
		// one (Restore).
		der, err := x509.MarshalPKCS8PrivateKey(g.sig.signer)
		if err != nil {
			return nil, fmt.Errorf("ks: group %s: rekey key: %w", name, err)
		}
		st.SigningKey = der
	}
	for _, t := range g.teks {
		st.TEKs = append(st.TEKs, TEKState{SPI: t.spi, Transform: uint8(t.policy.Transform), KeyBits: t.policy.KeyBits,
			AuthAlg: t.policy.AuthAlg, EncKey: t.encKey, AuthKey: t.authKey, Proto: t.sel.Proto, Src: t.sel.Src, Dst: t.sel.Dst,
			SrcPort: t.sel.SrcPort, DstPort: t.sel.DstPort, Created: t.created, Expires: t.expires, Lifetime: t.policy.Lifetime, SIDNext: t.sidNext, SIDBits: t.sidBits, SIDReserved: t.sidReserved, SIDFloor: t.sidFloor})
	}
	if !members {
		return st, nil
	}
	st.Members = make([]MemberState, 0, g.members.len())
	versions := map[version.Version]string{}
	for i := range int32(g.members.len()) {
		st.Members = append(st.Members, g.memberState(g.members.at(i), versions))
	}
	return st, nil
}

// Restore replaces a configured group's keys, sequence number and members
// with what the store kept, so that a restarted KS continues where it
// stopped: GMs keep decrypting its rekeys, and the sequence number goes on
// from above everything ever reserved (SPEC T1, O4). Keys whose policy no
// longer matches the configuration (a TEK for a selector or transform that
// is gone) are not restored; the policy's fresh keys stay.
func (s *Server) Restore(st *GroupState, now time.Time) error {
	g := s.byName[st.Name]
	if g == nil || g.cfg.ID != st.ID {
		return fmt.Errorf("ks: stored group %s (identity %d) is not configured", st.Name, st.ID)
	}
	g.seq = max(st.Seq, st.SeqReserved)
	// Every number up to the reservation may have reached GMs.
	g.sentSeq = g.seq
	// With COOP the stored keys count as this KS's own until it hears a
	// primary (issue 16): the primary may have moved to other keys
	// meanwhile, or they were this KS's own (served while it elected).
	// The GMs that hold them, or register before a primary is heard, then
	// get the primary's keys forwarded at once, with multicast too
	// (Delivery.Adopt); keys that are still the primary's change nothing.
	g.adopted = false
	if !st.PseudotimeStart.IsZero() && !st.PseudotimeStart.After(now) {
		// The GMs' pseudotime goes on from where it was: a restarted
		// KS that started it again at 0 would put every GM it rekeys
		// outside the others' TBAR windows (issue 13's bench).
		g.ptStart, g.synced = st.PseudotimeStart, now
	}
	kekRestored := false // the members' KEK: they may get the next rekey
	if g.sig.alg != 0 && len(st.KEK.Key) == 16+g.cfg.KEKKeyBits/8 && now.Before(st.KEK.Expires) {
		g.kekSPI, g.kekKey, g.kekExp = st.KEK.SPI, st.KEK.Key, st.KEK.Expires
		kekRestored = true
		s.restoreSigningKey(g, st.SigningKey)
	}
	restored := map[*tek]uint32{}
	for i, t := range g.teks {
		for _, k := range st.TEKs {
			if k.Src == t.sel.Src && k.Dst == t.sel.Dst && k.Proto == t.sel.Proto && k.SrcPort == t.sel.SrcPort && k.DstPort == t.sel.DstPort &&
				isakmp.ESPTransform(k.Transform) == t.policy.Transform && k.KeyBits == t.policy.KeyBits && k.AuthAlg == t.policy.AuthAlg &&
				now.Before(k.Expires) {
				g.teks[i] = &tek{policy: t.policy, sel: t.sel, before: t.before, after: t.after, receiveOnly: t.receiveOnly,
					spi: k.SPI, encKey: k.EncKey, authKey: k.AuthKey, created: k.Created, expires: k.Expires, sidNext: k.SIDNext, sidBits: MinSIDBits}
				if validSIDBits(int(k.SIDBits)) {
					g.teks[i].sidBits = k.SIDBits
				}
				g.teks[i].sidFloor = sidCeilAt(k.SIDFloor, g.teks[i].sidBits, g.teks[i].sidBits)
				restored[g.teks[i]] = k.SIDNext
			}
		}
	}
	for _, ms := range st.Members {
		if !ms.Address.IsValid() {
			continue
		}
		m := g.members.get(ms.Address)
		if m == nil {
			m = g.members.add(ms.Address)
		}
		v, _ := version.Parse(ms.Version)
		*m = memberRec{addr: ms.Address, port: ms.Port, version: v, registered: unixNano(ms.Registered), lastRegister: unixNano(ms.LastRegister),
			registrations: uint32(max(ms.Registrations, 0)), sidBits: ms.SIDBits, missed: uint32(max(ms.MissedRekeys, 0)), removed: ms.Removed}
		m.setIdentity(ms.Identity)
		delete(g.members.moreSIDs, ms.Address) // the record is whole anew: setSIDs drops an entry only for nsid > 1
		g.members.setSIDs(m, ms.SenderIDs)
		g.members.setPrevSIDs(m, ms.PrevSenderIDs)
	}
	g.members.changedAll() // the next state for the store is whole
	g.regs, g.acked, g.missed = 0, 0, 0
	for i := range int32(g.members.len()) {
		m := g.members.at(i)
		g.regs, g.acked, g.missed = g.regs+int(m.registrations), g.acked+int(m.acksReceived), g.missed+int(m.acksMissed)
	}
	// The width of the IDs handed out: the restored keys' (the widest,
	// never narrower); with none restored, chosen for the fresh keys from
	// the members restored.
	width := 0
	for _, t := range g.teks {
		if _, ok := restored[t]; ok && t.counter() {
			width = max(width, int(t.sidBits))
		}
	}
	if width == 0 {
		g.chooseSIDBits()
	} else {
		g.setSIDBits(width)
	}
	for _, t := range g.teks {
		if _, ok := restored[t]; !ok && t.counter() {
			t.sidBits = uint8(g.sidBits)
		}
	}
	// Sender IDs in use: with a restored key, every one below its count
	// (handed out under it); with any key, those the members hold
	// (carrySIDs: a fresh key reaches them by a rekey, which they enter
	// with the IDs they have).
	// A restored key's count is what the last write of its keys saw: a
	// GDOI registration hands out IDs without writing the count first,
	// but never one at or above the key's high-water mark as last written
	// (allocSID raises it a block at a time; the owner writes the keys
	// before the answer leaves: SIDReservationsUnwritten). The KS goes on
	// from the mark. The members are saved less often than the keys (a
	// registration's keys-only write leaves them), so any ID below the
	// mark that no stored member holds may be held by a member the store
	// lost, who carries it into a later rekey's keys (multicast, or
	// unicast once it is on the rekey list: carrySIDs): those stay
	// marked in every later key of the group (sidGhost), and in a group
	// with rekeys every later key's floor is at least the mark
	// (carrySIDs), written with it, so that later restarts keep them too.
	// Below a key's floor are the IDs members carried into it from the
	// keys it replaced, lost members' included: kept the same way, for a
	// restored key and, with the members' KEK restored, for fresh keys
	// made because the stored ones expired or no longer match
	// the policy (lost members may enter those by the next rekey). A
	// state written before marks were kept (none stored: 0; a key made
	// since starts with a mark of 1) skips a margin above the count
	// instead (sidRestoreMargin).
	var held sidSet // the stored members' IDs
	for i := range int32(g.members.len()) {
		m := g.members.at(i)
		w := m.sidWidth()
		g.members.eachSID(m, func(id uint32) {
			if id > 0 {
				held.add(id, w)
			}
		})
	}
	for _, prev := range g.members.prevSIDs {
		for _, v := range prev {
			if id, bits, ok := unpackPrevSID(v); ok {
				held.add(id, bits)
			}
		}
	}
	// bound is below what key k (stored) may have handed out or carried,
	// at width w.
	bound := func(k *TEKState, w uint8) uint32 {
		mark := uint64(k.SIDReserved)
		if mark == 0 {
			from := int(k.SIDBits)
			if !validSIDBits(from) {
				from = MinSIDBits
			}
			mark = uint64(max(k.SIDNext, 1)) + uint64(sidRestoreMargin(from))
		}
		return sidCeilAt(uint32(min(max(mark, uint64(k.SIDFloor)), math.MaxUint32)), k.SIDBits, w)
	}
	ghosts := map[sidRange]bool{}
	for _, r := range g.sidGhost {
		ghosts[r] = true
	}
	for _, t := range g.teks {
		if !t.counter() {
			continue
		}
		w := int(t.sidBits)
		var hi uint32
		if c, ok := restored[t]; ok {
			hi = max(c, 1)
			for i := range st.TEKs {
				if st.TEKs[i].SPI == t.spi {
					hi = max(hi, bound(&st.TEKs[i], t.sidBits))
				}
			}
		}
		if kekRestored {
			for i := range st.TEKs {
				if len(st.TEKs[i].AuthKey) == 0 { // counter-mode: sender IDs
					hi = max(hi, bound(&st.TEKs[i], t.sidBits))
				}
			}
		}
		hi = min(hi, 1<<w)
		for id := uint32(1); id < hi; {
			if held.has(id, w) {
				id++
				continue
			}
			r := sidRange{lo: id, bits: uint8(w)}
			for id < hi && !held.has(id, w) {
				id++
			}
			r.hi = id
			if !ghosts[r] {
				ghosts[r] = true
				g.sidGhost = append(g.sidGhost, r)
			}
		}
		t.sidFloor = max(t.sidFloor, hi)
		if _, ok := restored[t]; ok {
			t.sidNext = max(t.sidNext, hi)
			t.sidReserved = t.sidNext // the next ID raises it, written first
			restored[t] = hi
		}
	}
	for _, t := range g.teks {
		for id := uint32(1); id < min(restored[t], 1<<t.sidBits); id++ {
			t.sidUsed.add(id, int(t.sidBits))
		}
		g.carrySIDs(t)
	}
	if len(g.sidGhost) > 0 {
		g.setSIDBits(g.sidBits) // the cap less the margin's IDs
	}
	g.dropStale()
	return nil
}

// sidRestoreMargin is how many IDs of width bits a restarted KS skips
// above a restored key's stored count when the state holds no high-water
// mark (written by a version before marks were kept): 1/16 of the width's
// space (4,096 at 16 bits).
func sidRestoreMargin(bits int) uint32 { return 1 << (bits - 4) }

// restoreSigningKey takes the stored rekey key the members hold (held,
// PKCS#8) when it is not the configured one: the key was replaced (and
// the configuration reloaded) before a rekey announced it, or while the
// KS was stopped. The next rekey then announces the configured key,
// signed with the stored one (setSigningKey). A stored key that cannot be
// used leaves the configured key signing at once: the members reject its
// rekeys and register again before their keys expire (logged).
func (s *Server) restoreSigningKey(g *group, held []byte) {
	if len(held) == 0 {
		return
	}
	key, err := x509.ParsePKCS8PrivateKey(held)
	var k sigKey
	if err == nil {
		signer, ok := key.(crypto.Signer)
		if !ok {
			err = fmt.Errorf("a %T is not a signing key", key)
		} else {
			k, err = newSigKey(signer)
		}
	}
	switch {
	case err != nil:
		mnemonic.Log(s.log, mnemonic.Warning, "KS_REKEY_KEY_LOST", "Group %s: the stored rekey key the members hold cannot be used (%v): rekeys are signed with the configured key, which members reject until they register again", g.cfg.Name, err)
	case !k.same(g.sig):
		configured := g.sig
		g.sig, g.announce = k, &configured
		s.log.Info("rekey key changed since the state was saved: the next rekey announces it to the members, signed with the stored key they hold", "group", g.cfg.Name)
	}
}

// SIDReservationsUnwritten lists the groups whose keys' sender-ID
// high-water marks were raised (a registration was given an ID at or
// above a mark, Keys) and not yet reported written: the owner writes
// each one's keys (KeysState, a keys-only write) before it sends the
// answer that carries the ID, then calls SIDReservationWritten. Without
// that write, a crash and restart could hand the ID out again under the
// same key (identical AES-GCM nonces). It is empty but once every block
// of IDs (sidReserveBlock).
func (s *Server) SIDReservationsUnwritten() []string {
	var out []string
	for _, g := range s.byName {
		if g.sidUnwritten {
			out = append(out, g.cfg.Name)
		}
	}
	return out
}

// SIDReservationWritten records that st, a State or KeysState of its
// group, is durable: the group's marks are written when st holds each
// counter-mode key's current one (or a higher one).
func (s *Server) SIDReservationWritten(st *GroupState) {
	g := s.byName[st.Name]
	if g == nil || !g.sidUnwritten {
		return
	}
	for _, t := range g.teks {
		if !t.counter() {
			continue
		}
		ok := false
		for _, k := range st.TEKs {
			if k.SPI == t.spi && sidMarkAt(k.SIDReserved, k.SIDBits, t.sidBits) >= t.sidReserved {
				ok = true
				break
			}
		}
		if !ok {
			return
		}
	}
	g.sidUnwritten = false
}

// sidMarkAt is a high-water mark of width from (0: MinSIDBits) at width
// to (the IDs below it of width to); a narrower mark is not lowered.
func sidMarkAt(mark uint32, from, to uint8) uint32 {
	f, t := max(int(from), MinSIDBits), max(int(to), MinSIDBits)
	if f < t {
		return mark << (t - f)
	}
	return mark >> (f - t) // a wider mark at a narrower width: rounded down
}

// Dirty reports whether member state changed since the last MarkSaved:
// the owner then saves the groups.
func (s *Server) Dirty() bool { return s.dirty }

// MarkSaved records that the owner saved the groups.
func (s *Server) MarkSaved() { s.dirty = false }

// SetSeqFloor makes the next rekey of the group use a sequence number
// above floor (the store's reservation).
func (s *Server) SetSeqFloor(name string, floor uint32) {
	if g := s.byName[name]; g != nil && g.seq < floor {
		g.seq = floor
	}
}

// undo is a group as it was before a rekey, policy-replace rekey or GM
// removal was built: the delivery puts it back when the rekey's write
// before send fails, so that the KS goes on with the keys its members
// hold (the signing key not yet announced, the KEK they have) and none
// are saved off the rekey list. The sequence number reserved on disk for
// the unsent rekey stays used up. A rekey makes new keys and a new TEK
// list and changes only the members' Removed flags in place, so a copy of
// the group and of those flags is the whole of it.
type undo struct {
	g       *group
	saved   group
	removed []bool // by the members' order in the group's list
	dirty   bool
}

// checkpoint takes the group's state for undo (nil: no such group).
func (s *Server) checkpoint(name string) *undo {
	g := s.byName[name]
	if g == nil {
		return nil
	}
	u := &undo{g: g, saved: *g, dirty: s.dirty, removed: make([]bool, g.members.len())}
	for i := range int32(g.members.len()) {
		u.removed[i] = g.members.at(i).removed
	}
	return u
}

// rollback puts the group back as checkpoint took it.
func (s *Server) rollback(u *undo) {
	if u == nil {
		return
	}
	cur := u.g.members // the list as it is (its records changed in place)
	out := u.g.out     // what is laid out, checked at each use (their key packets cleared when replaced)
	*u.g = u.saved
	u.g.members, u.g.out = cur, out
	for i, r := range u.removed {
		if i < cur.len() {
			cur.at(int32(i)).removed = r
		}
	}
	s.dirty = u.dirty
}
