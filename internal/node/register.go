package node

import (
	"errors"
	"fmt"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"net/netip"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/isakmp"
)

type regState int

const (
	regIdle       regState = iota // waiting for next to (re)register
	regPhase1                     // phase 1 with ks in progress
	regPull                       // GROUPKEY-PULL in progress
	regRegistered                 // keys installed; next is the re-registration time
)

func (s regState) String() string {
	return [...]string{"idle", "phase 1", "registering", "registered"}[s]
}

// registration is one GM group's registration state (SPEC T4).
type registration struct {
	cfg           GMGroup
	state         regState
	idx           int            // index of the KS being tried
	ks            netip.AddrPort // the KS being tried or registered with
	failures      int            // consecutive failures
	failuresTotal int
	next          time.Time // when advance must act
	// temporary is when the temporary SAs of a GM removal expire (zero:
	// none): the registration it causes holds sending with the new TEKs
	// (gm.HoldSending).
	temporary time.Time
	sa        *ike.SA
	p1        *ike.SA // the phase 1 this registration started (regPhase1)
	sock      *sock
	pull      *gdoi.Pull
	pullTries int
	// reused: the pull runs over a phase-1 SA established before this
	// attempt, which the KS may have lost (a restart).
	reused    bool
	freshAt   time.Time // when the last fresh phase 1 was started for a suspect SA
	installed *gm.Installed
	// bootstrap: the group's policy in the data plane is the fail-close
	// bootstrap (failclose.go), not a key server's.
	bootstrap     bool
	registeredAt  time.Time
	lastErr       string
	registrations int

	seq             gm.SeqFilter   // per KEK SPI (RFC 6407 §7.3.4)
	regKS           netip.AddrPort // the KS of the last registration: ACKs go there
	lastRekey       time.Time
	rekeysReceived  int
	rekeysDuplicate int
	rekeysReplayed  int
	rekeysRejected  int
	acksSent        int
	dropAcks        bool // tests: behave as a GM whose ACKs never arrive
}

// advance acts on a registration whose timer fired.
func (n *Node) advance(r *registration, now time.Time) {
	switch r.state {
	case regIdle, regRegistered:
		n.attempt(r, now)
	case regPhase1:
		// The endpoint's retransmissions report failure; this is a
		// safety net for a phase 1 that never started.
		n.failover(r, fmt.Errorf("phase 1 with %s did not complete", r.ks.Addr()), now)
	case regPull:
		if r.reused {
			// One unanswered transmission over an SA that predates this
			// attempt: the KS may have lost its phase-1 state (a restart),
			// and retransmitting over the same SA cannot help. A fresh main
			// mode at once, with the same KS; a pull over the fresh SA
			// that goes unanswered fails over as below.
			n.stats.pullGiveUps++
			n.suspect(r.sa)
			n.fresh(r, now)
			return
		}
		if r.pullTries >= 3 {
			n.failover(r, fmt.Errorf("KS %s did not answer GROUPKEY-PULL", r.ks.Addr()), now)
			return
		}
		r.pullTries++
		n.send(r.sock, r.ks, r.pull.Last())
		r.next = now.Add(n.o.PullTimeout)
	}
}

// attempt (re)registers with the current KS, reusing an established
// phase-1 SA to it when there is one that is not suspect.
func (n *Node) attempt(r *registration, now time.Time) {
	r.ks = r.cfg.Servers[r.idx%len(r.cfg.Servers)]
	r.sock = n.sockFor(r.ks)
	for _, sa := range r.sock.ep.SAs() {
		if sa.Peer() == r.ks && sa.Info().Initiator && !n.suspects[sa] {
			n.startPull(r, r.sock, sa, true, now)
			return
		}
	}
	sa, out, err := r.sock.ep.Initiate(r.ks, now)
	if err != nil {
		n.failover(r, err, now)
		return
	}
	r.state, r.p1, r.pull, r.next = regPhase1, sa, nil, now.Add(2*time.Minute)
	n.process(r.sock, out)
}

// freshInterval bounds the fresh phase 1s started for one registration
// because its SA became suspect (a hint from the network, which anyone on
// the path can forge, must not make the GM run main mode in a loop).
const freshInterval = 5 * time.Second

// fresh abandons r's pull and registers again with the same KS at once
// over a new phase-1 SA. The suspect SA stays until the new one is
// established (process deletes it then): nothing unauthenticated removes
// an SA.
func (n *Node) fresh(r *registration, now time.Time) {
	r.freshAt = now
	r.pull, r.sa, r.reused = nil, nil, false
	syslog.Log(n.log, syslog.Notice, "GM_REREGISTER", "KS %s seems to have lost the phase-1 SA of group %s (no answer, or INVALID-COOKIE): starting a new phase 1",
		r.ks.Addr(), r.cfg.Name)
	n.attempt(r, now)
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
			if r.sa == sa {
				r.sa = nil
			}
		}
		out, err := s.ep.Delete(sa, now)
		if err != nil {
			continue // held by another socket's endpoint, or gone
		}
		n.process(s, out)
	}
}

// onPeerLost acts on the hint that the KS lost an SA's state (an
// unprotected INVALID-COOKIE for its cookies): no new pull uses the SA,
// and a registration whose pull runs over it starts a new phase 1 at once,
// at most once per freshInterval.
func (n *Node) onPeerLost(sa *ike.SA, now time.Time) {
	if !sa.Info().Initiator {
		return
	}
	n.stats.lostHints++
	n.suspect(sa)
	for _, r := range n.regs {
		if r.sa == sa && r.state == regPull && (r.freshAt.IsZero() || now.Sub(r.freshAt) >= freshInterval) {
			n.fresh(r, now)
		}
	}
}

// onDeadKS acts on dead peer detection (crypto isakmp keepalive): the key
// server r is registered with did not answer R-U-THERE, and its SA is
// gone. r registers again at once with the next key server of its list
// (the same one if it is the only one); the keys installed stay until the
// new registration replaces them or they expire.
func (n *Node) onDeadKS(r *registration, now time.Time) {
	if r.state != regRegistered && r.state != regIdle {
		return
	}
	prev := r.ks
	r.idx = (r.idx + 1) % len(r.cfg.Servers)
	r.failuresTotal++
	r.lastErr = fmt.Sprintf("KS %s is dead (no answer to dead peer detection)", prev.Addr())
	r.next = now
	syslog.Log(n.log, syslog.Notice, "GM_REREGISTER", "KS %s of group %s did not answer dead peer detection (crypto isakmp keepalive): registering with KS %s",
		prev.Addr(), r.cfg.Name, r.cfg.Servers[r.idx].Addr())
}

func (n *Node) startPull(r *registration, s *sock, sa *ike.SA, reused bool, now time.Time) {
	pull, msg, err := gdoi.NewPull(sa, isakmp.GroupID(r.cfg.ID), r.cfg.SIDs, n.o.Rand)
	if err != nil {
		n.failover(r, err, now)
		return
	}
	r.state, r.sa, r.sock, r.pull, r.pullTries, r.reused, r.p1 = regPull, sa, s, pull, 1, reused, nil
	r.next = now.Add(n.o.PullTimeout)
	n.send(s, r.ks, msg)
}

func (n *Node) onPull(r *registration, s *sock, m *isakmp.Message, now time.Time) {
	reply, res, err := r.pull.Handle(m)
	if errors.Is(err, gdoi.ErrUnauthenticated) {
		// Not the KS's, as far as anyone can tell: the pull goes on.
		n.stats.pullForgedGM++
		n.unauth.Debug("dropped unauthenticated GROUPKEY-PULL message", "peer", r.ks.String(), "err", err)
		return
	}
	if err != nil {
		n.failover(r, fmt.Errorf("GROUPKEY-PULL with %s: %w", r.ks.Addr(), err), now)
		return
	}
	if reply != nil {
		r.reused = false // the KS answered over the SA: it holds it
		r.pullTries = 1
		r.next = now.Add(n.o.PullTimeout)
		n.send(s, r.ks, reply)
		return
	}
	r.sa.ForgetMessageID(r.pull.MessageID())
	held := map[uint32]bool{} // the group's TEKs before this registration
	for _, t := range n.dp.TEKs() {
		if t.Group == r.cfg.Name {
			held[t.SPI] = true
		}
	}
	inst, err := gm.Install(n.dp, r.cfg.Name, r.cfg.ID, res, now)
	if err != nil {
		syslog.Log(n.log, syslog.Err, "GM_INSTALL_POLICIES_FAILED", "FAILED: Installation of Reg policies from KS %s for group %s: %v",
			r.ks.Addr(), r.cfg.Name, err)
		n.failover(r, err, now)
		return
	}
	r.state, r.installed, r.registeredAt, r.failures, r.lastErr, r.regKS = regRegistered, inst, now, 0, "", r.ks
	if !r.temporary.IsZero() {
		// Re-registered after a GM removal: the other members send and
		// receive with the temporary SAs until they re-register too.
		gm.HoldSending(n.dp, r.cfg.Name, held, r.temporary, now)
		r.temporary = time.Time{}
	}
	r.bootstrap = false     // the key server's policy replaced it (gm.Install)
	r.freshAt = time.Time{} // the bound on fresh phase 1s is per registration attempt
	if inst.KEK != nil {
		// §3.3: the pull's SEQ is stale if a push under this KEK was
		// already accepted.
		r.seq.Advance(inst.KEK.SPI, res.Seq)
		n.joinRekeyGroup(r, inst.KEK)
	}
	r.registrations++
	lifetime := inst.TEKs[0].Lifetime
	r.next = gm.ReregisterAt(inst.Earliest, lifetime, n.uniform())
	syslog.Log(n.log, syslog.Notice, "GM_REGS_COMPL", "Registration to KS %s complete for group %s using address %s",
		r.ks.Addr(), r.cfg.Name, s.local.Addr())
	syslog.Log(n.log, syslog.Notice, "GM_INSTALL_POLICIES_SUCCESS", "SUCCESS: Installation of Reg/Rekey policies from KS %s for group %s & gm identity %s",
		r.ks.Addr(), r.cfg.Name, s.local.Addr())
}

// failover gives up on the current KS and schedules the next one in the
// list after an exponential backoff with jitter.
func (n *Node) failover(r *registration, err error, now time.Time) {
	r.failures++
	r.failuresTotal++
	r.lastErr = err.Error()
	prev := r.ks
	r.idx = (r.idx + 1) % len(r.cfg.Servers)
	backoff := n.o.BackoffMin << min(r.failures-1, 10)
	backoff = min(backoff, n.o.BackoffMax)
	backoff = backoff/2 + time.Duration(n.uniform()*float64(backoff/2))
	keep := r.installed != nil && now.Before(r.installed.Earliest)
	r.state, r.pull, r.sa, r.p1, r.reused = regIdle, nil, nil, nil, false
	if keep {
		r.state = regRegistered // old keys stay valid while we retry
	}
	r.next = now.Add(backoff)
	syslog.Log(n.log, syslog.Warning, "GM_REGS_FAILED", "Registration to KS %s for group %s failed: %v; trying KS %s in %s",
		prev.Addr(), r.cfg.Name, err, r.cfg.Servers[r.idx].Addr(), backoff.Round(time.Millisecond))
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

// Members lists the GM registrations; use inside Do.
func (n *Node) Members() []MemberState {
	var out []MemberState
	for _, r := range n.regs {
		m := MemberState{Group: r.cfg.Name, ID: r.cfg.ID, State: r.state.String(), KS: r.ks, Servers: r.cfg.Servers,
			RegisteredAt: r.registeredAt, Registrations: r.registrations, Failures: r.failures, LastError: r.lastErr,
			FailCloseBootstrap: r.bootstrap}
		if r.state == regRegistered {
			m.Reregister = r.next
		}
		if r.installed != nil {
			m.Seq = r.installed.Seq
			m.ACL, m.ACLFrom = r.installed.Policy, r.regKS.Addr()
		}
		m.Seq = max(m.Seq, r.seq.Max())
		m.Rekeys = RekeyStats{Received: r.rekeysReceived, Duplicate: r.rekeysDuplicate, Replayed: r.rekeysReplayed,
			Rejected: r.rekeysRejected, AcksSent: r.acksSent, LastRekey: r.lastRekey}
		out = append(out, m)
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
		n.suspect(r.sa)
		for _, s := range n.socks {
			for _, sa := range s.ep.SAs() {
				for _, ks := range r.cfg.Servers {
					if sa.Peer() == ks {
						n.suspect(sa)
					}
				}
			}
		}
		r.pull, r.sa, r.p1, r.reused, r.failures, r.idx = nil, nil, nil, false, 0, 0
		r.state = regIdle
		if r.installed != nil && now.Before(r.installed.Earliest) {
			r.state = regRegistered
		}
		r.next = now
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
			for k := range n.serves {
				if k.sa == sa {
					delete(n.serves, k)
				}
			}
			for _, r := range n.regs {
				if r.sa != sa {
					continue
				}
				r.sa = nil
				if r.state == regPull {
					r.pull, r.reused = nil, false
					r.state, r.next = regIdle, now
					if r.installed != nil && now.Before(r.installed.Earliest) {
						r.state = regRegistered
					}
				}
			}
			n.process(s, out)
		}
	}
	return deleted
}

// A phase-1 SA of the IKEv1 endpoint is what a member registers over.
var _ gm.Phase1 = (*ike.SA)(nil)
