package gm

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Member is the group-member role for one group, sans-IO (issue 15): its
// registration (state, the key-server list, failover with backoff),
// rekey acceptance (KEK by cookies, the sequence filter, the signature,
// installation), GM removal and policy replace, the ACK decision and the
// fail-close bootstrap. Its methods take an event and the time and return
// a Result: datagrams to send, a phase 1 to provide, an SA to suspect, a
// multicast group to join, lines to log. Its one timer is Next, acted on
// by Timer. It reads no clock, starts no goroutine and touches no socket;
// the TEKs, fail mode and policy go to the sadb.Dataplane it was given and
// the KEK to its KEKStore (an SA database, in memory or another
// process's, usually both), which are the only things it changes outside
// itself.
//
// The owner (internal/node) routes to it: phase-1 events for the SA it
// registers over, GROUPKEY-PULL messages of its exchange (OwnsPull),
// GROUPKEY-PUSH datagrams under its KEK (HoldsKEK).
type Member struct {
	cfg Config
	o   Options

	state     regState
	idx       int            // index of the KS being tried
	ks        netip.AddrPort // the KS being tried or registered with
	failures  int            // consecutive failures
	next      time.Time      // when Timer must act
	temporary time.Time      // when a GM removal's temporary SAs expire (zero: none)
	sa        Phase1         // the SA the pull runs or ran over
	p1        Phase1         // the phase 1 this registration waits for (statePhase1): its own, or another group's joined
	p1At      time.Time      // when p1's main mode began
	pull      *gdoi.Pull
	pullTries int
	// reused: the pull runs over a phase-1 SA established before this
	// attempt, which the KS may have lost (a restart).
	reused  bool
	freshAt time.Time // when the last fresh phase 1 was started for a suspect SA
	// deadline ends the registration attempt in progress (phase 1 and
	// pull, a fresh phase 1 included), attemptFor after it started:
	// attemptWithin.
	deadline   time.Time
	attemptFor time.Duration
	// installed: what the last registration installed, its TEKs and KEK
	// nil once registered (the data plane and the KEK store hold them).
	installed *Installed
	// bootstrap: the group's policy in the data plane is the fail-close
	// bootstrap, not a key server's.
	bootstrap    bool
	registeredAt time.Time
	lastErr      string
	seq          SeqFilter
	regKS        netip.AddrPort // the KS of the last registration: ACKs go there
	lastRekey    time.Time
	c            Counters
}

// Config is a group the member joins.
type Config struct {
	Name    string
	ID      uint32
	Servers []netip.AddrPort // tried in order
	SIDs    uint16           // sender IDs to ask for (counter-mode TEKs)
	// FailClose: covered traffic is dropped while no TEK is held (SPEC
	// T3); FailCloseBypass are the fail-close ACL's deny entries.
	FailClose       bool
	FailCloseBypass []sadb.PolicyEntry
}

// Options are what a member is given by its owner.
type Options struct {
	Dataplane sadb.Dataplane // TEKs, fail mode, policy
	KEKs      KEKStore       // the group's KEK: the rekeys it opens
	Rand      io.Reader      // nonces, message IDs and jitter
	// PullTimeout: the wait for each GROUPKEY-PULL answer (3 tries).
	PullTimeout time.Duration
	// AttemptTimeout bounds one registration attempt, phase 1 and
	// GROUPKEY-PULL together (a fresh phase 1 for a suspect SA
	// included); while the member's keys are still valid, an attempt
	// also ends after a third of what they have left (at least
	// MinAttempt), so that a silent KS leaves time for the next. 0: an
	// initiator's phase-1 give-up and the pull's three tries
	// (DefaultAttemptTimeout with the default PullTimeout).
	AttemptTimeout time.Duration
	// BackoffMin, BackoffMax bound the wait before trying the next key
	// server after a failure (doubling, with jitter).
	BackoffMin, BackoffMax time.Duration
	// Legacy: the node announces a version before GM removal and policy
	// replace, and behaves like one (SPEC V1): removals are ignored,
	// replace instructions not carried out. Version names it in the log.
	Legacy  bool
	Version string
	// Quiet: the owner reads the Events' severities and mnemonics and
	// logs nothing (the load generator: 100,000 members): the lines of a
	// registration and a rekey are not formatted (Msg empty). A node
	// leaves it false.
	Quiet bool
}

// KEKStore keeps the members' KEKs. A KEK is the GM role's: it opens
// rekeys and never a packet, so it is not the data plane's (the
// sadb.Dataplane has SA and policy operations only). sadb.Memory and
// tmd.Client implement both; tmd keeps the KEK so that a restarted
// isakmpd resumes its group without registering again.
type KEKStore interface {
	InstallKEK(sadb.KEK) error // replaces the group's KEK
	DeleteKEK(group string) error
	KEKs() []sadb.KEK // every group's, by group
}

var _ KEKStore = (*sadb.Memory)(nil)

// Counters are a member's totals.
type Counters struct {
	Registrations, FailuresTotal int
	Failures                     FailureReasons // FailuresTotal by reason (dead KS aside)
	Rekeys                       RekeyStats
	PullGiveUps                  uint64 // pulls over a reused SA unanswered: fresh phase 1
	PullsForged                  uint64 // GROUPKEY-PULL messages 2/4 that failed decryption or HASH
}

// FailureReasons counts failed registration attempts by what failed.
type FailureReasons struct {
	Connect        int // the owner could not start a phase 1
	Phase1         int // phase 1 failed, timed out, or its SA went away mid-registration
	PullUnanswered int // the KS did not answer GROUPKEY-PULL
	TimedOut       int // the attempt ran out of its time (AttemptTimeout) first
	Refused        int // the KS refused with a notification
	Pull           int // GROUPKEY-PULL could not start or its reply was invalid
	Install        int // the keys could not be installed
	LocalGone      int // the local address was removed
}

// RekeyStats is a member's rekey counters.
type RekeyStats struct {
	Received, Duplicate, Replayed, Rejected, AcksSent int
	LastRekey                                         time.Time
}

type regState int

const (
	stateIdle       regState = iota // waiting for next to (re)register
	statePhase1                     // phase 1 with ks in progress
	statePull                       // GROUPKEY-PULL in progress
	stateRegistered                 // keys installed; next is the re-registration time
)

func (s regState) String() string {
	return [...]string{"idle", "phase 1", "registering", "registered"}[s]
}

// Severity is an Event's syslog severity (RFC 5424 numbers).
type Severity int

const (
	SevErr     Severity = 3
	SevWarning Severity = 4
	SevNotice  Severity = 5
	SevInfo    Severity = 6
	SevDebug   Severity = 7
)

// Event is a line for the owner to log.
type Event struct {
	Severity Severity
	// Mnemonic names a %GDOI-N-MNEMONIC line; "" is a plain record with
	// Attrs (key/value pairs).
	Mnemonic string
	Msg      string
	Attrs    []any
	// Unauth: caused by unauthenticated input, to be rate-limited (SPEC S6).
	Unauth bool
}

// Send is a datagram for the member's socket.
type Send struct {
	To   netip.AddrPort
	Data []byte
}

// Result is what the member asks its owner to do, in this order: mark
// Suspect, send Send, join Join, log Events, then provide Connect.
type Result struct {
	// Suspect: no new pull may use this SA; the owner deletes it once a
	// new SA to the same key server is established.
	Suspect Phase1
	Send    []Send
	// Join: the KEK whose multicast group rekeys arrive on.
	Join   *sadb.KEK
	Events []Event
	// Connect: the member needs a phase-1 SA to this key server. The
	// owner reuses an established one we initiated that is not suspect
	// (Phase1Up, reused), else joins another group's main mode in flight
	// to it (Phase1InFlight, Phase1Joined), else starts main mode
	// (Phase1Started, then Phase1Up when it is established), or reports
	// ConnectFailed.
	Connect netip.AddrPort
}

func (r *Result) log(sev Severity, mnemonic, format string, args ...any) {
	r.Events = append(r.Events, Event{Severity: sev, Mnemonic: mnemonic, Msg: fmt.Sprintf(format, args...)})
}

func (r *Result) note(sev Severity, msg string, attrs ...any) {
	r.Events = append(r.Events, Event{Severity: sev, Msg: msg, Attrs: attrs})
}

// maxTEKsNoted bounds the TEKs one "TEKs held" event lists (a KS's
// message may carry hundreds, and they add up across rekeys).
const maxTEKsNoted = 16

// keys notes, at debug level and in one event, the TEKs of group the data
// plane holds after a registration or a rekey (authenticated input only):
// when each starts sending and when it stops accepting, so that a log
// tells which key a lost packet needed.
func (r *Result) keys(dp sadb.Dataplane, group string, now time.Time) {
	var b strings.Builder
	n := 0
	for _, t := range dp.TEKs() {
		if t.Group != group {
			continue
		}
		if n++; n > maxTEKsNoted {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "0x%08x %s sends in %s ends in %s", t.SPI, t.Dst, max(t.SendFrom.Sub(now), 0).Round(time.Millisecond),
			t.Ends().Sub(now).Round(time.Millisecond))
	}
	if n > maxTEKsNoted {
		fmt.Fprintf(&b, " and %d more", n-maxTEKsNoted)
	}
	r.note(SevDebug, "TEKs held", "group", group, "teks", b.String())
}

// NewMember returns the member of one group; it does nothing until Wake.
func NewMember(cfg Config, o Options) *Member {
	if o.PullTimeout == 0 {
		o.PullTimeout = 5 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = phase1GiveUp + 3*o.PullTimeout
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 2 * time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 60 * time.Second
	}
	return &Member{cfg: cfg, o: o}
}

// KS is the key server being tried or registered with.
func (m *Member) KS() netip.AddrPort { return m.ks }

// SA is the phase-1 SA the member's pull runs or ran over (nil: none).
func (m *Member) SA() Phase1 { return m.sa }

// Next is when Timer must be called (zero: never).
func (m *Member) Next() time.Time { return m.next }

// Wake makes the member act at now: register, or re-register at once.
func (m *Member) Wake(now time.Time) { m.next = now }

// Start makes a member that never acted register at now (options that
// hold registrations until released).
func (m *Member) Start(now time.Time) {
	if m.next.IsZero() && m.state == stateIdle {
		m.next = now
	}
}

func (m *Member) uniform() float64 {
	var b [8]byte
	io.ReadFull(m.o.Rand, b[:])
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}

// Timer acts on the member's timer (a stale one is ignored).
func (m *Member) Timer(now time.Time) Result {
	var res Result
	if m.next.IsZero() || m.next.After(now) {
		return res
	}
	if (m.state == statePhase1 || m.state == statePull) && !m.deadline.IsZero() && !now.Before(m.deadline) {
		reason := &m.c.Failures.TimedOut
		m.failover(&res, reason, fmt.Errorf("no registration with KS %s within %s", m.ks.Addr(), m.attemptFor.Round(time.Second)), now)
		return res
	}
	switch m.state {
	case stateIdle, stateRegistered:
		m.attemptFor = m.attemptWithin(now)
		m.deadline = now.Add(m.attemptFor)
		m.attempt(&res)
	case statePhase1:
		// The endpoint's retransmissions report failure; this is a
		// safety net for a phase 1 that never started.
		m.failover(&res, &m.c.Failures.Phase1, fmt.Errorf("phase 1 with %s did not complete", m.ks.Addr()), now)
	case statePull:
		if m.reused {
			// One unanswered transmission over an SA that predates this
			// attempt: the KS may have lost its phase-1 state (a restart),
			// and retransmitting over the same SA cannot help. A fresh main
			// mode at once, with the same KS; a pull over the fresh SA
			// that goes unanswered fails over as below.
			m.c.PullGiveUps++
			res.Suspect = m.sa
			m.fresh(&res, now)
			return res
		}
		if m.pullTries >= 3 {
			m.failover(&res, &m.c.Failures.PullUnanswered, fmt.Errorf("KS %s did not answer GROUPKEY-PULL", m.ks.Addr()), now)
			return res
		}
		m.pullTries++
		res.Send = append(res.Send, Send{To: m.ks, Data: m.pull.Last()})
		m.wakeBy(now.Add(m.o.PullTimeout))
	}
	return res
}

// phase1GiveUp is ike.DefaultGiveUp: when an initiator gives up on a
// main mode its peer does not answer.
const phase1GiveUp = 30 * time.Second

// DefaultAttemptTimeout is a registration attempt's bound when the keys
// held leave more time (Options.AttemptTimeout), with the default
// PullTimeout: an initiator's phase-1 give-up (30 s) and the pull's three
// tries of 5 s.
const DefaultAttemptTimeout = phase1GiveUp + 3*5*time.Second

// MinAttempt is the least time an attempt gets, however little the keys
// held have left: a phase 1 and a pull with one retransmission each.
const MinAttempt = 10 * time.Second

// attemptWithin is how long an attempt starting at now may take:
// AttemptTimeout, or a third of what the keys held have left if less
// (after a GM removal, 60 s left: 20 s, then 13 s, ...), at least
// MinAttempt. A KS that does not answer used to keep a member for the
// whole phase 1 (46 s, then 30 s) while its temporary SAs ran out
// (docs/scale.md F6).
func (m *Member) attemptWithin(now time.Time) time.Duration {
	d := m.o.AttemptTimeout
	if m.installed != nil {
		if left := m.installed.Earliest.Sub(now); left > 0 {
			d = min(d, max(left/3, MinAttempt))
		}
	}
	return d
}

// wakeBy sets the member's timer to at, or to the attempt's deadline if
// that comes first.
func (m *Member) wakeBy(at time.Time) {
	if !m.deadline.IsZero() && m.deadline.Before(at) {
		at = m.deadline
	}
	m.next = at
}

// attempt (re)registers with the current KS: the owner provides the
// phase-1 SA.
func (m *Member) attempt(res *Result) {
	m.ks = m.cfg.Servers[m.idx%len(m.cfg.Servers)]
	res.Connect = m.ks
}

// ConnectFailed: the owner could not start a phase 1 to KS().
func (m *Member) ConnectFailed(err error, now time.Time) Result {
	var res Result
	m.failover(&res, &m.c.Failures.Connect, err, now)
	return res
}

// Phase1Started: main mode with KS() began over sa.
func (m *Member) Phase1Started(sa Phase1, now time.Time) {
	m.Phase1Joined(sa, now, now)
}

// Phase1Joined: the member waits for sa, a main mode with KS() that began
// at began: another group's member's (Phase1InFlight), or its own
// (Phase1Started).
func (m *Member) Phase1Joined(sa Phase1, began, now time.Time) {
	m.state, m.p1, m.p1At, m.pull = statePhase1, sa, began, nil
	m.wakeBy(now.Add(2 * time.Minute))
}

// JoinWithin is how long after its start another group's member may join
// a main mode in flight: the groups of one GM start within it; later, a
// main mode its own member gave up on (an attempt deadline can be shorter
// than the 30 s main mode gives itself) would be joined again and again
// instead of a fresh one started.
const JoinWithin = 5 * time.Second

// Phase1InFlight is the main mode this member waits for to peer, begun
// less than JoinWithin before now, and when it began (nil: none): a member
// of another group to the same KS waits for it too (Phase1Joined) instead
// of starting its own.
func (m *Member) Phase1InFlight(peer netip.AddrPort, now time.Time) (Phase1, time.Time) {
	if m.state != statePhase1 || m.ks != peer || now.Sub(m.p1At) >= JoinWithin {
		return nil, time.Time{}
	}
	return m.p1, m.p1At
}

// AwaitsPhase1 reports whether the member waits for a phase 1 to peer.
func (m *Member) AwaitsPhase1(peer netip.AddrPort) bool {
	return m.state == statePhase1 && m.ks == peer
}

// Phase1Up starts the GROUPKEY-PULL over sa: one established for this
// attempt, or an earlier one (reused).
func (m *Member) Phase1Up(sa Phase1, reused bool, now time.Time) Result {
	var res Result
	pull, msg, err := gdoi.NewPull(sa, isakmp.GroupID(m.cfg.ID), m.cfg.SIDs, m.o.Rand)
	if err != nil {
		m.failover(&res, &m.c.Failures.Pull, err, now)
		return res
	}
	m.state, m.sa, m.pull, m.pullTries, m.reused, m.p1 = statePull, sa, pull, 1, reused, nil
	m.wakeBy(now.Add(m.o.PullTimeout))
	res.Send = append(res.Send, Send{To: m.ks, Data: msg})
	return res
}

// freshInterval bounds the fresh phase 1s started for one registration
// because its SA became suspect (a hint from the network, which anyone on
// the path can forge, must not make the GM run main mode in a loop).
const freshInterval = 5 * time.Second

// fresh abandons the pull and registers again with the same KS at once
// over a new phase-1 SA. The suspect SA stays until the new one is
// established: nothing unauthenticated removes an SA.
func (m *Member) fresh(res *Result, now time.Time) {
	m.freshAt = now
	m.dropPull()
	m.pull, m.sa, m.reused = nil, nil, false
	res.log(SevNotice, "GM_REREGISTER", "KS %s seems to have lost the phase-1 SA of group %s (no answer, or INVALID-COOKIE): starting a new phase 1",
		m.ks.Addr(), m.cfg.Name)
	m.attempt(res)
}

// PeerLost acts on the hint that the KS lost sa's state (an unprotected
// INVALID-COOKIE for its cookies; the owner marks sa suspect): a pull
// running over it starts a new phase 1 at once, at most once per
// freshInterval.
func (m *Member) PeerLost(sa Phase1, now time.Time) Result {
	var res Result
	if m.sa == sa && m.state == statePull && (m.freshAt.IsZero() || now.Sub(m.freshAt) >= freshInterval) {
		m.fresh(&res, now)
	}
	return res
}

// DropSA forgets sa, which its owner deleted (a suspect SA replaced by a
// new one); a pull over it goes on until it times out.
func (m *Member) DropSA(sa Phase1) {
	if m.sa == sa {
		m.sa = nil
	}
}

// Phase1Down: sa failed, was deleted by the peer or expired (why); dead:
// it failed because the KS did not answer dead peer detection. A
// registration in progress over it fails over; a registered member whose
// KS is dead registers again at once with the next one.
func (m *Member) Phase1Down(sa Phase1, why string, dead bool, now time.Time) Result {
	var res Result
	if m.sa == sa || (m.state == statePhase1 && m.p1 == sa) {
		m.sa, m.p1 = nil, nil
		if m.state == statePhase1 || m.state == statePull {
			m.failover(&res, &m.c.Failures.Phase1, fmt.Errorf("phase 1 with %s: %s", m.ks.Addr(), why), now)
		} else if dead {
			m.deadKS(&res, now)
		}
	}
	return res
}

// deadKS acts on dead peer detection (crypto isakmp keepalive): the key
// server the member is registered with did not answer R-U-THERE, and its
// SA is gone. It registers again at once with the next key server of its
// list (the same one if it is the only one); the keys installed stay until
// the new registration replaces them or they expire.
func (m *Member) deadKS(res *Result, now time.Time) {
	if m.state != stateRegistered && m.state != stateIdle {
		return
	}
	prev := m.ks
	m.idx = (m.idx + 1) % len(m.cfg.Servers)
	m.c.FailuresTotal++
	m.lastErr = fmt.Sprintf("KS %s is dead (no answer to dead peer detection)", prev.Addr())
	m.next = now
	res.log(SevNotice, "GM_REREGISTER", "KS %s of group %s did not answer dead peer detection (crypto isakmp keepalive): registering with KS %s",
		prev.Addr(), m.cfg.Name, m.cfg.Servers[m.idx].Addr())
}

// Refused: the KS sent a protected notification over sa.
func (m *Member) Refused(sa Phase1, t isakmp.NotifyType, now time.Time) Result {
	var res Result
	if m.sa == sa && m.state == statePull {
		m.failover(&res, &m.c.Failures.Refused, fmt.Errorf("KS %s refused registration: %s", m.ks.Addr(), t), now)
	}
	return res
}

// Cleared: the owner deleted sa (`clear crypto isakmp`). A pull over it
// starts again at once; keys installed stay.
func (m *Member) Cleared(sa Phase1, now time.Time) {
	if m.sa != sa {
		return
	}
	m.sa = nil
	if m.state == statePull {
		m.pull, m.reused = nil, false
		m.idleOrRegistered(now)
		m.next = now
	}
}

// LocalGone: the local address the member's socket was bound to was
// removed. A registration in progress fails over; one registered keeps
// its keys and runs a new phase 1 next time.
func (m *Member) LocalGone(addr netip.Addr, now time.Time) Result {
	var res Result
	switch m.state {
	case statePhase1, statePull:
		m.failover(&res, &m.c.Failures.LocalGone, fmt.Errorf("local address %s removed", addr), now)
	default:
		m.sa = nil
	}
	return res
}

// Reregister is `clear crypto gdoi`: register again at once with the
// first key server over a new phase 1 (the owner marks the SAs to the
// key servers suspect first). Installed keys stay.
func (m *Member) Reregister(now time.Time) {
	m.dropPull()
	m.pull, m.sa, m.p1, m.reused, m.failures, m.idx = nil, nil, nil, false, 0, 0
	m.idleOrRegistered(now)
	m.next = now
}

func (m *Member) idleOrRegistered(now time.Time) {
	m.state = stateIdle
	if m.installed != nil && now.Before(m.installed.Earliest) {
		m.state = stateRegistered // the old keys stay valid meanwhile
	}
}

// dropPull abandons the pull in progress, if any: its SA forgets the
// exchange's message ID (its IV chain, and the AES block an initiator
// keeps through an exchange), as a finished pull's does; an SA reused for
// the next attempt keeps nothing of an abandoned one.
func (m *Member) dropPull() {
	if m.pull != nil && m.sa != nil {
		m.sa.ForgetMessageID(m.pull.MessageID())
	}
	m.pull = nil
}

// OwnsPull reports whether a GROUPKEY-PULL message with message ID mid
// over sa belongs to the member's exchange.
func (m *Member) OwnsPull(sa Phase1, mid uint32) bool {
	return m.state == statePull && m.sa == sa && m.pull.MessageID() == mid
}

// PullMessage handles the KS's message 2 or 4 of the member's
// GROUPKEY-PULL, received on the local address local.
func (m *Member) PullMessage(msg *isakmp.Message, local netip.Addr, now time.Time) Result {
	var res Result
	if m.state != statePull || m.pull == nil {
		// Not the member's exchange (OwnsPull is the caller's check): a
		// finished pull is dropped once the member is registered.
		return res
	}
	reply, pr, err := m.pull.Handle(msg)
	if errors.Is(err, gdoi.ErrUnauthenticated) {
		// Not the KS's, as far as anyone can tell: the pull goes on.
		m.c.PullsForged++
		res.Events = append(res.Events, Event{Severity: SevDebug, Msg: "dropped unauthenticated GROUPKEY-PULL message",
			Attrs: []any{"peer", m.ks.String(), "err", err}, Unauth: true})
		return res
	}
	if err != nil {
		m.failover(&res, &m.c.Failures.Pull, fmt.Errorf("GROUPKEY-PULL with %s: %w", m.ks.Addr(), err), now)
		return res
	}
	if reply != nil {
		m.reused = false // the KS answered over the SA: it holds it
		m.pullTries = 1
		m.wakeBy(now.Add(m.o.PullTimeout))
		res.Send = append(res.Send, Send{To: m.ks, Data: reply})
		return res
	}
	m.sa.ForgetMessageID(m.pull.MessageID())
	// The exchange is over: its state (nonces, the policy of message 2,
	// the last message and, through it, the phase-1 SA) is not kept for
	// the life of the keys (issue 18: a simulated GM's memory).
	m.pull = nil
	dp := m.o.Dataplane
	var hold Hold
	if !m.temporary.IsZero() {
		// Re-registered after a GM removal: the other members send and
		// receive with the temporary SAs until they re-register too.
		hold = Hold{Held: map[uint32]bool{}, Until: m.temporary}
		for _, t := range dp.TEKs() {
			if t.Group == m.cfg.Name {
				hold.Held[t.SPI] = true
			}
		}
	}
	inst, err := InstallHolding(dp, m.o.KEKs, m.cfg.Name, m.cfg.ID, pr, hold, now)
	if err != nil {
		res.log(SevErr, "GM_INSTALL_POLICIES_FAILED", "FAILED: Installation of Reg policies from KS %s for group %s: %v",
			m.ks.Addr(), m.cfg.Name, err)
		m.failover(&res, &m.c.Failures.Install, err, now)
		return res
	}
	m.state, m.installed, m.registeredAt, m.failures, m.lastErr, m.regKS = stateRegistered, inst, now, 0, "", m.ks
	m.temporary = time.Time{}
	if !m.o.Quiet {
		res.keys(dp, m.cfg.Name, now)
	}
	m.bootstrap = false     // the key server's policy replaced it (Install)
	m.freshAt = time.Time{} // the bound on fresh phase 1s is per registration attempt
	m.deadline = time.Time{}
	if inst.KEK != nil {
		// §3.3: the pull's SEQ is stale if a push under this KEK was
		// already accepted.
		m.seq.Advance(inst.KEK.SPI, pr.Seq)
		res.Join = inst.KEK
	}
	m.c.Registrations++
	m.next = ReregisterAt(inst.Earliest, inst.EarliestLifetime, m.uniform())
	// The member reads its earliest expiry, sequence number and policy
	// later, never these: the TEKs are the data plane's, the KEK the KEK
	// store's (issue 18: a simulated GM's memory).
	inst.TEKs, inst.KEK = nil, nil
	if m.o.Quiet {
		res.Events = append(res.Events, Event{Severity: SevNotice, Mnemonic: "GM_REGS_COMPL"},
			Event{Severity: SevNotice, Mnemonic: "GM_INSTALL_POLICIES_SUCCESS"})
		return res
	}
	res.log(SevNotice, "GM_REGS_COMPL", "Registration to KS %s complete for group %s using address %s",
		m.ks.Addr(), m.cfg.Name, local)
	res.log(SevNotice, "GM_INSTALL_POLICIES_SUCCESS", "SUCCESS: Installation of Reg/Rekey policies from KS %s for group %s & gm identity %s",
		m.ks.Addr(), m.cfg.Name, local)
	return res
}

// failover gives up on the current KS, counts the failure under reason,
// and schedules the next one in the list after an exponential backoff
// with jitter. A member whose keys are still valid retries within what is
// left of them (retryWithin), not after a backoff past their expiry.
func (m *Member) failover(res *Result, reason *int, err error, now time.Time) {
	m.failures++
	m.c.FailuresTotal++
	*reason++
	m.lastErr = err.Error()
	prev := m.ks
	m.idx = (m.idx + 1) % len(m.cfg.Servers)
	backoff := m.o.BackoffMin << min(m.failures-1, 10)
	backoff = min(backoff, m.o.BackoffMax)
	if m.installed != nil {
		backoff = min(backoff, retryWithin(m.installed.Earliest.Sub(now)))
	}
	backoff = backoff/2 + time.Duration(m.uniform()*float64(backoff/2))
	m.dropPull()
	m.pull, m.sa, m.p1, m.reused, m.deadline = nil, nil, nil, false, time.Time{}
	m.idleOrRegistered(now)
	m.next = now.Add(backoff)
	res.log(SevWarning, "GM_REGS_FAILED", "Registration to KS %s for group %s failed: %v; trying KS %s in %s",
		prev.Addr(), m.cfg.Name, err, m.cfg.Servers[m.idx].Addr(), backoff.Round(time.Millisecond))
}

// Status is a member's state for show commands.
type Status struct {
	State        string
	KS           netip.AddrPort
	RegisteredAt time.Time
	Reregister   time.Time // zero unless registered
	Failures     int       // consecutive
	LastError    string
	Seq          uint32
	// ACL is the policy downloaded from the KS at ACLFrom, in ACL order.
	ACL                []sadb.PolicyEntry
	ACLFrom            netip.Addr
	FailCloseBootstrap bool
	Counters
}

// Status reports the member's state.
func (m *Member) Status() Status {
	s := Status{State: m.state.String(), KS: m.ks, RegisteredAt: m.registeredAt, Failures: m.failures, LastError: m.lastErr,
		FailCloseBootstrap: m.bootstrap, Counters: m.c}
	s.Rekeys.LastRekey = m.lastRekey
	if m.state == stateRegistered {
		s.Reregister = m.next
	}
	if m.installed != nil {
		s.Seq = m.installed.Seq
		s.ACL, s.ACLFrom = m.installed.Policy, m.regKS.Addr()
	}
	s.Seq = max(s.Seq, m.seq.Max())
	return s
}

// PushSPI is the KEK SPI a GROUPKEY-PUSH names by its cookies (RFC 6407
// §5.3: the KEK's SPI is the ISAKMP header's cookie pair); false when the
// datagram has no ISAKMP header.
func PushSPI(data []byte) ([isakmp.KEKSPILen]byte, bool) {
	var spi [isakmp.KEKSPILen]byte
	h, err := isakmp.ParseHeader(data)
	if err != nil {
		return spi, false
	}
	copy(spi[:8], h.InitiatorCookie[:])
	copy(spi[8:], h.ResponderCookie[:])
	return spi, true
}

// kek is the group's KEK of SPI spi in the data plane (nil: none).
func (m *Member) kek(spi [isakmp.KEKSPILen]byte) *sadb.KEK {
	var kek *sadb.KEK
	for _, k := range m.o.KEKs.KEKs() {
		if k.SPI == spi && k.Group == m.cfg.Name {
			kek = &k
		}
	}
	return kek
}

// HoldsKEK reports whether the member's group holds the KEK spi: a push
// under it is the member's.
func (m *Member) HoldsKEK(spi [isakmp.KEKSPILen]byte) bool { return m.kek(spi) != nil }

// Push is a GROUPKEY-PUSH datagram as received.
type Push struct {
	From, To netip.AddrPort // To: the local address it arrived on
	Data     []byte
	// Local is the address of the member's own socket (the ACK's source
	// and the address it names); invalid while it has none.
	Local netip.Addr
}

// errRetransmitted: a push identical to the last one accepted.
var errRetransmitted = errors.New("gm: the last rekey again")

// Push handles a GROUPKEY-PUSH under one of the member's KEKs (RFC 6407
// §4.4). The cheap checks come first: the KEK named by the cookies, then
// the sequence number (after the symmetric decryption, before the
// signature verification), and a retransmission identical to the last
// push accepted is answered without verifying it again. No state changes
// before the signature verifies.
func (m *Member) Push(p Push, now time.Time) Result {
	var res Result
	spi, _ := PushSPI(p.Data)
	kek := m.kek(spi)
	if kek == nil {
		return res // the owner routes by HoldsKEK
	}
	pub, err := x509.ParsePKIXPublicKey(kek.SigKey)
	if err != nil {
		m.c.Rekeys.Rejected++
		return res
	}
	kk := gdoi.KEK{SPI: spi, Key: kek.Key}
	last := m.seq.Last(spi)
	digest := sha256.Sum256(p.Data)
	var verdict SeqVerdict
	rk, err := gdoi.OpenPushChecked(p.Data, kk, pub, kek.SigAlg, func(seq uint32) error {
		switch verdict = m.seq.Check(spi, seq, digest); verdict {
		case SeqRetransmit:
			return errRetransmitted // the very datagram already verified
		case SeqStale:
			return gdoi.ErrPushStale
		}
		return nil
	})
	switch {
	case errors.Is(err, errRetransmitted):
		// The KS did not get our ACK.
		m.c.Rekeys.Duplicate++
		m.ack(&res, kek, kk, last, p.Local)
		return res
	case errors.Is(err, gdoi.ErrPushStale):
		m.c.Rekeys.Replayed++
		res.Events = append(res.Events, Event{Severity: SevWarning, Mnemonic: "GM_REKEY_REPLAY", Unauth: true,
			Msg: fmt.Sprintf("Rekey for group %s dropped: sequence number not above %d", m.cfg.Name, last)})
		return res
	case err != nil:
		m.c.Rekeys.Rejected++
		res.Events = append(res.Events, Event{Severity: SevWarning, Mnemonic: "GM_REKEY_REJECTED", Unauth: true,
			Msg: fmt.Sprintf("Rekey for group %s from %s rejected: %v", m.cfg.Name, p.From.Addr(), err)})
		return res
	}
	if verdict == SeqDuplicate {
		// Verified, same sequence number, other octets: a retransmission
		// the KS built again (after a restart); acknowledged, not applied.
		m.c.Rekeys.Duplicate++
		m.ack(&res, kek, kk, rk.Seq, p.Local)
		return res
	}
	removal, replace := notifyOf(rk, isakmp.NotifyGMRemoval), notifyOf(rk, isakmp.NotifyPolicyReplace)
	if removal != nil {
		m.seq.Accept(spi, rk.Seq, digest)
		if m.o.Legacy {
			// A 1.0.1 node does not know GM removal: it keeps its keys.
			res.note(SevInfo, "ignoring a GM-removal message: this node runs an older version", "group", m.cfg.Name, "version", m.o.Version)
			return res
		}
		m.c.Rekeys.Received++
		m.ack(&res, kek, kk, rk.Seq, p.Local)
		m.removed(&res, removal, now)
		return res
	}
	dp := m.o.Dataplane
	inst, err := ApplyRekey(dp, m.o.KEKs, m.cfg.Name, m.cfg.ID, rk, now)
	if err != nil {
		m.c.Rekeys.Rejected++
		res.log(SevErr, "GM_INSTALL_POLICIES_FAILED", "FAILED: Installation of Rekey policies for group %s: %v", m.cfg.Name, err)
		return res
	}
	m.seq.Accept(spi, rk.Seq, digest)
	m.c.Rekeys.Received++
	m.lastRekey = now
	if inst.Policy != nil {
		m.bootstrap = false // the key server's policy replaced it
	}
	if inst.KEK != nil {
		m.seq.Reset(inst.KEK.SPI)
		res.Join = inst.KEK
	}
	if len(inst.TEKs) > 0 && m.installed != nil {
		m.installed.Earliest = inst.Earliest
		if inst.Policy != nil {
			m.installed.Policy = inst.Policy // the rekey's ACL (SPEC E3)
		}
		if m.state == stateRegistered {
			m.next = ReregisterAt(inst.Earliest, inst.EarliestLifetime, m.uniform())
		}
	}
	if inst.NeedSIDs && m.state == stateRegistered {
		// A counter-mode TEK without a sender ID: register again at once
		// for one (the KS hands them out with the current keys).
		res.note(SevInfo, "counter-mode TEK received without a sender ID: registering again for one", "group", m.cfg.Name)
		m.next = now
	}
	if m.o.Quiet {
		res.Events = append(res.Events, Event{Severity: SevNotice, Mnemonic: "GM_RECV_REKEY"})
	} else {
		res.log(SevNotice, "GM_RECV_REKEY", "Received Rekey for group %s from %s to %s with seq # %d",
			m.cfg.Name, p.From.Addr(), p.To.Addr(), rk.Seq)
	}
	if replace != nil && !m.o.Legacy {
		m.replaced(&res, replace, inst, now)
	}
	if !m.o.Quiet {
		res.keys(dp, m.cfg.Name, now)
	}
	m.ack(&res, kek, kk, rk.Seq, p.Local)
	return res
}

func notifyOf(rk *gdoi.Rekey, t isakmp.NotifyType) *isakmp.Notify {
	for _, nt := range rk.Notifies {
		if nt.NotifyType == t && len(nt.Data) == 1 && (nt.Data[0] == isakmp.ModeShorten || nt.Data[0] == isakmp.ModeNow) {
			return nt
		}
	}
	return nil
}

// removed carries out a GM-removal message (SPEC R2, R4).
func (m *Member) removed(res *Result, nt *isakmp.Notify, now time.Time) {
	dp, g := m.o.Dataplane, m.cfg.Name
	clt := time.Duration(0)
	for _, t := range dp.TEKs() {
		if t.Group == g {
			clt = max(clt, t.Configured)
		}
	}
	m.o.KEKs.DeleteKEK(g)
	if nt.Data[0] == isakmp.ModeNow {
		for _, t := range dp.TEKs() {
			if t.Group == g {
				dp.DeleteTEK(g, t.SPI)
			}
		}
		// Fail-open or fail-close now applies: the GM holds no TEK.
		window := max(clt/50, time.Second) // 2% of the configured TEK lifetime
		wait := time.Duration(m.uniform() * float64(window))
		m.dropPull()
		m.state, m.installed, m.sa, m.pull = stateIdle, nil, nil, nil
		m.temporary = time.Time{} // no key left to send with meanwhile
		m.next = now.Add(wait)
		res.log(SevWarning, "GM_RECV_DELETE_IMMEDIATE",
			"GM receive REMOVAL-NOW in group %s to cleanup downloaded policy now. Re-registration will start in a randomly chosen period of %d sec",
			g, int(wait.Round(time.Second)/time.Second))
		return
	}
	earliest := Shorten(dp, g, nil, now)
	res.log(SevWarning, "GM_RECV_DELETE",
		"GM received delete-msg from KS in group %s. TEKs lifetime are reduced and re-registration will start before SA expiry", g)
	if earliest.IsZero() {
		m.state, m.installed, m.next = stateIdle, nil, now
		return
	}
	if m.installed != nil {
		m.installed.Earliest = earliest
	}
	m.temporary = earliest
	m.next = ReregisterBefore(earliest, now, m.uniform())
}

// replaced carries out the policy-replace instruction of a rekey (SPEC P3,
// P4): the SAs the rekey did not bring are shortened, or deleted at once.
func (m *Member) replaced(res *Result, nt *isakmp.Notify, inst *Installed, now time.Time) {
	keep := map[uint32]bool{}
	for _, t := range inst.TEKs {
		keep[t.SPI] = true
	}
	dp, g := m.o.Dataplane, m.cfg.Name
	if nt.Data[0] == isakmp.ModeNow {
		for _, t := range dp.TEKs() {
			switch {
			case t.Group != g:
			case !keep[t.SPI]:
				dp.DeleteTEK(g, t.SPI)
			case t.SendFrom.After(now):
				// The new policy is used at once (SPEC P4): no
				// activation delay, nothing else is left to send with.
				t.SendFrom = now
				dp.InstallTEK(t)
			}
		}
		res.note(SevInfo, "policy replaced now: old SAs deleted", "group", g)
		return
	}
	Shorten(dp, g, keep, now)
	res.note(SevInfo, "policy replaced: old SAs shortened", "group", g)
}

// ack acknowledges a rekey (RFC 8263) to the key server the GM registered
// with, whatever the datagram's source said: a replayed push from a forged
// source must not make the GM send anything anywhere else.
func (m *Member) ack(res *Result, kek *sadb.KEK, kk gdoi.KEK, seq uint32, local netip.Addr) {
	if !kek.Ack || !local.IsValid() || !m.regKS.IsValid() {
		return
	}
	b, err := gdoi.Ack(kk, seq, local)
	if err != nil {
		return
	}
	m.c.Rekeys.AcksSent++
	res.Send = append(res.Send, Send{To: m.regKS, Data: b})
}

// SetServers replaces the group's key-server list; the next attempt
// starts from its first.
func (m *Member) SetServers(servers []netip.AddrPort) {
	m.cfg.Servers, m.idx = slices.Clone(servers), 0
}
