package ikev2

import (
	"container/heap"
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ratelog"
)

// Limits protect a responder from floods of IKE_SA_INIT requests, spoofed
// or not. Each answered request costs a half-open SA (and a DH
// computation) until IKE_AUTH proves the peer holds the keys. Half-open
// SAs are bounded per address and in all, the oldest evicted to make room,
// and expire after HalfOpenTimeout. Past CookieThreshold half-open SAs,
// requests without a valid COOKIE get one (RFC 7296 §2.6) and no state: a
// spoofed source never returns it.
type Limits struct {
	MaxHalfOpen        int           // default 4096
	MaxHalfOpenPerPeer int           // per source address; default 16
	HalfOpenTimeout    time.Duration // default 30 s
	// CookieThreshold is the count of half-open SAs from which cookies are
	// demanded; default MaxHalfOpen/4; negative: always.
	CookieThreshold int
	// ReplyRate and ReplyBurst bound the unprotected answers (refusals,
	// COOKIE) per second and at once; default 10 and 20 (cookies: 10 times
	// that).
	ReplyRate  float64
	ReplyBurst int
}

func (l Limits) withDefaults() Limits {
	if l.MaxHalfOpen <= 0 {
		l.MaxHalfOpen = 4096
	}
	if l.MaxHalfOpenPerPeer <= 0 {
		l.MaxHalfOpenPerPeer = 16
	}
	if l.HalfOpenTimeout <= 0 {
		l.HalfOpenTimeout = 30 * time.Second
	}
	if l.CookieThreshold == 0 {
		l.CookieThreshold = l.MaxHalfOpen / 4
	}
	if l.ReplyRate <= 0 {
		l.ReplyRate = 10
	}
	if l.ReplyBurst <= 0 {
		l.ReplyBurst = 20
	}
	return l
}

type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func (b *tokenBucket) take(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens, b.last = b.burst, now
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Stats counts what an Endpoint dropped and why (SPEC S5).
type Stats struct {
	Malformed           uint64 // not an IKEv2 message
	UnknownSA           uint64 // SPIs of no SA we hold, or from another address
	InitRejected        uint64 // IKE_SA_INIT requests that created no SA: malformed or refused
	RefusalSent         uint64 // unprotected refusals (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, ...) sent
	RefusalSuppressed   uint64 // refusals not sent: rate bound
	CookieSent          uint64 // COOKIE answers sent (§2.6)
	CookieSuppressed    uint64 // COOKIE answers not sent: rate bound
	CookieInvalid       uint64 // IKE_SA_INIT requests with a COOKIE that was not ours
	HalfOpenEvicted     uint64 // half-open SAs evicted by newer ones: global bound
	HalfOpenPeerEvicted uint64 // half-open SAs evicted by newer ones from the same address
	HalfOpenExpired     uint64 // half-open SAs whose peer never completed IKE_AUTH
	SPICollision        uint64 // a new SA drew an SPI in use: dropped
	Dropped             uint64 // ignored by an SA: stale, duplicate, unverifiable or malformed
	Resent              uint64 // stored responses sent again for retransmitted requests
	AuthFailed          uint64 // IKE_AUTH exchanges that failed authentication
}

// Counter is one named counter of Stats.
type Counter struct {
	Name  string
	Help  string
	Value uint64
}

// Counters lists every counter of s in a stable order.
func (s Stats) Counters() []Counter {
	return []Counter{
		{"malformed", "not an IKEv2 message", s.Malformed},
		{"unknown_sa", "SPIs of no SA held, or from another address", s.UnknownSA},
		{"init_rejected", "IKE_SA_INIT requests that created no SA", s.InitRejected},
		{"refusal_sent", "unprotected IKE_SA_INIT refusals sent", s.RefusalSent},
		{"refusal_suppressed", "unprotected IKE_SA_INIT refusals not sent (rate limit)", s.RefusalSuppressed},
		{"cookie_sent", "COOKIE answers sent", s.CookieSent},
		{"cookie_suppressed", "COOKIE answers not sent (rate limit)", s.CookieSuppressed},
		{"cookie_invalid", "IKE_SA_INIT requests with a COOKIE not ours", s.CookieInvalid},
		{"half_open_evicted", "half-open IKE SAs evicted by newer ones (global limit)", s.HalfOpenEvicted},
		{"half_open_peer_evicted", "half-open IKE SAs evicted by newer ones from the same address", s.HalfOpenPeerEvicted},
		{"half_open_expired", "half-open IKE SAs whose peer never completed IKE_AUTH", s.HalfOpenExpired},
		{"spi_collision", "new IKE SAs whose SPI was in use: dropped", s.SPICollision},
		{"dropped", "ignored by an IKE SA: stale, duplicate, unverifiable or malformed", s.Dropped},
		{"resent", "stored responses sent again for retransmitted requests", s.Resent},
		{"auth_failed", "IKE_AUTH exchanges that failed authentication", s.AuthFailed},
	}
}

// Packet is a datagram to send.
type Packet struct {
	To   netip.AddrPort
	Data []byte
	// NATT: send from the local NAT-T port (4500) with the non-ESP
	// marker (RFC 3948 §2.2) before Data.
	NATT bool
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

type halfKey struct {
	spii wire.SPI
	peer netip.AddrPort
}

// Endpoint holds the IKE SAs of one local address: it routes datagrams by
// our SPI, creates responder SAs for IKE_SA_INIT within Limits, and runs
// every SA's timers from one heap (stale entries skipped by generation).
// It is sans-IO and owned by one goroutine.
//
// Invariants (SPEC S1, S2): a responder SA enters the tables only once it
// answered IKE_SA_INIT; every SA in the tables has a timer; half-open SAs
// are bounded per address and in all; an entry of e.sas is never
// overwritten; only a message that verified under an SA's keys changes an
// established SA.
type Endpoint struct {
	cfg    *Config
	local  netip.AddrPort
	limits Limits
	secret [32]byte

	sas      map[wire.SPI]*SA // by our SPI
	pending  map[halfKey]*SA  // responders by the initiator's SPI and address, for retransmitted IKE_SA_INIT
	halfOpen *list.List
	perPeer  map[netip.Addr]*list.List
	elems    map[*SA][2]*list.Element
	timers   timerHeap
	gen      map[*SA]uint64

	refusals, cookies tokenBucket
	unauth            *slog.Logger

	Stats Stats
}

// NewEndpoint returns an Endpoint for local.
func NewEndpoint(cfg *Config, local netip.AddrPort, limits Limits) (*Endpoint, error) {
	for _, s := range cfg.suites() {
		if err := s.Validate(); err != nil {
			return nil, err
		}
	}
	limits = limits.withDefaults()
	e := &Endpoint{cfg: cfg, local: local, limits: limits, sas: map[wire.SPI]*SA{},
		pending: map[halfKey]*SA{}, halfOpen: list.New(), perPeer: map[netip.Addr]*list.List{},
		elems: map[*SA][2]*list.Element{}, gen: map[*SA]uint64{},
		refusals: tokenBucket{rate: limits.ReplyRate, burst: float64(limits.ReplyBurst)},
		cookies:  tokenBucket{rate: 10 * limits.ReplyRate, burst: 10 * float64(limits.ReplyBurst)},
		unauth:   slog.New(ratelog.New(cfg.logger().Handler(), ratelog.Options{}))}
	if _, err := io.ReadFull(cfg.rand(), e.secret[:]); err != nil {
		return nil, fmt.Errorf("ikev2: cookie secret: %w", err)
	}
	return e, nil
}

// Local is the endpoint's address.
func (e *Endpoint) Local() netip.AddrPort { return e.local }

// LogSuppressed returns how many log records caused by unauthenticated
// input were suppressed by the rate limiter.
func (e *Endpoint) LogSuppressed() uint64 {
	if h, ok := e.unauth.Handler().(*ratelog.Handler); ok {
		return h.Suppressed()
	}
	return 0
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

// HalfOpen is the number of half-open responder SAs.
func (e *Endpoint) HalfOpen() int { return e.halfOpen.Len() }

// Initiate starts an IKE SA toward peer.
func (e *Endpoint) Initiate(peer netip.AddrPort, now time.Time) (*SA, Output, error) {
	sa, r, err := NewInitiator(e.cfg, e.local, peer, now)
	if err != nil {
		return nil, Output{}, err
	}
	if e.sas[sa.spii] != nil {
		return nil, Output{}, errors.New("ikev2: initiator SPI already in use")
	}
	sa.log = e.unauth.With("peer", peer.String(), "role", "initiator")
	e.sas[sa.spii] = sa
	return sa, e.apply(sa, r), nil
}

// InitiateWith is Initiate with authRequest in place of
// Config.AuthRequest for this SA (G-IKEv2: each group's IDg in its own
// GSA_AUTH).
func (e *Endpoint) InitiateWith(peer netip.AddrPort, authRequest []wire.Payload, now time.Time) (*SA, Output, error) {
	cfg := *e.cfg
	cfg.AuthRequest = authRequest
	sa, r, err := NewInitiator(&cfg, e.local, peer, now)
	if err != nil {
		return nil, Output{}, err
	}
	if e.sas[sa.spii] != nil {
		return nil, Output{}, errors.New("ikev2: initiator SPI already in use")
	}
	sa.log = e.unauth.With("peer", peer.String(), "role", "initiator")
	e.sas[sa.spii] = sa
	return sa, e.apply(sa, r), nil
}

// Handle processes one datagram received from `from`.
func (e *Endpoint) Handle(from netip.AddrPort, pkt []byte, now time.Time) Output {
	h, err := wire.ParseHeader(pkt)
	if err != nil || int(h.Length) != len(pkt) {
		e.Stats.Malformed++
		return Output{}
	}
	var zero wire.SPI
	if !h.IsInitiator() {
		// From the original responder: our SPI is the initiator's.
		sa := e.sas[h.SPIi]
		if sa == nil || !sa.initiator || !e.fromPeer(sa, from) || (sa.spir != zero && h.SPIr != sa.spir) {
			e.Stats.UnknownSA++
			return Output{}
		}
		return e.step(sa, e.handle(sa, from, pkt, now))
	}
	if h.SPIr == zero {
		if h.IsResponse() || h.Exchange != wire.ExchangeIKESAInit || h.MessageID != 0 {
			e.Stats.UnknownSA++
			return Output{}
		}
		if sa := e.pending[halfKey{h.SPIi, from}]; sa != nil {
			return e.step(sa, sa.Handle(pkt, now)) // a retransmission: the stored response
		}
		return e.newResponder(from, h, pkt, now)
	}
	sa := e.sas[h.SPIr]
	if sa == nil || sa.initiator || !e.fromPeer(sa, from) || sa.spii != h.SPIi {
		e.Stats.UnknownSA++
		return Output{}
	}
	return e.step(sa, e.handle(sa, from, pkt, now))
}

// fromPeer reports whether a datagram from `from` may be sa's: from its
// peer's address, or, with NAT traversal, from the same host's port 4500
// (the SA follows it only once a message from there authenticates).
func (e *Endpoint) fromPeer(sa *SA, from netip.AddrPort) bool {
	return sa.peer == from || (e.cfg.NATT && from.Port() == NATTPort && from.Addr() == sa.peer.Addr())
}

func (e *Endpoint) handle(sa *SA, from netip.AddrPort, pkt []byte, now time.Time) Result {
	sa.from = from
	r := sa.Handle(pkt, now)
	sa.from = netip.AddrPort{}
	return r
}

// cookie is our COOKIE for an initiator (§2.6): a version octet and
// HMAC-SHA-256(secret, Ni | IPi | SPIi), cut to 16 octets.
func (e *Endpoint) cookie(ni []byte, from netip.AddrPort, spii wire.SPI) []byte {
	m := hmac.New(sha256.New, e.secret[:])
	m.Write(ni)
	a, _ := from.Addr().MarshalBinary()
	m.Write(a)
	m.Write(spii[:])
	return append([]byte{1}, m.Sum(nil)[:16]...)
}

// stateless builds an unprotected IKE_SA_INIT response holding one
// notification, with no responder SPI (§2.6, §1.3).
func stateless(h wire.Header, n *wire.Notify) []byte {
	m := &wire.Message{Header: wire.Header{SPIi: h.SPIi, Exchange: wire.ExchangeIKESAInit, Flags: wire.FlagResponse},
		Payloads: []wire.Payload{n}}
	b, _ := m.Marshal()
	return b
}

// newResponder answers an IKE_SA_INIT request. The SA enters the tables
// only if it answered; input that did not complete leaves nothing behind.
func (e *Endpoint) newResponder(from netip.AddrPort, h wire.Header, pkt []byte, now time.Time) Output {
	m, err := wire.Parse(pkt)
	if err != nil {
		e.Stats.Malformed++
		return Output{}
	}
	if e.limits.CookieThreshold < 0 || e.halfOpen.Len() >= e.limits.CookieThreshold {
		ni, _ := wire.Find(m.Payloads, wire.PayloadNonce).(*wire.Nonce)
		if ni == nil {
			e.Stats.InitRejected++
			return Output{}
		}
		want := e.cookie(ni.Data, from, h.SPIi)
		var got []byte
		if ns := wire.Notifies(m.Payloads); len(ns) > 0 && ns[0].NotifyType == wire.NotifyCookie {
			got = ns[0].Data // §2.6: the COOKIE is the first payload
		}
		if !hmac.Equal(got, want) {
			if got != nil {
				e.Stats.CookieInvalid++
			}
			if !e.cookies.take(now) {
				e.Stats.CookieSuppressed++
				return Output{}
			}
			e.Stats.CookieSent++
			return Output{Send: []Packet{{To: from, Data: stateless(h, &wire.Notify{NotifyType: wire.NotifyCookie, Data: want})}}}
		}
	}
	sa := &SA{cfg: e.cfg, initiator: false, local: e.local, peer: from, halfFrom: from, spii: h.SPIi,
		halfOpenTTL: e.limits.HalfOpenTimeout}
	sa.log = e.unauth.With("peer", from.String(), "role", "responder")
	spi, err := sa.randBytes(8)
	if err != nil {
		return Output{}
	}
	spi[0] |= 1
	copy(sa.spir[:], spi)
	if e.sas[sa.spir] != nil {
		e.Stats.SPICollision++
		return Output{}
	}
	r, err := sa.onInitRequest(m, pkt, now)
	if err != nil {
		e.Stats.InitRejected++
		var ie *initError
		if !errors.As(err, &ie) {
			return Output{}
		}
		sa.log.Info("IKE_SA_INIT refused", "err", ie.err)
		if !e.refusals.take(now) {
			e.Stats.RefusalSuppressed++
			return Output{}
		}
		e.Stats.RefusalSent++
		return Output{Send: []Packet{{To: from, Data: stateless(h, &wire.Notify{NotifyType: ie.notify, Data: ie.data})}}}
	}
	if l := e.perPeer[from.Addr()]; l != nil && l.Len() >= e.limits.MaxHalfOpenPerPeer {
		e.Stats.HalfOpenPeerEvicted++
		e.remove(l.Front().Value.(*SA))
	} else if e.halfOpen.Len() >= e.limits.MaxHalfOpen {
		e.Stats.HalfOpenEvicted++
		e.remove(e.halfOpen.Front().Value.(*SA))
	}
	e.sas[sa.spir] = sa
	e.pending[halfKey{sa.spii, from}] = sa
	l := e.perPeer[from.Addr()]
	if l == nil {
		l = list.New()
		e.perPeer[from.Addr()] = l
	}
	e.elems[sa] = [2]*list.Element{e.halfOpen.PushBack(sa), l.PushBack(sa)}
	return e.apply(sa, r)
}

// step applies an SA's Result and keeps the half-open bookkeeping.
func (e *Endpoint) step(sa *SA, r Result) Output {
	out := e.apply(sa, r)
	for _, ev := range r.Events {
		if f, ok := ev.(Failed); ok && errors.Is(f.Err, ike.ErrAuth) {
			e.Stats.AuthFailed++
		}
	}
	if sa.state != StateHalfOpen {
		e.leaveHalfOpen(sa)
	}
	if sa.state == StateDead {
		e.remove(sa)
	}
	return out
}

func (e *Endpoint) leaveHalfOpen(sa *SA) {
	els, ok := e.elems[sa]
	if !ok {
		return
	}
	delete(e.elems, sa)
	e.halfOpen.Remove(els[0])
	if l := e.perPeer[sa.halfFrom.Addr()]; l != nil {
		l.Remove(els[1])
		if l.Len() == 0 {
			delete(e.perPeer, sa.halfFrom.Addr())
		}
	}
	if k := (halfKey{sa.spii, sa.halfFrom}); e.pending[k] == sa {
		delete(e.pending, k)
	}
}

// remove forgets sa.
func (e *Endpoint) remove(sa *SA) {
	e.leaveHalfOpen(sa)
	if k := (halfKey{sa.spii, sa.halfFrom}); e.pending[k] == sa {
		delete(e.pending, k)
	}
	if k := sa.ourSPI(); e.sas[k] == sa {
		delete(e.sas, k)
	}
	delete(e.gen, sa)
	sa.state = StateDead
}

func (e *Endpoint) apply(sa *SA, r Result) Output {
	var out Output
	for _, d := range r.Send {
		out.Send = append(out.Send, Packet{To: sa.peer, Data: d, NATT: sa.floated})
	}
	for _, ev := range r.Events {
		out.Events = append(out.Events, SAEvent{SA: sa, Event: ev})
	}
	e.Stats.Dropped += uint64(sa.Dropped)
	e.Stats.Resent += uint64(sa.resent)
	sa.Dropped, sa.resent = 0, 0
	if !r.Timer.IsZero() && sa.state != StateDead {
		e.gen[sa]++
		heap.Push(&e.timers, timerEntry{at: r.Timer, sa: sa, gen: e.gen[sa]})
		if len(e.timers) > 2*len(e.gen)+64 {
			e.compactTimers()
		}
	}
	return out
}

func (e *Endpoint) compactTimers() {
	live := e.timers[:0]
	for _, t := range e.timers {
		if e.gen[t.sa] == t.gen {
			live = append(live, t)
		}
	}
	clear(e.timers[len(live):])
	e.timers = live
	heap.Init(&e.timers)
}

// NextTimer is when Tick should run next (zero: no timer).
func (e *Endpoint) NextTimer() time.Time {
	for len(e.timers) > 0 {
		t := e.timers[0]
		if e.gen[t.sa] == t.gen {
			return t.at
		}
		heap.Pop(&e.timers)
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
		halfOpen := t.sa.state == StateHalfOpen
		o := e.step(t.sa, t.sa.Timeout(now))
		if halfOpen && t.sa.state == StateDead {
			e.Stats.HalfOpenExpired++
		}
		out.Send = append(out.Send, o.Send...)
		out.Events = append(out.Events, o.Events...)
	}
	return out
}

func (e *Endpoint) held(sa *SA) error {
	if e.sas[sa.ourSPI()] != sa {
		return errors.New("ikev2: SA not held by this endpoint")
	}
	return nil
}

// Delete deletes an established SA: the INFORMATIONAL Delete goes out and
// Deleted follows its answer (or the end of its retransmissions).
func (e *Endpoint) Delete(sa *SA, now time.Time) (Output, error) {
	if err := e.held(sa); err != nil {
		return Output{}, err
	}
	r, err := sa.Delete(now)
	if err != nil {
		return Output{}, err
	}
	return e.step(sa, r), nil
}

// Liveness sends an empty INFORMATIONAL request on an established SA.
func (e *Endpoint) Liveness(sa *SA, now time.Time) (Output, error) {
	if err := e.held(sa); err != nil {
		return Output{}, err
	}
	r, err := sa.Liveness(now)
	if err != nil {
		return Output{}, err
	}
	return e.step(sa, r), nil
}

// Request sends a request of another exchange on an established SA (see
// SA.Request).
func (e *Endpoint) Request(sa *SA, exch wire.ExchangeType, ps []wire.Payload, now time.Time) (Output, error) {
	if err := e.held(sa); err != nil {
		return Output{}, err
	}
	r, err := sa.Request(exch, ps, now)
	if err != nil {
		return Output{}, err
	}
	return e.step(sa, r), nil
}

// Respond answers the last Request event of sa (see SA.Respond).
func (e *Endpoint) Respond(sa *SA, ps []wire.Payload, now time.Time) (Output, error) {
	if err := e.held(sa); err != nil {
		return Output{}, err
	}
	r, err := sa.Respond(ps, now)
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
