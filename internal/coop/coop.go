// Package coop is the cooperative key server (COOP, SPEC C1) election and
// role state machine of one group, as a sans-IO core in the shape of
// ike.Endpoint and ks.Delivery: it is told announcements from its peer key
// servers and the time, and returns the announcements to send (as values),
// the next deadline and events. It does no I/O, never reads the clock and
// starts no goroutine (internal/archtest checks it).
//
// internal/node runs one per KS group configured with redundancy: it
// carries the announcements in the KS-KS IKEv1 SAs and acts on the roles
// (docs/coop.md).
//
// # API
//
//	e, err := coop.New(coop.Config{Group, Local, Priority, Peers, Version, timers})
//	res := e.Start(now)                  // at boot: secondary, asks peers to reply
//	res = e.Receive(from, ann, now)      // an authenticated ANN from a peer KS
//	res = e.Tick(now)                    // at res.Timer (early or late calls are harmless)
//	res = e.Session(peer, now)           // a new KS-KS IKE SA with peer: its sequence numbers restart
//	res, err = e.SetPeers(peers, now)    // reconfiguration
//	res = e.Announce(now)                // announce to every peer now (the owner's state changed)
//	send, ok := e.Extra(peer)            // one more ANN to peer (parts of a member list)
//	e.Role(), e.Primary(), e.Peers(), e.Stats()
//
// Every call returns a Result: Send (announcements and the peer each goes
// to; the owner encodes them, isakmp/ is the codec, and protects them in
// the KS-KS IKE SA), Timer (when to call Tick; zero: never) and Events
// (each with an IOS-like log line, Event.Log, and typed for the owner to
// act on: RoleChanged, Adopt).
//
// # Protocol as implemented (groupvpn values; docs/coop.md)
//
// Every KS announces its role, priority, version and a sequence number
// to every configured peer each Period
// (default 20 s), at once when its role changes, and in reply to an
// announcement asking for one (sent at start) or from a peer it had not
// heard. A peer is reachable while its last accepted announcement is
// younger than Dead (default 60 s, three periods). A KS starts as a
// secondary and waits ElectionWait (default 20 s) to hear a primary. When
// it has no reachable primary (after that wait, or when its primary
// becomes unreachable) it enters election: the KS of highest priority,
// then highest address, among itself and its reachable peers claims
// primary at once; any other claims only if no primary appeared after Dead
// more (a better peer that stays silent as a primary must not leave the
// group without rekeys). Two primaries that hear each other resolve at
// once: the one of lower priority (then lower address) becomes secondary
// and is told to adopt the winner's state (Adopt). No preemption: a
// secondary of higher priority, returning or new, stays secondary while a
// primary is reachable, so members see no key change from it.
//
// Announcements are trusted only as far as the owner authenticated them;
// still, only configured peers have state here (one record each), an
// announcement from any other address is dropped and counted, and its log
// line is rate-limited; an announcement whose sequence number is not above
// the last accepted from that peer is dropped and counted (replay or
// reordering). Sequence numbers are per peer and per KS-KS IKE SA (as
// ESP's): they start at 1 and restart, both ways, when the owner reports a
// new SA with the peer (Session); the owner's authentication keeps an old
// SA's announcements out.
package coop

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// Defaults (groupvpn values; IOS shows a 20 s "Primary Refresh Policy
// Time" and declares a primary dead after three missed refreshes).
const (
	DefaultPeriod       = 20 * time.Second
	DefaultDeadPeriods  = 3
	DefaultElectionWait = 20 * time.Second
	// MaxPeers bounds the configured peers (and so the per-peer state).
	MaxPeers = 64
	// replyGap is the least time between two replies to one peer.
	replyGap = time.Second
)

// Role is a key server's COOP role; the values are the COOP payload's
// (isakmp.COOPRole).
type Role uint8

const (
	// Electing: a secondary that follows no primary (starting, or in
	// election); it counts as a secondary.
	Electing  Role = 1
	Primary   Role = 2
	Secondary Role = 3
)

func (r Role) String() string {
	switch r {
	case Electing:
		return "Electing"
	case Secondary:
		return "Secondary"
	case Primary:
		return "Primary"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Announcement is one ANN message's content as a value.
type Announcement struct {
	Role     Role
	Priority uint8 // 1..255
	Version  version.Version
	// Seq counts the sender's announcements to this receiver from 1 in
	// the current KS-KS IKE SA (the ANN's SEQ payload); a receiver accepts
	// only a Seq above the last it accepted.
	Seq uint32
	// ReplyRequest asks the receiver to announce back at once.
	ReplyRequest bool
	// The owner's policy, keys, members and KS-set digest travel beside
	// the announcement (its own payloads and COOP fields, docs/wire.md):
	// the election needs none of them.
}

// Send is an announcement for one peer.
type Send struct {
	To  netip.Addr
	Ann Announcement
}

// Result is what a call asks of the owner.
type Result struct {
	Send   []Send
	Timer  time.Time // call Tick then; zero: no deadline
	Events []Event
}

// Config is one group's COOP configuration.
type Config struct {
	Group    string
	Local    netip.Addr
	Priority uint8 // 1..255 (IOS "local priority")
	Peers    []netip.Addr
	Version  version.Version // zero: version.Current
	// Period is the announcement period, Dead how long a silent peer
	// stays reachable, ElectionWait how long a starting KS listens for a
	// primary. Zero: the defaults.
	Period, Dead, ElectionWait time.Duration
}

// Stats counts what was dropped, for show and metrics.
type Stats struct {
	Sent, Accepted uint64
	Replayed       uint64 // Seq not above the last accepted from that peer
	Unknown        uint64 // from an address that is not a configured peer
	Invalid        uint64 // bad role or priority 0
	Incompatible   uint64 // major or minor version differs (SPEC V1)
	Elections      uint64
	Exhausted      uint64 // announcements not sent: the SA's sequence numbers are used up
}

// PeerStatus is one configured peer as last heard.
type PeerStatus struct {
	Addr      netip.Addr
	Reachable bool
	Role      Role // zero: never heard
	Priority  uint8
	Version   version.Version
	Seq       uint32 // last accepted from the peer
	LastHeard time.Time
}

type peer struct {
	PeerStatus
	sent      uint32 // last Seq sent to the peer
	lastReply time.Time
}

// Elector is one group's COOP role.
type Elector struct {
	cfg   Config
	peers map[netip.Addr]*peer
	order []netip.Addr // configured peers, sorted

	started      bool
	role         Role
	primary      netip.Addr // the primary this KS follows (or its own address)
	previous     netip.Addr // the primary followed before the election
	waitUntil    time.Time  // startup: listening for a primary until then
	electing     bool
	electSince   time.Time
	nextAnnounce time.Time
	lastUnknown  time.Time // last Unauthorized event
	stats        Stats
}

// New checks cfg and returns the group's elector, not yet started.
func New(cfg Config) (*Elector, error) {
	if cfg.Priority == 0 {
		return nil, errors.New("coop: local priority must be 1 to 255")
	}
	if !cfg.Local.IsValid() {
		return nil, errors.New("coop: no local address")
	}
	cfg.Local = cfg.Local.Unmap()
	cfg.Version = cfg.Version.OrCurrent()
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.Dead <= 0 {
		cfg.Dead = DefaultDeadPeriods * cfg.Period
	}
	if cfg.Dead <= cfg.Period {
		return nil, fmt.Errorf("coop: dead interval %v must be longer than the announcement period %v", cfg.Dead, cfg.Period)
	}
	if cfg.ElectionWait <= 0 {
		cfg.ElectionWait = DefaultElectionWait
	}
	order, err := checkPeers(cfg.Local, cfg.Peers)
	if err != nil {
		return nil, err
	}
	e := &Elector{cfg: cfg, peers: map[netip.Addr]*peer{}, role: Secondary, order: order}
	for _, a := range order {
		e.peers[a] = &peer{PeerStatus: PeerStatus{Addr: a}}
	}
	e.cfg.Peers = slices.Clone(order)
	return e, nil
}

// checkPeers returns the peers sorted, or why they are not a valid list.
func checkPeers(local netip.Addr, peers []netip.Addr) ([]netip.Addr, error) {
	if len(peers) > MaxPeers {
		return nil, fmt.Errorf("coop: %d peers, at most %d", len(peers), MaxPeers)
	}
	var order []netip.Addr
	for _, a := range peers {
		a = a.Unmap()
		if !a.IsValid() {
			return nil, errors.New("coop: invalid peer address")
		}
		if a == local {
			return nil, fmt.Errorf("coop: peer %v is the local address", a)
		}
		if slices.Contains(order, a) {
			return nil, fmt.Errorf("coop: peer %v configured twice", a)
		}
		order = append(order, a)
	}
	slices.SortFunc(order, netip.Addr.Compare)
	return order, nil
}

// SetPeers replaces the configured peers (`peer address ipv4` added or
// removed): a removed peer's state is forgotten (COOP_KS_REMOVE; if it was
// the primary followed, an election follows), an added one is announced
// to asking for a reply (COOP_KS_ADD). The list is refused as New would.
func (e *Elector) SetPeers(peers []netip.Addr, now time.Time) (Result, error) {
	var res Result
	order, err := checkPeers(e.cfg.Local, peers)
	if err != nil {
		return res, err
	}
	for _, a := range e.order {
		if !slices.Contains(order, a) {
			delete(e.peers, a)
			res.Events = append(res.Events, PeerRemoved{Group: e.cfg.Group, Peer: a})
		}
	}
	e.order, e.cfg.Peers = order, slices.Clone(order)
	for _, a := range order {
		if e.peers[a] == nil {
			e.peers[a] = &peer{PeerStatus: PeerStatus{Addr: a}}
			res.Events = append(res.Events, PeerAdded{Group: e.cfg.Group, Peer: a})
			if e.started {
				e.announce(&res, a, true)
			}
		}
	}
	if !e.started {
		return res, nil
	}
	if e.role == Secondary && e.primary.IsValid() && e.peers[e.primary] == nil {
		e.previous, e.primary = e.primary, netip.Addr{}
	}
	e.decide(&res, now)
	return e.result(&res, now), nil
}

// Reconfigure changes the local priority and the timers (a reload; zero
// timers: the defaults), refused as New would. The new priority is
// announced at once and counts at the next election (no preemption).
func (e *Elector) Reconfigure(priority uint8, period, dead, wait time.Duration, now time.Time) (Result, error) {
	var res Result
	if priority == 0 {
		return res, errors.New("coop: local priority must be 1 to 255")
	}
	if period <= 0 {
		period = DefaultPeriod
	}
	if dead <= 0 {
		dead = DefaultDeadPeriods * period
	}
	if dead <= period {
		return res, fmt.Errorf("coop: dead interval %v must be longer than the announcement period %v", dead, period)
	}
	if wait <= 0 {
		wait = DefaultElectionWait
	}
	changed := priority != e.cfg.Priority || period != e.cfg.Period || dead != e.cfg.Dead
	e.cfg.Priority, e.cfg.Period, e.cfg.Dead, e.cfg.ElectionWait = priority, period, dead, wait
	if !e.started {
		return res, nil
	}
	if changed {
		e.announceAll(&res, now, false)
	}
	e.decide(&res, now)
	return e.result(&res, now), nil
}

// Role is this KS's role now: Primary, Secondary (following Primary()) or
// Electing (a secondary that follows no primary yet).
func (e *Elector) Role() Role {
	if e.role == Secondary && !e.primary.IsValid() {
		return Electing
	}
	return e.role
}

// Primary is the primary this KS follows, its own address when primary,
// or the zero Addr when it knows none.
func (e *Elector) Primary() netip.Addr { return e.primary }

// Stats returns the counters.
func (e *Elector) Stats() Stats { return e.stats }

// Config returns the configuration with the defaults filled in.
func (e *Elector) Config() Config { return e.cfg }

// Peers lists the configured peers in address order.
func (e *Elector) Peers() []PeerStatus {
	out := make([]PeerStatus, 0, len(e.order))
	for _, a := range e.order {
		out = append(out, e.peers[a].PeerStatus)
	}
	return out
}

// Start begins: this KS is a secondary that announces itself to every
// peer asking for replies and listens ElectionWait for a primary.
func (e *Elector) Start(now time.Time) Result {
	var res Result
	if e.started {
		return e.result(&res, now)
	}
	e.started = true
	for _, a := range e.order {
		res.Events = append(res.Events, PeerAdded{Group: e.cfg.Group, Peer: a})
	}
	e.waitUntil = now.Add(e.cfg.ElectionWait)
	e.announceAll(&res, now, true)
	e.decide(&res, now)
	return e.result(&res, now)
}

// Receive takes an announcement the owner authenticated as coming from
// the key server at from.
func (e *Elector) Receive(from netip.Addr, a Announcement, now time.Time) Result {
	var res Result
	from = from.Unmap()
	p := e.peers[from]
	switch {
	case !e.started:
		return res
	case p == nil:
		e.stats.Unknown++
		if e.lastUnknown.IsZero() || now.Sub(e.lastUnknown) >= e.cfg.Period {
			e.lastUnknown = now
			res.Events = append(res.Events, Unauthorized{Group: e.cfg.Group, Peer: from, Local: e.cfg.Local})
		}
		return e.result(&res, now)
	case a.Role != Primary && a.Role != Secondary && a.Role != Electing, a.Priority == 0:
		e.stats.Invalid++
		return e.result(&res, now)
	case a.Version.Major != e.cfg.Version.Major || a.Version.Minor != e.cfg.Version.Minor:
		e.stats.Incompatible++
		return e.result(&res, now)
	case a.Seq <= p.Seq:
		e.stats.Replayed++
		return e.result(&res, now)
	}
	e.stats.Accepted++
	e.expire(&res, now) // a peer silent too long is unreachable before this one counts
	wasReachable := p.Reachable
	p.Role, p.Priority, p.Version, p.Seq, p.LastHeard = a.Role, a.Priority, a.Version, a.Seq, now
	if !p.Reachable {
		p.Reachable = true
		res.Events = append(res.Events, PeerReachable{Group: e.cfg.Group, Peer: from})
	}
	res.Events = append(res.Events, Accepted{From: from, Ann: a})
	if (a.ReplyRequest || !wasReachable) && (p.lastReply.IsZero() || now.Sub(p.lastReply) >= replyGap) {
		p.lastReply = now
		e.announce(&res, from, false)
	}
	e.decide(&res, now)
	return e.result(&res, now)
}

// Session tells that a new KS-KS IKE SA with peer is up (the owner's
// phase-1 event): the sequence numbers with it restart at 1 both ways, and
// this KS announces itself to it asking for a reply. Not a configured
// peer: nothing.
func (e *Elector) Session(peer netip.Addr, now time.Time) Result {
	var res Result
	p := e.peers[peer.Unmap()]
	if !e.started || p == nil {
		return res
	}
	p.Seq, p.sent, p.lastReply = 0, 0, now
	e.announce(&res, p.Addr, true)
	return e.result(&res, now)
}

// Tick does what is due at now: periodic announcements, peers that went
// silent, the end of the startup wait, elections.
func (e *Elector) Tick(now time.Time) Result {
	var res Result
	if !e.started {
		return res
	}
	e.expire(&res, now)
	if !now.Before(e.nextAnnounce) {
		e.announceAll(&res, now, false)
	}
	e.decide(&res, now)
	return e.result(&res, now)
}

// Announce announces this KS to every peer now (the owner's state
// changed: a rekey's new keys go to the secondaries at once rather than
// at the next period); the period restarts.
func (e *Elector) Announce(now time.Time) Result {
	var res Result
	if !e.started {
		return res
	}
	e.announceAll(&res, now, false)
	return e.result(&res, now)
}

// Extra is one more announcement to peer, with its own sequence number,
// to carry more of the owner's data than one announcement holds (the
// parts of a member list); false when peer is not a configured peer, the
// elector has not started, or the SA's numbers are used up.
func (e *Elector) Extra(peer netip.Addr) (Send, bool) {
	var res Result
	p := e.peers[peer.Unmap()]
	if !e.started || p == nil {
		return Send{}, false
	}
	e.announce(&res, p.Addr, false)
	if len(res.Send) == 0 {
		return Send{}, false
	}
	return res.Send[0], true
}

// expire marks unreachable the peers silent for Dead.
func (e *Elector) expire(res *Result, now time.Time) {
	for _, a := range e.order {
		p := e.peers[a]
		if p.Reachable && now.Sub(p.LastHeard) >= e.cfg.Dead {
			p.Reachable = false
			res.Events = append(res.Events, PeerUnreachable{Group: e.cfg.Group, Peer: a})
		}
	}
}

// better reports whether (pa, a) wins an election over (pb, b).
func better(pa uint8, a netip.Addr, pb uint8, b netip.Addr) bool {
	if pa != pb {
		return pa > pb
	}
	return a.Compare(b) > 0
}

// bestPrimary is the reachable peer primary that wins over the others.
func (e *Elector) bestPrimary() *peer {
	var best *peer
	for _, a := range e.order {
		p := e.peers[a]
		if p.Reachable && p.Role == Primary && (best == nil || better(p.Priority, p.Addr, best.Priority, best.Addr)) {
			best = p
		}
	}
	return best
}

// decide applies the election to what is known at now.
func (e *Elector) decide(res *Result, now time.Time) {
	bp := e.bestPrimary()
	if e.role == Primary {
		if bp != nil && better(bp.Priority, bp.Addr, e.cfg.Priority, e.cfg.Local) {
			// Merge: another primary wins; this one steps down.
			e.become(res, now, Secondary, bp.Addr)
			res.Events = append(res.Events, Adopt{Group: e.cfg.Group, Primary: bp.Addr, Reason: "merge"})
		}
		return
	}
	if bp != nil {
		e.electing = false
		e.waitUntil = time.Time{}
		if e.primary != bp.Addr {
			prev := e.primary
			e.primary = bp.Addr
			res.Events = append(res.Events, Adopt{Group: e.cfg.Group, Primary: bp.Addr, Previous: prev, Reason: "new primary"})
		}
		return
	}
	if !e.waitUntil.IsZero() && now.Before(e.waitUntil) {
		return // starting: still listening for a primary
	}
	e.waitUntil = time.Time{}
	if !e.electing {
		e.electing = true
		e.electSince = now
		if e.primary.IsValid() {
			e.previous = e.primary
		}
		e.primary = netip.Addr{}
		e.stats.Elections++
		res.Events = append(res.Events, ElectionStarted{Group: e.cfg.Group, Previous: e.previous})
	}
	best := true
	for _, a := range e.order {
		p := e.peers[a]
		if p.Reachable && better(p.Priority, p.Addr, e.cfg.Priority, e.cfg.Local) {
			best = false
			break
		}
	}
	if best || now.Sub(e.electSince) >= e.cfg.Dead {
		e.become(res, now, Primary, e.cfg.Local)
	}
}

func (e *Elector) become(res *Result, now time.Time, r Role, primary netip.Addr) {
	prev := e.primary
	if !prev.IsValid() {
		prev = e.previous
	}
	from := e.Role()
	e.role, e.primary, e.electing = r, primary, false
	e.waitUntil = time.Time{}
	res.Events = append(res.Events, RoleChanged{Group: e.cfg.Group, Local: e.cfg.Local, From: from, To: r, Primary: primary, Previous: prev})
	e.announceAll(res, now, false)
}

func (e *Elector) announceAll(res *Result, now time.Time, reply bool) {
	for _, a := range e.order {
		e.announce(res, a, reply)
	}
	e.nextAnnounce = now.Add(e.cfg.Period)
}

func (e *Elector) announce(res *Result, to netip.Addr, reply bool) {
	p := e.peers[to]
	if p.sent == math.MaxUint32 {
		e.stats.Exhausted++ // the owner must rekey the SA (Session)
		return
	}
	p.sent++
	e.stats.Sent++
	res.Send = append(res.Send, Send{To: to, Ann: Announcement{
		Role: e.Role(), Priority: e.cfg.Priority, Version: e.cfg.Version, Seq: p.sent, ReplyRequest: reply,
	}})
}

// result fills in the next deadline.
func (e *Elector) result(res *Result, _ time.Time) Result {
	t := e.nextAnnounce
	earlier := func(d time.Time) {
		if !d.IsZero() && (t.IsZero() || d.Before(t)) {
			t = d
		}
	}
	earlier(e.waitUntil)
	if e.electing {
		earlier(e.electSince.Add(e.cfg.Dead))
	}
	for _, a := range e.order {
		if p := e.peers[a]; p.Reachable {
			earlier(p.LastHeard.Add(e.cfg.Dead))
		}
	}
	res.Timer = t
	return *res
}
