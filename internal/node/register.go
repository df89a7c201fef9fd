package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/isakmp"
)

// registration is one GM group: the sans-IO member role (gm.Member: state,
// KS list, backoff, rekey acceptance) and the I/O it is given here: the
// socket its phase 1 and pulls run on (SPEC T4).
type registration struct {
	cfg  GMGroup
	m    *gm.Member
	sock *sock // the socket of the KS being tried (withSource), nil before the first attempt
	// lookups counts the source lookups asked for (withSource): only the
	// answer to the latest is used.
	lookups  uint64
	awaiting bool // a connect waits for its source lookup: the member's timer waits too
}

// A phase-1 SA of the IKEv1 endpoint is what a member registers over.
var _ gm.Phase1 = (*ike.SA)(nil)

// newRegistration builds the member role of g.
func (n *Node) newRegistration(g GMGroup) *registration {
	m := gm.NewMember(gm.Config{Name: g.Name, ID: g.ID, Servers: g.Servers, SIDs: g.SIDs, FailClose: g.FailClose, FailCloseBypass: g.FailCloseBypass},
		gm.Options{Dataplane: n.o.Dataplane, KEKs: n.o.KEKs, Rand: n.o.Rand, PullTimeout: n.o.PullTimeout, BackoffMin: n.o.BackoffMin, BackoffMax: n.o.BackoffMax,
			Legacy: n.behavesOld(), Version: n.version().String()})
	return &registration{cfg: g, m: m}
}

// saOf is the IKEv1 SA behind a member's phase 1 (nil: none).
func saOf(p gm.Phase1) *ike.SA {
	sa, _ := p.(*ike.SA)
	return sa
}

// execute carries out what a member asked for (gm.Result), in its order.
func (n *Node) execute(r *registration, res gm.Result, now time.Time) {
	if sa := saOf(res.Suspect); sa != nil {
		n.suspect(sa)
	}
	for _, s := range res.Send {
		if r.sock != nil {
			n.send(r.sock, s.To, s.Data)
		}
	}
	if res.Join != nil {
		n.joinRekeyGroup(r, res.Join)
	}
	for _, e := range res.Events {
		n.logEvent(e)
	}
	if res.Connect.IsValid() {
		n.connect(r, res.Connect, now)
	}
}

// logEvent writes a member's event: %GDOI lines through syslog, plain
// records as they are; what unauthenticated input caused goes through the
// rate-limited logger (SPEC S6).
func (n *Node) logEvent(e gm.Event) {
	l := n.log
	if e.Unauth {
		l = n.unauth
	}
	if e.Mnemonic != "" {
		syslog.Log(l, syslog.Severity(e.Severity), e.Mnemonic, "%s", e.Msg)
		return
	}
	level := slog.LevelInfo
	switch {
	case e.Severity >= gm.SevDebug:
		level = slog.LevelDebug
	case e.Severity <= gm.SevErr:
		level = slog.LevelError
	case e.Severity == gm.SevWarning:
		level = slog.LevelWarn
	}
	l.Log(context.Background(), level, e.Msg, e.Attrs...)
}

// connect gives a member a phase-1 SA to ks: an established one we
// initiated that is not suspect, else the main mode another group's member
// started to ks from the same socket less than gm.JoinWithin ago (one
// phase-1 SA for a GM's groups whose attempts begin together, as at
// start: its Established moves them all on, its failure fails them all;
// a COOP peer's main mode is not joined), else a new main mode from the socket the routing picks (looked up
// off the loop: withSource; the member waits).
func (n *Node) connect(r *registration, ks netip.AddrPort, _ time.Time) {
	n.withSource(r, ks, func(s *sock) {
		if r.m.KS() != ks {
			return // the member moved on meanwhile
		}
		now := n.o.Now()
		r.sock = s
		for _, sa := range r.sock.ep.SAs() {
			if sa.Peer() == ks && sa.Info().Initiator && !n.suspects[sa] {
				n.execute(r, r.m.Phase1Up(sa, true, now), now)
				return
			}
		}
		for _, o := range n.regs {
			if o == r || o.sock != s {
				continue
			}
			if p1, began := o.m.Phase1InFlight(ks, now); p1 != nil {
				r.m.Phase1Joined(p1, began, now)
				return
			}
		}
		sa, out, err := r.sock.ep.Initiate(ks, now)
		if err != nil {
			n.execute(r, r.m.ConnectFailed(err, now), now)
			return
		}
		r.m.Phase1Started(sa, now)
		n.process(r.sock, out, now)
	})
}

// suspect marks one of our phase-1 SAs to a KS as unusable for new pulls:
// the KS did not answer over it, or told us (unauthenticated) that it does
// not know it. It is deleted once a new SA to the same KS is established.
func (n *Node) suspect(sa *ike.SA) {
	if sa == nil || !sa.Info().Initiator || sa.State() != ike.StateEstablished {
		return
	}
	if n.suspects == nil {
		n.suspects = map[*ike.SA]bool{}
	}
	n.suspects[sa] = true
}

// dropSuspects deletes (with a Delete) the suspect SAs to peer held by s,
// now that an authenticated SA to it is established.
func (n *Node) dropSuspects(s *sock, peer netip.AddrPort, now time.Time) {
	for sa := range n.suspects {
		if sa.Peer() != peer {
			continue
		}
		delete(n.suspects, sa)
		for _, r := range n.regs {
			r.m.DropSA(sa)
		}
		out, err := s.ep.Delete(sa, now)
		if err != nil {
			continue // held by another socket's endpoint, or gone
		}
		n.serves.dropSA(sa) // its served exchanges with it, not serveLinger later
		n.process(s, out, now)
	}
}

// onPeerLost acts on the hint that the KS lost an SA's state (an
// unprotected INVALID-COOKIE for its cookies): no new pull uses the SA,
// and a registration whose pull runs over it starts a new phase 1 at once
// (gm.Member.PeerLost bounds how often).
func (n *Node) onPeerLost(sa *ike.SA, now time.Time) {
	if !sa.Info().Initiator {
		return
	}
	n.stats.lostHints++
	n.suspect(sa)
	for _, r := range n.regs {
		n.execute(r, r.m.PeerLost(sa, now), now)
	}
}

// MemberState is one GM group's registration, for show commands.
type MemberState struct {
	Group         string
	ID            uint32
	State         string
	KS            netip.AddrPort
	Servers       []netip.AddrPort
	RegisteredAt  time.Time
	Reregister    time.Time
	Registrations int
	Failures      int
	LastError     string
	Seq           uint32
	Rekeys        RekeyStats
	// ACL is the policy downloaded from the KS at ACLFrom, in ACL order
	// (permit: encrypted, deny: in the clear; SPEC E3).
	ACL     []sadb.PolicyEntry `json:",omitempty"`
	ACLFrom netip.Addr         `json:",omitzero"`
	// FailCloseBootstrap: the group is fail-close and has no key server
	// policy yet; the bootstrap policy is in force (everything dropped but
	// the fail-close ACL's deny entries and GDOI to the key servers).
	FailCloseBootstrap bool `json:",omitempty"`
}

// RekeyStats is a GM group's rekey counters.
type RekeyStats = gm.RekeyStats

// Members lists the GM registrations; use inside Do.
func (n *Node) Members() []MemberState {
	var out []MemberState
	for _, r := range n.regs {
		st := r.m.Status()
		if r.awaiting {
			st.State = "phase 1" // its connect waits for the source lookup (withSource)
		}
		out = append(out, MemberState{Group: r.cfg.Name, ID: r.cfg.ID, State: st.State, KS: st.KS, Servers: r.cfg.Servers,
			RegisteredAt: st.RegisteredAt, Reregister: st.Reregister, Registrations: st.Registrations, Failures: st.Failures,
			LastError: st.LastError, Seq: st.Seq, Rekeys: st.Rekeys, ACL: st.ACL, ACLFrom: st.ACLFrom,
			FailCloseBootstrap: st.FailCloseBootstrap})
	}
	return out
}

// Reregister is `clear crypto gdoi [group NAME]` on a GM: the groups named
// (every group for "") register again at once, with the first key server
// of their list and over a new phase-1 SA (the SA in use is deleted once
// the new one is established). Unlike IOS, which deletes the downloaded
// policy first, the TEKs and KEK installed stay until the new registration
// replaces them or they expire, so traffic keeps flowing meanwhile. Use
// inside Do; it reports the groups acted on.
func (n *Node) Reregister(group string, now time.Time) ([]string, error) {
	var done []string
	for _, r := range n.regs {
		if group != "" && !strings.EqualFold(group, r.cfg.Name) {
			continue
		}
		n.suspect(saOf(r.m.SA()))
		for _, s := range n.socks {
			for _, sa := range s.ep.SAs() {
				for _, ks := range r.cfg.Servers {
					if sa.Peer() == ks {
						n.suspect(sa)
					}
				}
			}
		}
		r.m.Reregister(now)
		done = append(done, r.cfg.Name)
	}
	if len(done) == 0 {
		if len(n.regs) == 0 {
			return nil, errors.New("this node is not a group member")
		}
		return nil, fmt.Errorf("this node is not a member of group %s", group)
	}
	return done, nil
}

// ClearPhase1 is `clear crypto isakmp`: every established phase-1 SA is
// deleted, with a Delete notification to its peer. Registrations whose
// pull ran over one start again at once; registered ones keep their keys
// and use a new phase 1 next time. Use inside Do; it reports how many SAs
// were deleted.
func (n *Node) ClearPhase1(now time.Time) int {
	deleted := 0
	for _, s := range n.socks {
		for _, sa := range s.ep.SAs() {
			out, err := s.ep.Delete(sa, now)
			if err != nil {
				continue
			}
			deleted++
			delete(n.suspects, sa)
			n.serves.dropSA(sa)
			for _, r := range n.regs {
				r.m.Cleared(sa, now)
			}
			n.process(s, out, now)
		}
	}
	return deleted
}

// onPull hands the KS's GROUPKEY-PULL message to the member whose
// exchange it is (phase2 routes it); it arrived on s.
func (n *Node) onPull(r *registration, s *sock, m *isakmp.Message, now time.Time) {
	n.execute(r, r.m.PullMessage(m, s.local.Addr(), now), now)
}
