package node

import (
	"fmt"
	"net/netip"
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
	next          time.Time      // when advance must act
	sa            *ike.SA
	sock          *sock
	pull          *gdoi.Pull
	pullTries     int
	installed     *gm.Installed
	registeredAt  time.Time
	lastErr       string
	registrations int

	lastSeq         map[[isakmp.KEKSPILen]byte]uint32 // per KEK SPI (RFC 6407 §7.3.4)
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
// phase-1 SA to it when there is one.
func (n *Node) attempt(r *registration, now time.Time) {
	r.ks = r.cfg.Servers[r.idx%len(r.cfg.Servers)]
	r.sock = n.sockFor(r.ks)
	for _, sa := range r.sock.ep.SAs() {
		if sa.Peer() == r.ks && sa.Info().Initiator {
			n.startPull(r, r.sock, sa, now)
			return
		}
	}
	_, out, err := r.sock.ep.Initiate(r.ks, now)
	if err != nil {
		n.failover(r, err, now)
		return
	}
	r.state, r.next = regPhase1, now.Add(2*time.Minute)
	n.process(r.sock, out)
}

func (n *Node) startPull(r *registration, s *sock, sa *ike.SA, now time.Time) {
	pull, msg, err := gdoi.NewPull(sa, isakmp.GroupID(r.cfg.ID), r.cfg.SIDs, n.o.Rand)
	if err != nil {
		n.failover(r, err, now)
		return
	}
	r.state, r.sa, r.sock, r.pull, r.pullTries = regPull, sa, s, pull, 1
	r.next = now.Add(n.o.PullTimeout)
	n.send(s, r.ks, msg)
}

func (n *Node) onPull(r *registration, s *sock, m *isakmp.Message, now time.Time) {
	reply, res, err := r.pull.Handle(m)
	if err != nil {
		n.failover(r, fmt.Errorf("GROUPKEY-PULL with %s: %w", r.ks.Addr(), err), now)
		return
	}
	if reply != nil {
		r.pullTries = 1
		r.next = now.Add(n.o.PullTimeout)
		n.send(s, r.ks, reply)
		return
	}
	r.sa.ForgetMessageID(r.pull.MessageID())
	inst, err := gm.Install(n.dp, r.cfg.Name, r.cfg.ID, res, now)
	if err != nil {
		syslog.Log(n.log, syslog.Err, "GM_INSTALL_POLICIES_FAILED", "FAILED: Installation of Reg policies from KS %s for group %s: %v",
			r.ks.Addr(), r.cfg.Name, err)
		n.failover(r, err, now)
		return
	}
	r.state, r.installed, r.registeredAt, r.failures, r.lastErr = regRegistered, inst, now, 0, ""
	if inst.KEK != nil {
		if r.lastSeq == nil {
			r.lastSeq = map[[isakmp.KEKSPILen]byte]uint32{}
		}
		// §3.3: the pull's SEQ is stale if a push under this KEK was
		// already accepted.
		r.lastSeq[inst.KEK.SPI] = max(r.lastSeq[inst.KEK.SPI], res.Seq)
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
	r.lastErr = err.Error()
	prev := r.ks
	r.idx = (r.idx + 1) % len(r.cfg.Servers)
	backoff := n.o.BackoffMin << min(r.failures-1, 10)
	backoff = min(backoff, n.o.BackoffMax)
	backoff = backoff/2 + time.Duration(n.uniform()*float64(backoff/2))
	keep := r.installed != nil && now.Before(r.installed.Earliest)
	r.state, r.pull, r.sa = regIdle, nil, nil
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
}

// Members lists the GM registrations; use inside Do.
func (n *Node) Members() []MemberState {
	var out []MemberState
	for _, r := range n.regs {
		m := MemberState{Group: r.cfg.Name, ID: r.cfg.ID, State: r.state.String(), KS: r.ks, Servers: r.cfg.Servers,
			RegisteredAt: r.registeredAt, Registrations: r.registrations, Failures: r.failures, LastError: r.lastErr}
		if r.state == regRegistered {
			m.Reregister = r.next
		}
		if r.installed != nil {
			m.Seq = r.installed.Seq
		}
		for _, v := range r.lastSeq {
			m.Seq = max(m.Seq, v)
		}
		m.Rekeys = RekeyStats{Received: r.rekeysReceived, Duplicate: r.rekeysDuplicate, Replayed: r.rekeysReplayed,
			Rejected: r.rekeysRejected, AcksSent: r.acksSent, LastRekey: r.lastRekey}
		out = append(out, m)
	}
	return out
}
