package ike

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Limits protect a responder from floods of message 1 sent from spoofed
// addresses: each costs a table entry until the sender proves it receives
// our answers by returning our cookie in message 3, which is also when the
// expensive Diffie-Hellman work starts.
type Limits struct {
	MaxHalfOpen        int // responder SAs still waiting for message 3; default 4096
	MaxHalfOpenPerPeer int // per source address; default 16
}

func (l Limits) withDefaults() Limits {
	if l.MaxHalfOpen == 0 {
		l.MaxHalfOpen = 4096
	}
	if l.MaxHalfOpenPerPeer == 0 {
		l.MaxHalfOpenPerPeer = 16
	}
	return l
}

// Stats counts what an Endpoint dropped and why.
type Stats struct {
	Malformed           uint64 // not an ISAKMP v1 message at all
	UnknownSA           uint64 // cookies of no SA we hold
	HalfOpenEvicted     uint64 // half-open SAs evicted by newer ones: global bound
	HalfOpenPeerEvicted uint64 // half-open SAs evicted by newer ones from the same address
	HalfOpenExpired     uint64 // half-open SAs whose peer never sent message 3
	HalfOpenRefused     uint64 // message 1 refused by the per-peer limit (no longer happens: the oldest is evicted)
	MM1Rejected         uint64 // message 1 that created no SA: malformed, encrypted or refused
	RefusalSent         uint64 // unprotected refusals (NO-PROPOSAL-CHOSEN, ...) sent for message 1
	RefusalSuppressed   uint64 // unprotected refusals not sent: rate bound
	InvalidCookieSent   uint64 // INVALID-COOKIE sent for cookies of no SA we hold
	InvalidCookieSupp   uint64 // INVALID-COOKIE not sent: rate bound
	CookieCollision     uint64 // new SA whose cookie pair is held already: dropped, the old one kept
	EstablishedIgnored  uint64 // unprotected or unauthenticated messages ignored by an established SA
	PeerLostState       uint64 // unprotected INVALID-COOKIE received for an established SA
	InitialContactDrop  uint64 // SAs dropped (and deleted) on the same identity's INITIAL-CONTACT
	Dropped             uint64 // ignored by an SA (stale, duplicate, bad)
}

// Counter is one named counter of Stats, for show commands and metrics.
type Counter struct {
	Name  string // snake_case, stable: `| json` and metrics use it
	Help  string
	Value uint64
}

// Counters lists every counter of s in a stable order. A counter added to
// Stats is added here too, so that every drop reason is visible (SPEC S5).
func (s Stats) Counters() []Counter {
	return []Counter{
		{"malformed", "not an ISAKMP v1 message", s.Malformed},
		{"unknown_sa", "cookies of no SA held", s.UnknownSA},
		{"half_open_evicted", "half-open SAs evicted by newer ones (global limit)", s.HalfOpenEvicted},
		{"half_open_peer_evicted", "half-open SAs evicted by newer ones from the same address", s.HalfOpenPeerEvicted},
		{"half_open_expired", "half-open SAs whose peer never sent message 3", s.HalfOpenExpired},
		{"half_open_refused", "message 1 refused by the per-peer limit", s.HalfOpenRefused},
		{"mm1_rejected", "message 1 that created no SA: malformed, encrypted or refused", s.MM1Rejected},
		{"refusal_sent", "unprotected refusals of message 1 sent", s.RefusalSent},
		{"refusal_suppressed", "unprotected refusals of message 1 not sent (rate limit)", s.RefusalSuppressed},
		{"invalid_cookie_sent", "INVALID-COOKIE sent for cookies of no SA held", s.InvalidCookieSent},
		{"invalid_cookie_suppressed", "INVALID-COOKIE not sent (rate limit)", s.InvalidCookieSupp},
		{"cookie_collision", "new SA with the cookies of one held: dropped", s.CookieCollision},
		{"established_ignored", "unprotected or unauthenticated messages ignored by an established SA", s.EstablishedIgnored},
		{"peer_lost_state", "unprotected INVALID-COOKIE received for an established SA", s.PeerLostState},
		{"initial_contact_dropped", "SAs deleted on the same identity's INITIAL-CONTACT", s.InitialContactDrop},
		{"dropped", "ignored by an SA: stale, duplicate or bad", s.Dropped},
	}
}

// Packet is a datagram to send.
type Packet struct {
	To   netip.AddrPort
	Data []byte
}

// SAEvent is an event of one SA.
type SAEvent struct {
	SA    *SA
	Event Event
}

// Output is what the owner of an Endpoint sends and learns after a step.
type Output struct {
	Send   []Packet
	Events []SAEvent
}

type pair struct{ i, r isakmp.Cookie }

type halfKey struct {
	icky isakmp.Cookie
	peer netip.AddrPort
}

// Endpoint holds the phase-1 SAs of one local address: it routes datagrams
// by cookies, creates responder SAs for message 1 within Limits, and runs
// every SA's timers from one heap. It is sans-IO and owned by one
// goroutine.
type Endpoint struct {
	cfg    *Config
	local  netip.AddrPort
	limits Limits
	secret [32]byte

	sas      map[pair]*SA
	pending  map[halfKey]*SA // initiators before message 2, responders before message 3
	perPeer  map[netip.Addr]int
	halfOpen []*SA // responders in MM2_SENT, oldest first
	timers   timerHeap
	gen      map[*SA]uint64
	Stats    Stats
}

// NewEndpoint returns an Endpoint for local.
func NewEndpoint(cfg *Config, local netip.AddrPort, limits Limits) (*Endpoint, error) {
	e := &Endpoint{cfg: cfg, local: local, limits: limits.withDefaults(), sas: map[pair]*SA{},
		pending: map[halfKey]*SA{}, perPeer: map[netip.Addr]int{}, gen: map[*SA]uint64{}}
	if _, err := io.ReadFull(cfg.rand(), e.secret[:]); err != nil {
		return nil, fmt.Errorf("ike: cookie secret: %w", err)
	}
	return e, nil
}

// SAs returns the established SAs.
func (e *Endpoint) SAs() []*SA {
	var out []*SA
	for _, sa := range e.sas {
		if sa.state == StateEstablished {
			out = append(out, sa)
		}
	}
	return out
}

// Lookup returns the SA with the given cookies.
func (e *Endpoint) Lookup(icky, rcky isakmp.Cookie) *SA { return e.sas[pair{icky, rcky}] }

// Initiate starts main mode toward peer.
func (e *Endpoint) Initiate(peer netip.AddrPort, now time.Time) (*SA, Output, error) {
	sa, r, err := NewInitiator(e.cfg, e.local, peer, now)
	if err != nil {
		return nil, Output{}, err
	}
	e.pending[halfKey{sa.icky, peer}] = sa
	return sa, e.apply(sa, r), nil
}

// responderCookie binds our cookie to the initiator's cookie and address
// (RFC 2408 §2.5.3): a message 3 from another address cannot use it.
func (e *Endpoint) responderCookie(icky isakmp.Cookie, peer netip.AddrPort) isakmp.Cookie {
	m := hmac.New(sha256.New, e.secret[:])
	m.Write(icky[:])
	b, _ := peer.MarshalBinary()
	m.Write(b)
	var c isakmp.Cookie
	copy(c[:], m.Sum(nil))
	return c
}

// Handle processes one datagram received from `from`.
func (e *Endpoint) Handle(from netip.AddrPort, pkt []byte, now time.Time) Output {
	h, err := isakmp.ParseHeader(pkt)
	if err != nil {
		e.Stats.Malformed++
		return Output{}
	}
	var zero isakmp.Cookie
	if sa := e.sas[pair{h.InitiatorCookie, h.ResponderCookie}]; sa != nil {
		if sa.peer != from {
			e.Stats.UnknownSA++ // a cookie pair used from another address
			return Output{}
		}
		return e.step(sa, sa.Handle(pkt, now))
	}
	if h.ResponderCookie == zero {
		// Message 1, or a retransmission of it.
		if sa := e.pending[halfKey{h.InitiatorCookie, from}]; sa != nil && !sa.initiator {
			return e.step(sa, sa.Handle(pkt, now))
		}
		if h.Exchange != isakmp.ExchangeIdentityProt || h.NextPayload != isakmp.PayloadSA {
			e.Stats.UnknownSA++
			return Output{}
		}
		return e.newResponder(from, h.InitiatorCookie, pkt, now)
	}
	// Message 2: the responder chose its cookie.
	if sa := e.pending[halfKey{h.InitiatorCookie, from}]; sa != nil && sa.initiator {
		out := e.step(sa, sa.Handle(pkt, now))
		if sa.rcky != zero {
			delete(e.pending, halfKey{sa.icky, from})
			e.sas[pair{sa.icky, sa.rcky}] = sa
		}
		return out
	}
	e.Stats.UnknownSA++
	return Output{}
}

func (e *Endpoint) newResponder(from netip.AddrPort, icky isakmp.Cookie, pkt []byte, now time.Time) Output {
	if e.perPeer[from.Addr()] >= e.limits.MaxHalfOpenPerPeer {
		e.Stats.HalfOpenRefused++
		return Output{}
	}
	if len(e.halfOpen) >= e.limits.MaxHalfOpen {
		// Evict the oldest SA that never got past message 2: a spoofed
		// source never answers, a real peer does within a round trip.
		e.Stats.HalfOpenEvicted++
		e.remove(e.halfOpen[0])
	}
	sa := newResponder(e.cfg, e.local, from, icky, e.responderCookie(icky, from), now)
	e.pending[halfKey{icky, from}] = sa
	e.sas[pair{sa.icky, sa.rcky}] = sa
	e.perPeer[from.Addr()]++
	e.halfOpen = append(e.halfOpen, sa)
	return e.step(sa, sa.Handle(pkt, now))
}

// step applies an SA's Result and keeps the half-open bookkeeping.
func (e *Endpoint) step(sa *SA, r Result) Output {
	out := e.apply(sa, r)
	for _, ev := range r.Events {
		if _, ok := ev.(InitialContact); ok {
			e.dropOlder(sa)
		}
	}
	if !sa.initiator && sa.state != StateMM2Sent {
		e.leaveHalfOpen(sa)
	}
	if sa.state == StateDead {
		e.remove(sa)
	}
	return out
}

// dropOlder removes every other SA with sa's peer: after INITIAL-CONTACT
// they belong to the peer's previous life and no Delete is owed.
func (e *Endpoint) dropOlder(sa *SA) {
	for _, o := range e.sas {
		if o != sa && o.peer.Addr() == sa.peer.Addr() {
			o.log.Info("dropping phase-1 SA: peer sent INITIAL-CONTACT on a new one")
			e.remove(o)
		}
	}
}

func (e *Endpoint) leaveHalfOpen(sa *SA) {
	for i, h := range e.halfOpen {
		if h == sa {
			e.halfOpen = append(e.halfOpen[:i], e.halfOpen[i+1:]...)
			if e.perPeer[sa.peer.Addr()]--; e.perPeer[sa.peer.Addr()] <= 0 {
				delete(e.perPeer, sa.peer.Addr())
			}
			delete(e.pending, halfKey{sa.icky, sa.peer})
			return
		}
	}
}

func (e *Endpoint) remove(sa *SA) {
	e.leaveHalfOpen(sa)
	delete(e.pending, halfKey{sa.icky, sa.peer})
	delete(e.sas, pair{sa.icky, sa.rcky})
	delete(e.gen, sa)
	sa.state = StateDead
}

func (e *Endpoint) apply(sa *SA, r Result) Output {
	var out Output
	for _, d := range r.Send {
		out.Send = append(out.Send, Packet{To: sa.peer, Data: d})
	}
	for _, ev := range r.Events {
		out.Events = append(out.Events, SAEvent{SA: sa, Event: ev})
	}
	e.Stats.Dropped += uint64(sa.Dropped)
	sa.Dropped = 0
	if !r.Timer.IsZero() && sa.state != StateDead {
		e.gen[sa]++
		heap.Push(&e.timers, timerEntry{at: r.Timer, sa: sa, gen: e.gen[sa]})
	}
	return out
}

// NextTimer is when Tick should run next (zero: no timer).
func (e *Endpoint) NextTimer() time.Time {
	for len(e.timers) > 0 {
		t := e.timers[0]
		if e.gen[t.sa] == t.gen {
			return t.at
		}
		heap.Pop(&e.timers) // superseded
	}
	return time.Time{}
}

// Tick runs the timers that are due.
func (e *Endpoint) Tick(now time.Time) Output {
	var out Output
	for len(e.timers) > 0 && !e.timers[0].at.After(now) {
		t := heap.Pop(&e.timers).(timerEntry)
		if e.gen[t.sa] != t.gen {
			continue
		}
		o := e.step(t.sa, t.sa.Timeout(now))
		out.Send = append(out.Send, o.Send...)
		out.Events = append(out.Events, o.Events...)
	}
	return out
}

// Delete deletes an established SA and returns the Delete for the peer.
func (e *Endpoint) Delete(sa *SA, now time.Time) (Output, error) {
	if e.sas[pair{sa.icky, sa.rcky}] != sa {
		return Output{}, errors.New("ike: SA not held by this endpoint")
	}
	return e.step(sa, sa.Delete(now)), nil
}

// DPD sends an R-U-THERE on an established SA (RFC 3706).
func (e *Endpoint) DPD(sa *SA, now time.Time) (Output, error) {
	r, err := sa.DPD(now)
	if err != nil {
		return Output{}, err
	}
	return e.step(sa, r), nil
}

type timerEntry struct {
	at  time.Time
	sa  *SA
	gen uint64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Exchange delivers out (produced by `from`, one of a and b) to the other
// endpoint and every answer back and forth, in memory and at one instant,
// until neither has anything to send; it returns the events both saw.
// Tests and benchmarks use it to run main mode without sockets.
func Exchange(a, b *Endpoint, from *Endpoint, out Output, now time.Time) []SAEvent {
	events := append([]SAEvent(nil), out.Events...)
	for len(out.Send) > 0 {
		to := b
		if from == b {
			to = a
		}
		var next Output
		for _, p := range out.Send {
			o := to.Handle(from.local, p.Data, now)
			next.Send = append(next.Send, o.Send...)
			events = append(events, o.Events...)
		}
		out, from = next, to
	}
	return events
}
