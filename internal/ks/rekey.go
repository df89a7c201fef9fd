package ks

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/isakmp"
)

// RekeyPolicy is how a group's rekeys are delivered (`rekey retransmit`,
// `rekey transport unicast`, `rekey address ipv4`).
type RekeyPolicy struct {
	Unicast bool
	// Multicast is the group address and port of multicast rekeys
	// (`rekey address ipv4 ACL`); TTL and Interface how they leave.
	Multicast   netip.AddrPort
	TTL         int
	Interface   string
	Retransmit  time.Duration // between transmissions of one rekey, default 10 s
	Retransmits int           // retransmissions after the first, default 2
	// MaxMissed is how many consecutive unacknowledged unicast rekeys
	// remove a GM from the rekey list (it re-registers). Default 3.
	MaxMissed int
}

func (p RekeyPolicy) withDefaults() RekeyPolicy {
	if p.Retransmit == 0 {
		p.Retransmit = 10 * time.Second
	}
	if p.Retransmits == 0 {
		p.Retransmits = 2
	}
	if p.MaxMissed == 0 {
		p.MaxMissed = 3
	}
	return p
}

// Push is one rekey ready to send.
type Push struct {
	Group   string
	Seq     uint32
	Data    []byte   // the GROUPKEY-PUSH datagram
	KEK     gdoi.KEK // the KEK it is encrypted under (ACKs are checked with it)
	Members []netip.AddrPort
	Policy  RekeyPolicy
	NewKEK  bool
	Removal bool
	Replace byte // isakmp.ModeShorten / ModeNow for a policy-replace rekey, 0 otherwise
	// OldData is the same rekey without the policy-replace instruction,
	// for members older than FeatureVersion (SPEC P6); OldMembers get it.
	OldData    []byte
	OldMembers []netip.AddrPort
}

// RekeyPolicy is a group's rekey delivery policy with its defaults (a
// restarted KS resends an interrupted rekey with it).
func (s *Server) RekeyPolicy(name string) RekeyPolicy {
	if g := s.byName[name]; g != nil {
		return g.cfg.Rekey.withDefaults()
	}
	return RekeyPolicy{}.withDefaults()
}

// Activation and deactivation delays sent with every rekey (GAP, RFC 6407
// §5.4.1, RFC 5374 §4.2.1): GMs install the new TEKs for receiving at
// once, start sending with them ATD later, and stop receiving with the
// TEKs they replace DTD later. DTD > ATD, as RFC 6407 recommends, so no
// packet is sent with a key a receiver has already dropped.
const (
	RekeyATD = 30 * time.Second
	RekeyDTD = 90 * time.Second
)

// oldGAP is the GAP of a policy replace's rekey to members before the
// instruction (SPEC P6). After a replace: the activation delay, so that
// they send with the new SAs when the other members do (with no GAP they
// sent at once, before members the rekey had not reached yet held them:
// CI lost a packet as no_sa), and the longest deactivation delay the
// attribute holds (65,535 s, about 18 hours): a GM never deactivates a
// TEK after it expires, so the TEKs the rekey replaces run out, however
// late this rekey or the one that brought them arrived. The delay is sent
// rather than left out: earlier groupvpn GMs read a GAP without one as
// deactivation at once. TEKs with more than 18 hours left end then.
// After a replace-now: none, as the others send with the new SAs at once
// too.
func oldGAP(replace byte) *isakmp.GAP {
	if replace == isakmp.ModeNow {
		return nil
	}
	return gdoi.RekeyGAP(RekeyATD, math.MaxUint16*time.Second)
}

// TBARResync is how often a KS whose group uses time-based anti-replay
// sends a rekey to resynchronise the GMs' pseudotime (SPEC T2).
const TBARResync = 7200 * time.Second

// rekeyLead is how long before keys expire the KS rekeys: three times the
// GM's re-registration window, so that GMs hear the rekey before they
// would re-register (SPEC T1, T4).
func rekeyLead(lifetime time.Duration) time.Duration {
	return 3 * gdoi.ReregistrationWindow(lifetime)
}

// NextRekey is when the group next needs a rekey: ahead of the first TEK
// or KEK expiry. Zero for groups without a KEK (they never rekey).
func (s *Server) NextRekey(name string) time.Time {
	g := s.byName[name]
	if g == nil || g.sig.alg == 0 {
		return time.Time{}
	}
	next := g.kekExp.Add(-rekeyLead(g.cfg.KEKLifetime))
	for _, t := range g.teks {
		if at := t.expires.Add(-rekeyLead(t.policy.Lifetime)); at.Before(next) {
			next = at
		}
	}
	// The sender IDs of the current keys run low: rekey now, so that the
	// next keys are sized for the group (sid.go).
	if !g.sidPressure.IsZero() && g.sidPressure.Before(next) {
		next = g.sidPressure
	}
	// With TBAR the GMs' pseudotime drifts: resynchronise at least every
	// 7200 s (SPEC T2).
	if g.tbar() && !g.synced.IsZero() {
		if at := g.synced.Add(TBARResync); at.Before(next) {
			next = at
		}
	}
	return next
}

// Address is the group's KS address (`address ipv4`), the source of its
// rekeys.
func (s *Server) Address(name string) netip.Addr {
	if g := s.byName[name]; g != nil {
		return g.cfg.Address
	}
	return netip.Addr{}
}

// Groups lists the group names.
func (s *Server) Groups() []string {
	var out []string
	for n := range s.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Rekey builds the group's next GROUPKEY-PUSH: new TEKs for every policy
// and, when the KEK is near its end, a new KEK (delivered under the old
// one, RFC 6407 §4). The group's keys and sequence number advance; the
// caller persists them before sending (write before send, SPEC O4).
func (s *Server) Rekey(name string, now time.Time) (*Push, error) { return s.rekey(name, now, 0) }

// ReplaceRekey is `crypto gdoi ks rekey [replace-now]` (SPEC P2-P6): a
// rekey built from the running policy with a new KEK and the groupvpn
// POLICY-REPLACE instruction (mode isakmp.ModeShorten: GMs shorten the old
// SAs with the TEK_SLT formula; ModeNow: they delete them), plus the same
// rekey without the instruction for members older than FeatureVersion.
func (s *Server) ReplaceRekey(name string, mode byte, now time.Time) (*Push, error) {
	if err := s.CheckPrimaryRekey(name); err != nil {
		return nil, err
	}
	return s.rekey(name, now, mode)
}

func (s *Server) rekey(name string, now time.Time, replace byte) (*Push, error) {
	g := s.byName[name]
	if g == nil {
		return nil, fmt.Errorf("ks: no group %s", name)
	}
	if g.sig.alg == 0 {
		return nil, fmt.Errorf("ks: group %s has no rekey authentication key: it cannot rekey", name)
	}
	// Signed with the key the members hold, which is the old one in the
	// rekey that announces a new key (setSigningKey).
	signer := g.sig
	cur := gdoi.KEK{SPI: g.kekSPI, Key: g.kekKey}
	r := &gdoi.Rekey{Seq: g.seq + 1, SA: &isakmp.GroupSA{GAP: gdoi.RekeyGAP(RekeyATD, RekeyDTD)}, KD: &isakmp.KD{}}
	// A new KEK goes out when the old one nears its end, when its policy
	// changed (cipher, key length, signing key: Table 1 "applied
	// immediately"), and with replace-now; otherwise GMs that missed a
	// rekey can still read the next one.
	newKEK := replace == isakmp.ModeNow || g.kekPolicyChanged || g.announce != nil || !now.Add(rekeyLead(g.cfg.KEKLifetime)).Before(g.kekExp)
	g.kekPolicyChanged = false
	if newKEK {
		if err := s.newKEK(g, now); err != nil {
			return nil, err
		}
		if g.announce != nil {
			// The new key travels in the new KEK's policy and key packet;
			// this rekey, every retransmission of it (the same octets)
			// and an interrupted delivery resumed after a restart (the
			// octets stored) stay signed with the old one.
			g.sig, g.announce = *g.announce, nil
			s.log.Info("rekey key announced: later rekeys are signed with it", "group", name, "seq", r.Seq)
		}
		r.SA.KEK = g.sak(now, g.sig)
		r.KD.Packets = append(r.KD.Packets, g.kekPacket(g.sig))
	}
	// New TEKs from the running policy: a committed policy change reaches
	// the GMs with this rekey (SPEC P1).
	old := g.teks
	if err := s.rebuildTEKs(g, now); err != nil {
		return nil, err
	}
	g.policyChanged = false
	g.replaced = replacedTEKs{handedOut: g.replaced.handedOut}
	if replace != isakmp.ModeNow {
		// Handed out with the new ones while the members that get this
		// rekey may still send with them (replaced.go).
		g.replaced.keep(g, old, now)
	}
	for _, n := range g.teks {
		r.SA.TEKs = append(r.SA.TEKs, n.sat(now, g.pseudotime(now)))
		r.KD.Packets = append(r.KD.Packets, n.packet())
	}
	var oldData []byte
	if replace != 0 {
		// Members without policy replace get the new SAs alone: no
		// instruction, so their old SAs live out their lifetime (SPEC
		// P6), and, after a replace, the activation delay, so they send
		// with the new SAs when the other members do (oldGAP).
		gap := r.SA.GAP
		r.SA.GAP = oldGAP(replace)
		var err error
		if oldData, err = gdoi.SealPush(r, cur, signer.signer, signer.alg, s.rand); err != nil {
			return nil, fmt.Errorf("ks: group %s: %w", name, err)
		}
		r.SA.GAP = gap
		r.Notifies = []*isakmp.Notify{gdoi.PolicyReplace(cur.SPI, replace)}
	}
	data, err := gdoi.SealPush(r, cur, signer.signer, signer.alg, s.rand)
	if err != nil {
		return nil, fmt.Errorf("ks: group %s: %w", name, err)
	}
	// The sequence number is one counter per group that never goes back,
	// across KEKs and restarts (SPEC T1); a GM starts each new KEK at 0
	// and accepts anything above it (RFC 6407 §4.4). docs/wire.md.
	g.seq, g.sentSeq = r.Seq, r.Seq
	g.synced = now
	p := &Push{Group: name, Seq: r.Seq, Data: data, KEK: cur, Policy: g.cfg.Rekey.withDefaults(), NewKEK: newKEK, Replace: replace, OldData: oldData}
	if !p.Policy.Multicast.IsValid() {
		for _, m := range g.rekeyList() {
			to := netip.AddrPortFrom(m.addr, m.port)
			if replace != 0 && (m.version.IsZero() || m.version.Less(FeatureVersion)) {
				p.OldMembers = append(p.OldMembers, to)
				continue
			}
			p.Members = append(p.Members, to)
		}
	}
	g.rekeys++
	g.dropStale()
	return p, nil
}

// kekPacket is the current KEK's key packet with sig's public key.
func (g *group) kekPacket(sig sigKey) *isakmp.KeyPacket {
	return gdoi.KEKKeyPacket(g.kekSPI, g.kekKey, sig.pub)
}

func (t *tek) packet() *isakmp.KeyPacket { return gdoi.TEKKeyPacket(t.spi, t.encKey, t.authKey) }

// rekeyList is the members that receive unicast rekeys, by address.
func (g *group) rekeyList() []*memberRec {
	var out []*memberRec
	for i := range int32(g.members.len()) {
		if m := g.members.at(i); !m.removed {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr.Less(out[j].addr) })
	return out
}

// LogRekey writes the rekey's log line (SPEC T1 / seed).
func (s *Server) LogRekey(p *Push, from netip.Addr) {
	if p.Removal {
		return // the removal command prints its own line
	}
	with := ""
	if p.Replace != 0 {
		with = " with policy-replace"
	}
	if !p.Policy.Multicast.IsValid() {
		mnemonic.Log(s.log, mnemonic.Notice, "KS_SEND_UNICAST_REKEY", "Sending Unicast Rekey%s for group %s from address %s with seq # %d",
			with, p.Group, from, p.Seq)
		return
	}
	mnemonic.Log(s.log, mnemonic.Notice, "KS_SEND_MCAST_REKEY", "Sending Multicast Rekey%s for group %s from address %s with seq # %d",
		with, p.Group, from, p.Seq)
}

// Acked records a verified acknowledgement of seq from addr.
func (s *Server) Acked(group string, addr netip.Addr, seq uint32) {
	g := s.byName[group]
	if g == nil {
		return
	}
	if m := g.members.get(addr); m != nil {
		s.dirty = true
		if m.missed != 0 {
			g.members.touch(m) // MissedRekeys is stored; the counters are not
		}
		m.acksReceived++
		g.acked++
		m.missed = 0
		m.lastAckSeq = seq
	}
}

// Sent records a unicast rekey datagram sent to addr: its first
// transmission, or a retransmission when retry (show crypto gdoi ks members).
func (s *Server) Sent(group string, addr netip.Addr, retry bool) {
	g := s.byName[group]
	if g == nil {
		return
	}
	m := g.members.get(addr)
	if m == nil {
		return
	}
	if retry {
		m.rekeyRetries++
	} else {
		m.rekeysSent++
	}
}

// Missed records that addr never acknowledged a rekey; after MaxMissed in
// a row it leaves the rekey list (it will re-register).
func (s *Server) Missed(group string, addr netip.Addr) {
	g := s.byName[group]
	if g == nil {
		return
	}
	m := g.members.get(addr)
	if m == nil || m.removed {
		return
	}
	s.dirty = true
	g.members.touch(m)
	m.missed++
	m.acksMissed++
	g.missed++
	if int(m.missed) >= g.cfg.Rekey.withDefaults().MaxMissed {
		m.removed = true
		g.membersGen++
		mnemonic.Log(s.log, mnemonic.Warning, "KS_GM_REMOVED_FROM_REKEY_LIST", "GM %s removed from the rekey list of group %s after %d unacknowledged rekeys",
			addr, group, m.missed)
	}
}

// KEKFor returns the group whose current KEK, or the KEK of an
// in-flight push, has spi; the node checks ACKs with it.
func (s *Server) GroupOfKEK(spi [isakmp.KEKSPILen]byte) string {
	for n, g := range s.byName {
		if g.kekSPI == spi {
			return n
		}
	}
	return ""
}
