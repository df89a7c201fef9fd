package ks

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/version"
)

// FeatureVersion is the first version with GM removal and policy replace
// (SPEC V1).
var FeatureVersion = version.Removal

// Errors a secondary KS answers with (SPEC R6, P5); the texts are
// interface.
func errNotPrimaryRemoval(group string) error {
	return fmt.Errorf("ERROR for group %s: can only execute this command on Primary KS", group)
}

func errNotPrimaryRekey(group string) error {
	return fmt.Errorf("ERROR for group %s: This command must be executed on Pri-KS", group)
}

// Primary reports whether this KS is the group's primary: always for a
// lone KS, as the COOP election last said (TakeOver, StepDown) for one
// configured with `redundancy` (SPEC C1).
func (s *Server) Primary(name string) bool {
	g := s.byName[name]
	return g != nil && g.isPrimary()
}

func (g *group) isPrimary() bool { return g.cfg.Redundancy == nil || g.primary }

// FeatureRow is one line of `show crypto gdoi feature ...`.
type FeatureRow struct {
	ID        netip.Addr
	Version   version.Version
	Supported bool
}

// Features lists the KS and the GMs of a group with their versions and
// whether they support GM removal and policy replace (SPEC V4). Both
// features arrived with 1.0.2, so one list serves both tables.
func (s *Server) Features(name string, own version.Version) (ks, gms []FeatureRow) {
	g := s.byName[name]
	if g == nil {
		return nil, nil
	}
	ks = append(ks, FeatureRow{ID: g.cfg.Address, Version: own, Supported: !own.Less(FeatureVersion)})
	// The peer KSs as they announced themselves (COOP, SPEC V3): one
	// never heard has no version and counts as not supporting.
	for _, p := range g.peerKS {
		ks = append(ks, FeatureRow{ID: p.Addr, Version: p.Version, Supported: !p.Version.IsZero() && !p.Version.Less(FeatureVersion)})
	}
	seen := map[netip.Addr]bool{}
	for i := range int32(g.members.len()) {
		m := g.members.at(i)
		seen[m.addr] = true
		gms = append(gms, FeatureRow{ID: m.addr, Version: m.version, Supported: !m.version.IsZero() && !m.version.Less(FeatureVersion)})
	}
	// The GMs registered with the peer KSs (their announced member
	// lists, SPEC R5): each GM once.
	for _, list := range g.remote {
		for _, m := range list {
			if !seen[m.Addr] {
				seen[m.Addr] = true
				gms = append(gms, FeatureRow{ID: m.Addr, Version: m.Version, Supported: !m.Version.IsZero() && !m.Version.Less(FeatureVersion)})
			}
		}
	}
	sort.Slice(gms, func(i, j int) bool { return gms[i].ID.Less(gms[j].ID) })
	return ks, gms
}

// AllSupport reports whether every device of the group supports the
// features.
func (s *Server) AllSupport(name string, own version.Version) bool {
	ks, gms := s.Features(name, own)
	for _, r := range append(ks, gms...) {
		if !r.Supported {
			return false
		}
	}
	return true
}

// CheckPrimaryRemoval and CheckPrimaryRekey refuse on a secondary KS.
func (s *Server) CheckPrimaryRemoval(name string) error {
	if s.byName[name] == nil {
		return fmt.Errorf("%% group %s is not served by this key server", name)
	}
	if !s.Primary(name) {
		return errNotPrimaryRemoval(name)
	}
	return nil
}

func (s *Server) CheckPrimaryRekey(name string) error {
	if s.byName[name] == nil {
		return fmt.Errorf("%% group %s is not served by this key server", name)
	}
	if !s.Primary(name) {
		return errNotPrimaryRekey(name)
	}
	return nil
}

// Remove builds the GM-removal message (SPEC R1, R2, R4): a GROUPKEY-PUSH
// under the current KEK carrying the groupvpn GM-REMOVAL notification and
// the KEK's Delete (now mode: every TEK's too). The group gets a new KEK
// and new TEKs that only a new registration hands out, so a GM whose
// credentials no longer pass is out of the group (R3). Every member leaves
// the rekey list until it registers again.
func (s *Server) Remove(name string, now bool, at time.Time) (*Push, error) {
	if err := s.CheckPrimaryRemoval(name); err != nil {
		return nil, err
	}
	g := s.byName[name]
	if g.sig.alg == 0 {
		return nil, fmt.Errorf("%% group %s has no rekey authentication key: GM removal needs rekeys", name)
	}
	cur := gdoi.KEK{SPI: g.kekSPI, Key: g.kekKey}
	r := gdoi.Removal(g.seq+1, g.kekSPI, now)
	// Signed with the key the members hold; a key not announced yet is
	// used from now on, as every member registers again to get the new
	// keys (and with them the new key's public half).
	data, err := gdoi.SealPush(r, cur, g.sig.signer, g.sig.alg, s.rand)
	if err != nil {
		return nil, err
	}
	if g.announce != nil {
		g.sig, g.announce = *g.announce, nil
	}
	p := &Push{Group: name, Seq: r.Seq, Data: data, KEK: cur, Policy: g.cfg.Rekey.withDefaults(), Removal: true}
	if !p.Policy.Multicast.IsValid() {
		for _, m := range g.rekeyList() {
			p.Members = append(p.Members, netip.AddrPortFrom(m.addr, m.port))
		}
	}
	// New keys for whoever registers next.
	g.seq, g.sentSeq = r.Seq, r.Seq
	if err := s.newKEK(g, at); err != nil {
		return nil, err
	}
	// Only a registration hands the new keys out, with new sender IDs
	// under them: no member carries an ID into them by a rekey (the new
	// KEK is the registration's), not even one the store lost at a
	// restart (sidGhost) or an ID from below the old keys' marks (their
	// floor).
	g.sidGhost = nil
	// Nor the IDs members held: one that registers again after this gives
	// up what it had (Keys: removals). A failed removal's rollback
	// restores the group, this count with it.
	g.removals++
	if err := s.rebuildTEKs(g, at); err != nil {
		return nil, err
	}
	for _, t := range g.teks {
		t.sidFloor = 0
	}
	for i := range int32(g.members.len()) {
		g.members.at(i).removed = true
	}
	g.members.changedAll()
	g.membersGen++
	s.dirty = true
	g.rekeys++
	g.dropStale()
	return p, nil
}

// freshTEKs makes new TEKs from the group's configured policy, in its
// order, without making them the group's.
func (s *Server) freshTEKs(g *group, now time.Time) ([]*tek, error) {
	var teks []*tek
	for _, p := range g.cfg.TEKs {
		if p.Lifetime == 0 {
			p.Lifetime = 3600 * time.Second
		}
		p.receiveOnly = g.cfg.ReceiveOnly
		ts, err := s.policyTEKs(p, now)
		if err != nil {
			return nil, err
		}
		teks = append(teks, ts...)
	}
	return teks, nil
}

// rebuildTEKs makes fresh TEKs from the group's configured policy.
func (s *Server) rebuildTEKs(g *group, now time.Time) error {
	teks, err := s.freshTEKs(g, now)
	if err != nil {
		return err
	}
	g.newGeneration(teks)
	g.teks = teks
	return nil
}

// UpdatePolicy replaces a group's configured policy (a committed
// configuration change). Nothing is sent (SPEC P1): the new policy reaches
// the GMs with the next rekey, scheduled or `crypto gdoi ks rekey`.
func (s *Server) UpdatePolicy(cfg GroupConfig) error {
	g := s.byName[cfg.Name]
	if g == nil || g.cfg.ID != cfg.ID {
		return fmt.Errorf("ks: group %s (identity %d) is not served; adding or renumbering groups needs a restart", cfg.Name, cfg.ID)
	}
	if cfg.KEKKeyBits == 0 {
		cfg.KEKKeyBits = 128
	}
	if cfg.KEKLifetime == 0 {
		cfg.KEKLifetime = 86400 * time.Second
	}
	old, oldSig, oldAnnounce := g.cfg, g.sig, g.announce
	g.cfg = cfg
	if err := s.setSigningKey(g); err != nil {
		g.cfg, g.sig, g.announce = old, oldSig, oldAnnounce
		return err
	}
	g.policyChanged = true
	if old.Redundancy == nil && cfg.Redundancy != nil {
		// redundancy added: the keys handed out so far are the group's
		// until an election says who is primary.
		g.primary, g.adopted = false, true
	}
	if old.Redundancy != nil && cfg.Redundancy == nil && !g.primary {
		// redundancy removed from a secondary: it is the group's lone
		// primary now, and its next rekey must be above any the old
		// primary sent (as TakeOver).
		s.takeOver(g)
	}
	if old.KEKKeyBits != cfg.KEKKeyBits {
		g.kekPolicyChanged = true
	}
	return nil
}

// MemberAddrs returns the addresses of the group's members, removed ones
// included (a GM removal keeps them listed until they register again).
func (s *Server) MemberAddrs(name string) []netip.Addr {
	g := s.byName[name]
	if g == nil {
		return nil
	}
	addrs := make([]netip.Addr, 0, g.members.len())
	for i := range int32(g.members.len()) {
		addrs = append(addrs, g.members.at(i).addr)
	}
	return addrs
}
