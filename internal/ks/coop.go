package ks

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Cooperative key servers (SPEC C1, docs/coop.md): what the key server
// does for the node's COOP elector. The elector decides the role
// (TakeOver, StepDown); the primary's announcements carry its policy and keys
// (Announce), which a secondary takes (AdoptKeys) and carries to the GMs
// registered with it (Forward); every KS's announcements carry its own
// members (LocalMembers), which the others list (SetPeerView).

// SeqMargin is added to the rekey sequence number a KS adopted when it
// becomes primary (TakeOver): the old primary announces at once after
// each rekey it sends, so the GMs it rekeyed after its last announcement
// that reached this KS are at most a few numbers ahead; 1,000 covers
// every rekey a lost announcement can hide, at no cost (32 bits).
const SeqMargin = 1000

// TakeOver makes this KS the group's primary (the elector's RoleChanged
// to Primary): its rekey sequence number jumps by SeqMargin, so that its
// next rekey is above any the old primary sent, and its schedule runs.
func (s *Server) TakeOver(name string) {
	g := s.byName[name]
	if g == nil || g.cfg.Redundancy == nil || g.primary {
		return
	}
	s.takeOver(g)
}

// takeOver makes g primary, SeqMargin above the numbers it adopted
// (TakeOver, and redundancy removed from a secondary: UpdatePolicy).
func (s *Server) takeOver(g *group) {
	g.primary, g.adopted, g.unadoptable = true, true, false
	if g.seq < ^uint32(0)-SeqMargin {
		g.seq += SeqMargin
	}
	s.dirty = true
}

// StepDown makes this KS a secondary of the group (the elector's
// RoleChanged to Secondary): no scheduled rekeys; it keeps its keys until
// it adopts the primary's.
func (s *Server) StepDown(name string) {
	if g := s.byName[name]; g != nil && g.cfg.Redundancy != nil {
		g.primary = false
	}
}

// FollowNone records that this KS follows no primary (electing): it
// registers GMs with its own keys again, even if the last primary's
// could not be adopted.
func (s *Server) FollowNone(name string) {
	if g := s.byName[name]; g != nil {
		g.unadoptable = false
	}
}

// RefusedUnadoptable is the number of registrations refused because the
// primary's keys could not be adopted (Join), summed over the groups.
func (s *Server) RefusedUnadoptable() uint64 {
	var n uint64
	for _, g := range s.byName {
		n += g.unadoptableRefused
	}
	return n
}

// Adopted reports whether the group's keys are a primary's: this KS is
// the primary (or a lone KS), or it adopted a primary's keys. A KS that
// has heard no primary yet serves its own (restored ones count as its
// own: Restore).
func (s *Server) Adopted(name string) bool {
	g := s.byName[name]
	return g != nil && (g.isPrimary() || g.adopted)
}

// Announce returns what the primary's announcements carry of the group:
// its policy (SAK, SATs) and keys (KD: each TEK's keys, the KEK's key
// with the rekey key's public half, as a registration carries them: the
// secondaries check it is the one they are configured with), and its
// rekey sequence number.
func (s *Server) Announce(name string, now time.Time) (*isakmp.GroupSA, *isakmp.KD, uint32, error) {
	g := s.byName[name]
	if g == nil {
		return nil, nil, 0, fmt.Errorf("ks: no group %s", name)
	}
	sa := g.policy(now)
	kd := &isakmp.KD{}
	for _, t := range g.teks {
		kd.Packets = append(kd.Packets, t.packet())
	}
	if g.sig.alg != 0 {
		kd.Packets = append(kd.Packets, g.kekPacket(g.sig))
	}
	for _, t := range g.teks {
		if t.counter() {
			// The width of the keys' sender IDs, without values: the
			// secondaries hand out IDs of the same width (AdoptKeys).
			kd.Packets = append(kd.Packets, gdoi.SIDKeyPacket(max(g.sidBits, MinSIDBits), nil))
			break
		}
	}
	return sa, kd, g.seq, nil
}

// announcedSIDBits is the sender-ID width of a primary's announcement:
// its SID key packet's NUMBER_OF_SID_BITS, MinSIDBits when it has none
// (a KS of a version before widths were chosen per group hands out 16-bit
// IDs).
func announcedSIDBits(kd *isakmp.KD) (int, error) {
	p := kd.Packet(isakmp.KDSID, nil)
	if p == nil {
		return MinSIDBits, nil
	}
	a, ok := p.Attributes.Find(isakmp.SIDNumberOfBits)
	if !ok {
		return MinSIDBits, nil
	}
	v, err := a.Uint()
	if err != nil || !validSIDBits(int(v)) {
		return 0, fmt.Errorf("sender-ID width %d outside %d..%d", v, MinSIDBits, MaxSIDBits)
	}
	return int(v), nil
}

// Seq is the group's rekey sequence number (the last used or adopted).
func (s *Server) Seq(name string) uint32 {
	if g := s.byName[name]; g != nil {
		return g.seq
	}
	return 0
}

// KEK is the group's current KEK.
func (s *Server) KEK(name string) gdoi.KEK {
	if g := s.byName[name]; g != nil {
		return gdoi.KEK{SPI: g.kekSPI, Key: slices.Clone(g.kekKey)}
	}
	return gdoi.KEK{}
}

// AdoptKeys takes the primary's keys from its announcement: the KEK and
// each TEK of a policy configured here (matched by selector and
// transform: all the KSs of a group have the same policy configured, as
// IOS requires), and a sequence number not below its own. changed reports
// whether any key differs from those held (prev is the KEK held before,
// which the GMs registered here hold). A mismatch (a SAT for no policy
// configured here, a policy without a SAT, a key of the wrong length)
// adopts nothing.
func (s *Server) AdoptKeys(name string, sa *isakmp.GroupSA, kd *isakmp.KD, seq uint32, now time.Time) (changed bool, prev gdoi.KEK, err error) {
	g := s.byName[name]
	if g == nil {
		return false, prev, fmt.Errorf("ks: no group %s", name)
	}
	// Keys of the followed primary that cannot be adopted stop
	// registrations here (Join) until some are.
	defer func() { g.unadoptable = err != nil }()
	prev = gdoi.KEK{SPI: g.kekSPI, Key: slices.Clone(g.kekKey)}
	if sa == nil || kd == nil {
		return false, prev, fmt.Errorf("ks: group %s: announcement without policy and keys", name)
	}
	fresh, err := s.freshTEKs(g, now)
	if err != nil {
		return false, prev, err
	}
	if len(sa.TEKs) != len(fresh) {
		return false, prev, fmt.Errorf("ks: group %s: the primary's policy has %d TEKs, this KS's %d (configure the same policy on every KS)", name, len(sa.TEKs), len(fresh))
	}
	var pt time.Duration
	for _, t := range fresh {
		var sat *isakmp.SAT
		for _, c := range sa.TEKs {
			if c.Protocol == isakmp.TEKProtoESP && c.TransformID == uint8(t.policy.Transform) && c.Selector.Protocol == t.sel.Proto &&
				c.Src.Port == t.sel.SrcPort && c.Dst.Port == t.sel.DstPort && prefixIs(c.Src, t.sel.Src) && prefixIs(c.Dst, t.sel.Dst) {
				sat = c
				break
			}
		}
		if sat == nil {
			return false, prev, fmt.Errorf("ks: group %s: the primary has no TEK for %s %v -> %v (configure the same policy on every KS)", name, t.policy.Transform, t.sel.Src, t.sel.Dst)
		}
		enc, auth, err := tekKeyLens(t.policy)
		if err != nil {
			return false, prev, err
		}
		kp := kd.Packet(isakmp.KDTEK, be32(sat.SPI))
		if kp == nil {
			return false, prev, fmt.Errorf("ks: group %s: no keys for TEK 0x%08x", name, sat.SPI)
		}
		k, ok := kp.Attributes.Find(isakmp.TEKAlgorithmKey)
		if !ok || len(k.Data) != enc {
			return false, prev, fmt.Errorf("ks: group %s: TEK 0x%08x: key not %d octets", name, sat.SPI, enc)
		}
		t.spi, t.encKey, t.authKey = sat.SPI, slices.Clone(k.Data), nil
		if auth > 0 {
			a, ok := kp.Attributes.Find(isakmp.TEKIntegrityKey)
			if !ok || len(a.Data) != auth {
				return false, prev, fmt.Errorf("ks: group %s: TEK 0x%08x: integrity key not %d octets", name, sat.SPI, auth)
			}
			t.authKey = slices.Clone(a.Data)
		}
		t.expires = now.Add(life(sat.Attributes, uint16(isakmp.IPsecSALifeDuration), t.policy.Lifetime))
		if a, ok := sat.Attributes.Find(uint16(isakmp.IPsecPseudotime)); ok {
			if v, err := a.Uint(); err == nil && v < 1<<40 {
				pt = max(pt, time.Duration(v)*time.Millisecond)
			}
		}
	}
	sidBits, err := announcedSIDBits(kd)
	if err != nil {
		return false, prev, fmt.Errorf("ks: group %s: the primary's announcement: %w", name, err)
	}
	var kekKey []byte
	var kekExp time.Time
	if g.sig.alg != 0 {
		if sa.KEK == nil {
			return false, prev, fmt.Errorf("ks: group %s: the primary announced no KEK (configure the same rekey authentication on every KS)", name)
		}
		kp := kd.Packet(isakmp.KDKEK, sa.KEK.SPI[:])
		var k isakmp.Attribute
		ok := kp != nil
		if ok {
			k, ok = kp.Attributes.Find(isakmp.KEKAlgorithmKey)
		}
		if !ok || len(k.Data) != 16+g.cfg.KEKKeyBits/8 {
			return false, prev, fmt.Errorf("ks: group %s: the primary's KEK key is missing or not IV plus %d bits", name, g.cfg.KEKKeyBits)
		}
		kekKey, kekExp = slices.Clone(k.Data), now.Add(life(sa.KEK.Attributes, uint16(isakmp.KEKKeyLifetime), g.cfg.KEKLifetime))
		if pub, ok := kp.Attributes.Find(isakmp.KEKSigKey); ok && string(pub.Data) != string(g.sig.pub) &&
			(g.announce == nil || string(pub.Data) != string(g.announce.pub)) {
			return false, prev, fmt.Errorf("ks: group %s: the primary signs rekeys with another key than this KS's (import the same rekey key on every KS)", name)
		}
	}
	// Adopted: nothing can fail below.
	if g.sig.alg != 0 && (sa.KEK.SPI != g.kekSPI || string(kekKey) != string(g.kekKey)) {
		changed = true
		g.kekSPI, g.kekKey = sa.KEK.SPI, kekKey
	}
	if g.sig.alg != 0 {
		g.kekExp = kekExp
	}
	if len(fresh) != len(g.teks) {
		changed = true
	}
	for i, t := range fresh {
		if i < len(g.teks) && g.teks[i].spi == t.spi && string(g.teks[i].encKey) == string(t.encKey) {
			// The same key: keep its sender-ID bookkeeping.
			g.teks[i].expires = t.expires
			fresh[i] = g.teks[i]
			continue
		}
		changed = true
		if t.counter() {
			t.sidBits = uint8(sidBits)
		}
		g.carrySIDs(t)
	}
	if sidBits != g.sidBits {
		// The primary's width: IDs of another width than the other KSs'
		// could be prefixes of theirs. The count of what this KS may hand
		// out is sized again.
		g.setSIDBits(sidBits)
	}
	g.teks = fresh
	if pt > 0 {
		g.ptStart = now.Add(-pt)
	}
	if seq > g.seq || !g.adopted {
		g.seq = max(g.seq, seq) // saved by Delivery.Adopt (or the next periodic save)
		s.dirty = true
	}
	g.adopted = true
	g.policyChanged, g.kekPolicyChanged = false, false
	if changed {
		s.dirty = true
		g.dropStale()
	}
	return changed, prev, nil
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// prefixIs reports whether a SAT endpoint names exactly p.
func prefixIs(e isakmp.Endpoint, p netip.Prefix) bool {
	q, err := e.Prefix()
	return err == nil && q == p
}

// life reads a lifetime attribute in seconds (def when absent or 0).
func life(as isakmp.Attributes, t uint16, def time.Duration) time.Duration {
	if a, ok := as.Find(t); ok {
		if v, err := a.Uint(); err == nil && v > 0 {
			return time.Duration(min(v, 1<<31)) * time.Second
		}
	}
	return def
}

// Forward builds the rekey that carries the group's current (adopted)
// keys to the GMs registered with this KS, encrypted under the KEK they
// hold (under, the KEK before the adoption) and signed with the group's
// rekey key, which all the KSs of a group share. Its sequence number is
// the adopted one when that is new here, else one above it (a merge: the
// losing side's GMs are ahead of the winner's numbers); the primary raises
// its own above every number its peers announce (RaiseSeq). atd is the
// activation delay sent (0 after a merge: the GMs send with the winner's
// TEKs at once, which the winner's GMs already hold). Nil when no GM is
// registered here.
func (s *Server) Forward(name string, under gdoi.KEK, newKEK bool, atd time.Duration, now time.Time) (*Push, error) {
	g := s.byName[name]
	if g == nil {
		return nil, fmt.Errorf("ks: no group %s", name)
	}
	if g.sig.alg == 0 {
		return nil, nil
	}
	list := g.rekeyList()
	if len(list) == 0 && !g.cfg.Rekey.Multicast.IsValid() {
		return nil, nil
	}
	seq := g.seq
	if seq <= g.sentSeq {
		seq = g.sentSeq + 1
	}
	r := &gdoi.Rekey{Seq: seq, SA: &isakmp.GroupSA{GAP: gdoi.RekeyGAP(atd, RekeyDTD)}, KD: &isakmp.KD{}}
	if newKEK {
		r.SA.KEK = g.sak(now, g.sig)
		r.KD.Packets = append(r.KD.Packets, g.kekPacket(g.sig))
	}
	for _, t := range g.teks {
		r.SA.TEKs = append(r.SA.TEKs, t.sat(now, g.pseudotime(now)))
		r.KD.Packets = append(r.KD.Packets, t.packet())
	}
	data, err := gdoi.SealPush(r, under, g.sig.signer, g.sig.alg, s.rand)
	if err != nil {
		return nil, fmt.Errorf("ks: group %s: %w", name, err)
	}
	g.seq, g.sentSeq, g.synced = seq, seq, now
	p := &Push{Group: name, Seq: seq, Data: data, KEK: under, Policy: g.cfg.Rekey.withDefaults(), NewKEK: newKEK}
	if !p.Policy.Multicast.IsValid() {
		for _, m := range list {
			p.Members = append(p.Members, netip.AddrPortFrom(m.addr, m.port))
		}
	}
	return p, nil
}

// RaiseSeq makes the group's next rekey use a number above seq (a peer KS
// announced it: its GMs accept only higher numbers).
func (s *Server) RaiseSeq(name string, seq uint32) {
	if g := s.byName[name]; g != nil && g.seq < seq {
		g.seq = seq
		s.dirty = true
	}
}

// MemberVersion is one GM of a group with the version it announced, as
// COOP announcements list them.
type MemberVersion struct {
	Addr    netip.Addr
	Version version.Version
}

// LocalMembers lists the GMs registered with this KS (removed ones left
// out), by address, and the generation of that list: it rises whenever a
// member joins, leaves or changes version.
func (s *Server) LocalMembers(name string) ([]MemberVersion, uint64) {
	g := s.byName[name]
	if g == nil {
		return nil, 0
	}
	out := make([]MemberVersion, 0, g.members.len())
	for i := range int32(g.members.len()) {
		if m := g.members.at(i); !m.removed {
			out = append(out, MemberVersion{Addr: m.addr, Version: m.version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, g.membersGen
}

// MembersGen is the generation of the group's local member list.
func (s *Server) MembersGen(name string) uint64 {
	if g := s.byName[name]; g != nil {
		return g.membersGen
	}
	return 0
}

// PeerKS is a cooperative key server of the group as its announcements
// tell: its version and whether it is reachable.
type PeerKS struct {
	Addr      netip.Addr
	Version   version.Version // zero: never heard
	Reachable bool
	// KSSet is the KS set digest the peer last announced (KSSetDigest;
	// nil: none heard). Kept while the peer is unreachable.
	KSSet []byte
}

// SetPeerView records what the peer KSs of the group announced: the KSs
// with their versions, and the GMs registered with each (by peer). show
// crypto gdoi feature lists them with this KS's own (SPEC V3, R5).
func (s *Server) SetPeerView(name string, peers []PeerKS, members map[netip.Addr][]MemberVersion) {
	g := s.byName[name]
	if g == nil {
		return
	}
	g.peerKS = slices.Clone(peers)
	g.remote = members
}

// sidSlot confines the sender IDs this KS hands out to its share of the
// space: with cooperative key servers each KS of the group registers
// GMs under the same keys, so two KSs must never give out the same ID
// (RFC 6054 §3). The KSs (this one and its peers, sorted by address:
// ksSet) take the IDs whose 16-bit prefix less one is congruent to their
// rank modulo their number, at every width (sidShareFrom). Returns stride 1 for a lone KS. The split is only disjoint while every
// KS has the same set: sidViewsAgree.
func (g *group) sidSlot() (stride, rank uint32) {
	if g.cfg.Redundancy == nil || len(g.cfg.Redundancy.Peers) == 0 {
		return 1, 0 // a lone KS: not a set sorted for every sender ID (issue 18)
	}
	all := g.ksSet()
	if len(all) < 2 {
		return 1, 0
	}
	return uint32(len(all)), uint32(slices.Index(all, g.cfg.Address.Unmap()))
}

// ksSet is the group's key servers, this one and its peers, sorted by
// address; just this one without redundancy.
func (g *group) ksSet() []netip.Addr {
	all := []netip.Addr{g.cfg.Address.Unmap()}
	if r := g.cfg.Redundancy; r != nil {
		for _, p := range r.Peers {
			all = append(all, p.Unmap())
		}
	}
	slices.SortFunc(all, netip.Addr.Compare)
	return slices.Compact(all)
}

// KSSetDigestLen is the length of a KS set digest (KSSetDigest).
const KSSetDigestLen = 8

// KSSetDigest is the digest of a group's set of key servers as one KS
// is configured with it (itself and its `peer address` lines): the
// first 8 octets of SHA-256 over the sorted, deduplicated addresses, each
// as 16 octets (IPv4 mapped). Each KS announces its own (the COOP
// payload's State, docs/wire.md); KSs whose digests differ split the
// sender IDs differently (sidSlot), so none hands out any then
// (sidViewsAgree).
func (s *Server) KSSetDigest(name string) []byte {
	g := s.byName[name]
	if g == nil {
		return nil
	}
	return g.ksSetDigest()
}

func (g *group) ksSetDigest() []byte {
	h := sha256.New()
	for _, a := range g.ksSet() {
		b := a.As16()
		h.Write(b[:])
	}
	return h.Sum(nil)[:KSSetDigestLen]
}

// sidViewsAgree reports whether this KS may hand out sender IDs of the
// group (RFC 6054 §3 across KSs, issue 16): a lone KS always; with
// cooperative KSs, only while no peer has announced another KS set than
// this KS's (SetPeerView): two KSs whose sets differ split the IDs by
// different strides and hand out the same ones (A lists B and C: IDs 1,
// 4, 7; B lists only A: 2, 4, 6). A peer never heard, or that announced
// no digest (an older version), is taken to agree: a KS whose peers are
// down still serves, and a peer's first announcement (within one round
// trip of the SA) ends that window. A refusal is counted
// (SIDRefusedKSSet) and logged at most once a minute.
func (g *group) sidViewsAgree(log *slog.Logger, now time.Time) error {
	if g.cfg.Redundancy == nil || len(g.cfg.Redundancy.Peers) == 0 {
		return nil
	}
	own := g.ksSetDigest()
	for _, p := range g.peerKS {
		if len(p.KSSet) == 0 || bytes.Equal(p.KSSet, own) || !slices.Contains(g.cfg.Redundancy.Peers, p.Addr) {
			continue
		}
		g.sidRefused++
		if now.Sub(g.sidRefusedLog) >= time.Minute || g.sidRefusedLog.IsZero() {
			g.sidRefusedLog = now
			mnemonic.Log(log, mnemonic.Err, "COOP_KS_SID_REFUSED", "KS in group %s hands out no sender IDs: peer KS %s is configured with another set of key servers (peer address lines differ)", g.cfg.Name, p.Addr)
		}
		return &gdoi.Refusal{Notify: isakmp.NotifyAttributesNotSupported,
			Reason: fmt.Sprintf("group %s: sender IDs refused: peer KS %s announces another set of key servers than this KS's", g.cfg.Name, p.Addr)}
	}
	return nil
}

// SIDRefusedKSSet is the number of registrations refused because a
// peer KS announced another set of key servers (sidViewsAgree), summed
// over the groups.
func (s *Server) SIDRefusedKSSet() uint64 {
	var n uint64
	for _, g := range s.byName {
		n += g.sidRefused
	}
	return n
}

// Inherit adds to the group's members the GMs a failed primary had
// registered (its last announced member list), so that this KS, now
// primary, rekeys them too: they hold the keys it adopted. The member
// lists carry no port: port is the GDOI port the KSs of the group use
// (848 in a deployment), where GMs listen too. Members already known are
// left alone. Their acknowledgements go to the KS they registered with,
// so after RekeyPolicy.MaxMissed rekeys they leave the rekey list and
// re-register before their keys expire (SPEC T4), with a live KS.
func (s *Server) Inherit(name string, members []MemberVersion, port uint16, now time.Time) int {
	g := s.byName[name]
	if g == nil {
		return 0
	}
	n := 0
	for _, m := range members {
		if g.members.get(m.Addr) != nil {
			continue
		}
		nm := g.members.add(m.Addr)
		nm.port, nm.version, nm.registered, nm.lastRegister = port, m.Version, unixNano(now), unixNano(now)
		nm.removals = g.removals
		g.members.touch(nm)
		n++
	}
	if n > 0 {
		g.membersGen++
		s.dirty = true
	}
	return n
}
