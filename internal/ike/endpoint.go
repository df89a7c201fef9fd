package ike

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/ratelog"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Limits protect a responder from floods of message 1 sent from spoofed
// addresses: each costs a table entry until the sender proves it receives
// our answers by returning our cookie in message 3, which is also when the
// expensive Diffie-Hellman work starts. An SA waiting for message 3 is
// never refused for lack of room: the oldest such SA of its address (or,
// at the global bound, the oldest of all) makes room, so a spoofer
// flooding from a member's own address delays the member by at most the
// round trip it needs to answer message 2 before the flood has sent
// MaxHalfOpenPerPeer more (SPEC S3). An SA past message 3 is not evicted
// by a message 1: it stays half-open, within its address's
// MaxHalfOpenPerPeer, until message 5 authenticates its peer, so that one
// address that stops after message 3 costs a bounded number of
// agreements (S1); a message 1 of an address whose half-open SAs are all
// past message 3 is dropped. Only what receives at the address (its
// owner, a host behind the same NAT, an on-path observer) can bring that
// about.
type Limits struct {
	MaxHalfOpen int // responder SAs still waiting for message 3; default 4096
	// MaxKeyed bounds the responder SAs past message 3 whose message 5
	// has not authenticated the peer yet: each cost us a key pair and a
	// Diffie-Hellman agreement. At the bound the oldest is evicted.
	// Default 32768 (about 1 KB each): more than a key server of this
	// kind makes agreements in the seconds a registration storm's message
	// 5s may wait in its socket (16 MiB, read at ~20,000 datagrams a
	// second), so that no attacker short of a key server's own rate
	// evicts a member's before its message 5 is read.
	MaxKeyed int
	// MaxHalfOpenPerPeer bounds one source address's responder SAs not
	// yet established, waiting for message 3 or 5; default 16.
	MaxHalfOpenPerPeer int
	HalfOpenTimeout    time.Duration // a half-open SA's life without message 3; default 30 s
	// ReplyRate and ReplyBurst bound the unprotected answers to addresses
	// nothing has verified (refusals of message 1, INVALID-COOKIE): per
	// second and at once, each kind on its own bucket; default 10 and 20.
	ReplyRate  float64
	ReplyBurst int
}

func (l Limits) withDefaults() Limits {
	if l.MaxHalfOpen <= 0 {
		l.MaxHalfOpen = 4096
	}
	if l.MaxKeyed <= 0 {
		l.MaxKeyed = 32768
	}
	if l.MaxHalfOpenPerPeer <= 0 {
		l.MaxHalfOpenPerPeer = 16
	}
	if l.HalfOpenTimeout <= 0 {
		l.HalfOpenTimeout = 30 * time.Second
	}
	if l.ReplyRate <= 0 {
		l.ReplyRate = 10
	}
	if l.ReplyBurst <= 0 {
		l.ReplyBurst = 20
	}
	return l
}

// tokenBucket bounds a rate; its clock is the caller's now, its rate and
// burst the caller's Limits (not kept in it: an Endpoint has two, and a
// load generator an Endpoint per member).
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take takes a token if there is one, rate a second refilling up to burst.
func (b *tokenBucket) take(now time.Time, rate float64, burst int) bool {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+d.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Stats counts what an Endpoint dropped and why.
type Stats struct {
	Malformed               uint64 // not an ISAKMP v1 message at all
	UnknownSA               uint64 // cookies of no SA we hold
	HalfOpenEvicted         uint64 // half-open SAs evicted by newer ones: global bound
	HalfOpenPeerEvicted     uint64 // half-open SAs evicted by newer ones from the same address
	HalfOpenExpired         uint64 // half-open SAs whose peer never sent message 3
	HalfOpenPeerRefused     uint64 // message 1 dropped: every half-open SA of its address is past message 3
	KeyedEvicted            uint64 // SAs past message 3, not yet authenticated, evicted by newer ones: global bound
	KeyedExpired            uint64 // SAs past message 3 whose peer never sent a valid message 5
	MM1Rejected             uint64 // message 1 that created no SA: malformed, encrypted or refused
	RefusalSent             uint64 // unprotected refusals (NO-PROPOSAL-CHOSEN, ...) sent for message 1
	RefusalSuppressed       uint64 // unprotected refusals not sent: rate bound
	InvalidCookieSent       uint64 // INVALID-COOKIE sent for cookies of no SA we hold
	InvalidCookieSuppressed uint64 // INVALID-COOKIE not sent: rate bound
	CookieCollision         uint64 // new SA whose cookie pair is held already: dropped, the old one kept
	EstablishedIgnored      uint64 // unprotected or unauthenticated messages ignored by an established SA
	PeerLostState           uint64 // PeerLostState hints reported (unprotected INVALID-COOKIE for an established SA)
	InitialContactDropped   uint64 // SAs dropped (and deleted) on the same identity's INITIAL-CONTACT
	Dropped                 uint64 // ignored by an SA (stale, duplicate, bad); EstablishedIgnored is part of it
	DPDSent                 uint64 // R-U-THEREs sent (dead peer detection, RFC 3706), retransmissions included
	DPDAcked                uint64 // R-U-THERE-ACKs that answered a probe in progress
	DPDAckUnexpected        uint64 // authenticated R-U-THERE-ACKs ignored: no probe in progress, or another sequence number
	DPDDead                 uint64 // SAs failed because the peer did not answer dead peer detection
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
		{"half_open_peer_refused", "message 1 dropped: its address already had as many SAs waiting for message 5 as it may", s.HalfOpenPeerRefused},
		{"keyed_evicted", "SAs past message 3 (Diffie-Hellman done) evicted by newer ones before message 5 (global limit)", s.KeyedEvicted},
		{"keyed_expired", "SAs past message 3 whose peer never sent a valid message 5", s.KeyedExpired},
		{"mm1_rejected", "message 1 that created no SA: malformed, encrypted or refused", s.MM1Rejected},
		{"refusal_sent", "unprotected refusals of message 1 sent", s.RefusalSent},
		{"refusal_suppressed", "unprotected refusals of message 1 not sent (rate limit)", s.RefusalSuppressed},
		{"invalid_cookie_sent", "INVALID-COOKIE sent for cookies of no SA held", s.InvalidCookieSent},
		{"invalid_cookie_suppressed", "INVALID-COOKIE not sent (rate limit)", s.InvalidCookieSuppressed},
		{"cookie_collision", "new SA with the cookies of one held: dropped", s.CookieCollision},
		{"established_ignored", "unprotected or unauthenticated messages ignored by an established SA", s.EstablishedIgnored},
		{"peer_lost_state", "hints that a peer lost its phase-1 state (unprotected INVALID-COOKIE)", s.PeerLostState},
		{"initial_contact_dropped", "SAs deleted on the same identity's INITIAL-CONTACT", s.InitialContactDropped},
		{"dropped", "ignored by an SA: stale, duplicate or bad", s.Dropped},
		{"dpd_sent", "R-U-THERE sent (dead peer detection), retransmissions included", s.DPDSent},
		{"dpd_acked", "R-U-THERE-ACK that answered a probe in progress", s.DPDAcked},
		{"dpd_ack_unexpected", "authenticated R-U-THERE-ACK ignored: no probe in progress or another sequence number", s.DPDAckUnexpected},
		{"dpd_dead", "phase-1 SAs failed: the peer did not answer dead peer detection", s.DPDDead},
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

// tableProbes counts an Endpoint's lookups, insertions and deletions in
// each of its tables on the paths of a datagram (HandleInto and what it
// calls) and of an SA's removal: a test bounds them per registration
// (issue 18: at a key server's scale a probe of a table of 100,000 SAs
// is a cache miss or two). 16 bits each, which a test's few datagrams do
// not overflow and a long run only wraps: the Endpoint fits its size
// class (TestEndpointFitsItsSizeClass).
type tableProbes struct{ sas, pending, perPeer, byID uint16 }

// Endpoint holds the phase-1 SAs of one local address: it routes datagrams
// by cookies, creates responder SAs for message 1 within Limits, and runs
// every SA's timers from one heap. It is sans-IO and owned by one
// goroutine.
//
// Invariants (SPEC S1, S2): an SA enters the tables only once a message
// of its peer was accepted (a responder once message 2 is built); every SA
// in the tables has a timer (a responder waiting for message 3 expires
// after Limits.HalfOpenTimeout, one past it after message 4's
// transmissions); the responders not yet established (half-open: waiting
// for message 3 or for message 5) are bounded per address and, of each
// kind, in all; an entry of e.sas is never overwritten; nothing
// unauthenticated removes an established SA.
type Endpoint struct {
	cfg    *Config
	sh     shared // its local address, and the working memory of its SAs' cryptography
	limits Limits
	secret [32]byte
	seq    uint64 // responder cookies issued: makes each one unique

	sas      map[pair]*SA
	pending  map[halfKey]*SA         // initiators before message 2, responders before message 3
	halfOpen halfList                // responders in MM2_SENT, oldest first (links: mmState.ho)
	keyed    halfList                // responders in MM4_SENT (not yet authenticated), oldest first (links: mmState.ho)
	perPeer  map[netip.Addr]halfList // both by source address, oldest first (links: mmState.pp)
	timers   timerHeap
	byID     idIndex // established SAs by peer identity: the first, the others through idNext
	indexed  int     // SAs filed in byID: the established SAs held (Established)
	probes   tableProbes

	cookieMAC hash.Hash // keyed with secret: responder cookies

	refusals, invalidCookies tokenBucket
	unauth                   *slog.Logger // bounded and rate-limited: for what unauthenticated input causes

	Stats Stats
}

// NewEndpoint returns an Endpoint for local.
func NewEndpoint(cfg *Config, local netip.AddrPort, limits Limits) (*Endpoint, error) {
	limits = limits.withDefaults()
	e := &Endpoint{cfg: cfg, sh: shared{local: local}, limits: limits, sas: map[pair]*SA{},
		pending: map[halfKey]*SA{}, perPeer: map[netip.Addr]halfList{},
		unauth: slog.New(ratelog.New(cfg.logger().Handler(), ratelog.Options{}))}
	e.sh.unauth, e.sh.halfOpenTTL = e.unauth, limits.HalfOpenTimeout
	if _, err := io.ReadFull(cfg.rand(), e.secret[:]); err != nil {
		return nil, fmt.Errorf("ike: cookie secret: %w", err)
	}
	return e, nil
}

// Reset makes e an Endpoint for local with no SAs, as NewEndpoint(cfg,
// local, limits) makes it, for an owner that dropped every SA of e (it
// uses none of them again): a load generator hands its members'
// Endpoints on once their registrations are done, instead of one new
// Endpoint per registration (issue 18: the generator's CPU per
// registration). It keeps what is not a peer's: its tables' storage,
// emptied; the working memory of its SAs' cryptography and what it
// caches (vendor IDs, transform attributes, message 1's SA payload);
// the cookie secret and the count of responder cookies issued (a
// responder cookie is never issued twice); the bounded logger of
// unauthenticated input (its count of records suppressed goes on). The
// counters (Stats) and rate bounds start again.
func (e *Endpoint) Reset(local netip.AddrPort) {
	// The SAs dropped are dead: their timers stale, no key schedule kept,
	// whatever their owner still holds of them.
	for _, sa := range e.sas {
		sa.gen++
		sa.timerAt, sa.p2block, sa.state = 0, nil, StateDead
	}
	for _, sa := range e.pending {
		sa.gen++
		sa.timerAt, sa.p2block, sa.state = 0, nil, StateDead
	}
	clear(e.sas)
	clear(e.pending)
	clear(e.perPeer)
	e.halfOpen, e.keyed = halfList{}, halfList{}
	clear(e.timers)
	e.timers = e.timers[:0]
	clear(e.byID.short)
	clear(e.byID.long)
	e.indexed, e.probes = 0, tableProbes{}
	e.refusals, e.invalidCookies = tokenBucket{}, tokenBucket{}
	e.Stats = Stats{}
	e.sh.local = local
}

// LogSuppressed returns how many log records caused by unauthenticated
// input the endpoint's rate limiter suppressed (SPEC S5, S6).
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

// Established returns how many established SAs the endpoint holds,
// len(SAs()) without walking them: an SA is established only once its
// peer's identity was verified, and step files every established SA under
// it (index) and remove takes it out, so this is the count of SAs filed
// (issue 18: a scrape or `| count` counting 100,000 SAs).
func (e *Endpoint) Established() int { return e.indexed }

// Lookup returns the SA with the given cookies.
func (e *Endpoint) Lookup(icky, rcky isakmp.Cookie) *SA { return e.sas[pair{icky, rcky}] }

// Initiate starts main mode toward peer.
func (e *Endpoint) Initiate(peer netip.AddrPort, now time.Time) (*SA, Output, error) {
	sa, r, err := newInitiator(e.cfg, &e.sh, peer, now) // one shared for all the endpoint's SAs
	if err != nil {
		return nil, Output{}, err
	}
	if e.pending[halfKey{sa.icky, peer}] != nil {
		return nil, Output{}, errors.New("ike: initiator cookie already in use")
	}
	e.pending[halfKey{sa.icky, peer}] = sa
	return sa, e.apply(sa, r), nil
}

// responderCookie binds our cookie to the initiator's cookie and address
// and to a secret (RFC 2408 §2.5.3), and makes it unique to this SA with
// a counter: a replayed message 1 gets another cookie, so it can never
// name an SA we hold. It is never zero, the cookie of a message 1: the
// next counter's is taken instead (HandleInto looks for a zero responder
// cookie among the half-open SAs only).
func (e *Endpoint) responderCookie(icky isakmp.Cookie, peer netip.AddrPort) isakmp.Cookie {
	if e.cookieMAC == nil {
		e.cookieMAC = hmac.New(sha256.New, e.secret[:])
	}
	m := e.cookieMAC
	for {
		e.seq++
		m.Reset()
		// icky | the address and port as MarshalBinary writes them | seq,
		// in the SAs' working memory, free between two of their messages
		// (one HMAC per message 1, no allocation).
		sc := e.sh.scr()
		b := append(sc.out[:0], icky[:]...)
		b, _ = peer.AppendBinary(b)
		b = binary.BigEndian.AppendUint64(b, e.seq)
		m.Write(b)
		sum := m.Sum(sc.sum[:0])
		var c isakmp.Cookie
		copy(c[:], sum)
		if c != (isakmp.Cookie{}) {
			return c
		}
	}
}

// Handle processes one datagram received from `from`.
func (e *Endpoint) Handle(from netip.AddrPort, pkt []byte, now time.Time) Output {
	var out Output
	e.HandleInto(&out, from, pkt, now)
	return out
}

// HandleInto is Handle appending to out's Send and Events, so that an owner
// handling datagram after datagram reuses one Output's arrays (issue 18:
// two allocations per datagram). What it appends is what Handle returns;
// the owner must be done with out's entries (and clear them: they name SAs
// and alias their buffers) before it hands out to HandleInto again, so an
// Output being iterated is never the one a nested call appends to.
func (e *Endpoint) HandleInto(out *Output, from netip.AddrPort, pkt []byte, now time.Time) {
	h, err := isakmp.ParseHeader(pkt)
	if err != nil {
		e.Stats.Malformed++
		return
	}
	var zero isakmp.Cookie
	if h.ResponderCookie == zero {
		// Message 1, or a retransmission of it. No SA of e.sas has a
		// zero responder cookie (responderCookie issues none, and an
		// initiator enters e.sas with its responder's), so only the
		// half-open SAs are looked at: a probe of e.sas, which holds
		// every member's SA on a key server, saved (issue 18).
		e.probes.pending++
		if sa := e.pending[halfKey{h.InitiatorCookie, from}]; sa != nil {
			if sa.initiator { // our own cookie sent back with no responder's
				e.Stats.UnknownSA++
				return
			}
			e.stepInto(out, sa, sa.handle(pkt, now), now)
			return
		}
		if h.Exchange != isakmp.ExchangeIdentityProt || h.NextPayload != isakmp.PayloadSA {
			e.Stats.UnknownSA++
			return
		}
		e.newResponder(out, from, h.InitiatorCookie, pkt, now)
		return
	}
	e.probes.sas++
	if sa := e.sas[pair{h.InitiatorCookie, h.ResponderCookie}]; sa != nil {
		if sa.peer != from {
			e.Stats.UnknownSA++ // a cookie pair used from another address
			return
		}
		e.stepInto(out, sa, sa.handle(pkt, now), now)
		return
	}
	// Message 2: the responder chose its cookie.
	e.probes.pending++
	if sa := e.pending[halfKey{h.InitiatorCookie, from}]; sa != nil && sa.initiator {
		e.stepInto(out, sa, sa.handle(pkt, now), now)
		if sa.rcky != zero && sa.state != StateDead {
			e.probes.pending++
			e.probes.sas++
			delete(e.pending, halfKey{sa.icky, from})
			e.sas[pair{sa.icky, sa.rcky}] = sa
		}
		return
	}
	e.Stats.UnknownSA++
	o := e.invalidCookie(from, h, now)
	out.Send = append(out.Send, o.Send...)
}

// invalidCookie answers a message naming cookies of no SA we hold with an
// unprotected INVALID-COOKIE (RFC 2408 §3.14.1, §5.2), at a bounded rate:
// a member whose key server restarted learns it at once instead of
// retransmitting into the void. Informationals are never answered, so two
// endpoints cannot answer each other forever.
func (e *Endpoint) invalidCookie(from netip.AddrPort, h isakmp.Header, now time.Time) Output {
	switch h.Exchange {
	case isakmp.ExchangeIdentityProt, isakmp.ExchangePull:
	default:
		return Output{}
	}
	if !e.invalidCookies.take(now, e.limits.ReplyRate, e.limits.ReplyBurst) {
		e.Stats.InvalidCookieSuppressed++
		return Output{}
	}
	var mid [4]byte
	if _, err := io.ReadFull(e.cfg.rand(), mid[:]); err != nil {
		return Output{}
	}
	// A new Informational exchange, which we initiate: its Message ID is
	// random and not 0 (RFC 2408 §3.1); the SPI names the cookie pair.
	n := &isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: isakmp.NotifyInvalidCookie,
		SPI: append(h.InitiatorCookie[:], h.ResponderCookie[:]...)}
	m := &isakmp.Message{Header: isakmp.Header{InitiatorCookie: h.InitiatorCookie, ResponderCookie: h.ResponderCookie,
		Exchange: isakmp.ExchangeInformational, MessageID: binary.BigEndian.Uint32(mid[:]) | 1}, Payloads: []isakmp.Payload{n}}
	b, err := m.Marshal()
	if err != nil {
		return Output{}
	}
	e.Stats.InvalidCookieSent++
	return Output{Send: []Packet{{To: from, Data: b}}}
}

// newResponder runs message 1 on a fresh responder SA, which enters the
// tables only if it answered with message 2: input that did not complete
// a message leaves nothing behind (SPEC S1).
func (e *Endpoint) newResponder(out *Output, from netip.AddrPort, icky isakmp.Cookie, pkt []byte, now time.Time) {
	// An address whose half-open SAs are all past message 3 gets no new
	// one (below), and its message 1 costs nothing more: no cookie, no
	// proposal chosen, no message 2 built.
	e.probes.perPeer++
	l := e.perPeer[from.Addr()]
	var old *SA // its oldest SA still waiting for message 3: the one to evict
	if l.Len() >= e.limits.MaxHalfOpenPerPeer {
		if old = oldestWaiting(l); old == nil {
			e.Stats.HalfOpenPeerRefused++
			e.unauth.Warn("message 1 dropped: its address has as many SAs waiting for message 5 as it may", "peer", from.String(),
				"limit", e.limits.MaxHalfOpenPerPeer)
			return
		}
	}
	sa := newResponder(e.cfg, &e.sh, from, icky, e.responderCookie(icky, from), now)
	r := sa.handle(pkt, now)
	e.Stats.Dropped += uint64(sa.Dropped)
	sa.Dropped = 0
	if sa.state != StateMM2Sent {
		// Refused or unreadable: no SA, no event (nobody knew of it). A
		// refusal goes to an address nothing verified: rate-bounded.
		e.Stats.MM1Rejected++
		if r.sends() == 0 {
			return
		}
		if !e.refusals.take(now, e.limits.ReplyRate, e.limits.ReplyBurst) {
			e.Stats.RefusalSuppressed++
			return
		}
		e.Stats.RefusalSent++
		out.Send = append(out.Send, Packet{To: from, Data: r.public().Send[0]})
		return
	}
	e.probes.sas++
	if e.sas[pair{sa.icky, sa.rcky}] != nil {
		e.Stats.CookieCollision++
		return
	}
	if old != nil {
		// Evict this address's oldest SA still waiting for message 3: a
		// spoofer flooding from a member's address costs the member at
		// most a retry, never a lockout. SAs past message 3 are not
		// evicted: their peer echoed our cookie, so it receives at this
		// address, and each cost us a Diffie-Hellman agreement; evicting
		// one would let the address have us compute another at once.
		// With all of them past message 3, message 1 is dropped until one
		// is established or expires: one address gets at most
		// MaxHalfOpenPerPeer agreements per expiry (a responder's message
		// 4 retransmissions: 46 s).
		e.Stats.HalfOpenPeerEvicted++
		e.remove(old)
		e.probes.perPeer++
		l = e.perPeer[from.Addr()] // remove changed it
	} else if e.halfOpen.Len() >= e.limits.MaxHalfOpen {
		// Evict the oldest SA that never got past message 2: a spoofed
		// source never answers, a real peer does within a round trip.
		e.Stats.HalfOpenEvicted++
		e.remove(e.halfOpen.head)
		e.probes.perPeer++
		l = e.perPeer[from.Addr()] // the oldest may have been this address's
	}
	e.probes.pending++
	e.pending[halfKey{icky, from}] = sa
	e.probes.sas++
	e.sas[pair{sa.icky, sa.rcky}] = sa
	e.halfOpen.push(sa, globalLinks)
	l.push(sa, peerLinks)
	e.probes.perPeer++
	e.perPeer[from.Addr()] = l
	sa.hs.halfOpen = true
	e.applyInto(out, sa, r)
}

// step applies an SA's Result and keeps the half-open bookkeeping.
func (e *Endpoint) step(sa *SA, r Result, now time.Time) Output {
	var out Output
	e.stepInto(&out, sa, r, now)
	return out
}

// stepInto is step appending to out.
func (e *Endpoint) stepInto(out *Output, sa *SA, r Result, now time.Time) {
	first := len(out.Events)
	e.applyInto(out, sa, r)
	if sa.state == StateEstablished {
		e.index(sa)
	}
	for _, ev := range out.Events[first:] {
		if _, ok := ev.Event.(InitialContact); ok {
			o := e.dropOlder(sa, now)
			out.Send = append(out.Send, o.Send...)
			out.Events = append(out.Events, o.Events...)
			break
		}
	}
	if !sa.initiator && sa.state != StateMM2Sent {
		if sa.state == StateMM4Sent {
			e.keyedFromHalfOpen(sa)
		} else {
			e.leaveHalfOpen(sa)
		}
	}
	if sa.state == StateDead {
		e.remove(sa)
	}
}

// dropOlder deletes every other established SA of sa's peer identity,
// from any address: after INITIAL-CONTACT they belong to the peer's
// previous life (RFC 2407 §4.6.3.3). Each gets a Delete to its own peer
// address, which a peer that did reboot ignores and one that did not
// (a second device with the same identity) learns from.
func (e *Endpoint) dropOlder(sa *SA, now time.Time) Output {
	var out Output
	if sa.peerID == nil {
		return out
	}
	var older []*SA // remove changes the identity's list
	// stepInto filed sa before it reported the INITIAL-CONTACT: its
	// identity's list is found from sa itself, without a probe of the
	// index (issue 18: every member sends one when it registers).
	first := sa
	if sa.indexed {
		for first.idPrev != nil {
			first = first.idPrev
		}
	} else {
		e.probes.byID++
		first = e.byID.get(sa.peerID)
	}
	for o := first; o != nil; o = o.idNext {
		if o != sa && o.state == StateEstablished && sameID(o.peerID, sa.peerID) {
			older = append(older, o)
		}
	}
	for _, o := range older {
		o.log(slog.LevelInfo, "deleting phase-1 SA: its peer identity sent INITIAL-CONTACT on a new one",
			"peer_id", o.peerID.String(), "new_peer", sa.peer.String())
		e.Stats.InitialContactDropped++
		r := o.Delete(now)
		out.Send = append(out.Send, e.apply(o, r).Send...)
		out.Events = append(out.Events, SAEvent{SA: o, Event: Deleted{}})
		e.remove(o)
	}
	return out
}

// index files an established SA under its peer identity for dropOlder
// (idempotent and O(1): step calls it for every message of an
// established SA, and many SAs may share an identity); remove takes it
// out, in O(1) too. The map holds only established SAs the endpoint
// holds, so an INITIAL-CONTACT costs the SAs of its own identity, not
// every SA (issue 18 F1).
func (e *Endpoint) index(sa *SA) {
	if sa.peerID == nil || sa.indexed {
		return
	}
	e.probes.byID += 2 // get and set
	first := e.byID.get(sa.peerID)
	// Usually one SA per identity: a list through the SAs costs no
	// allocation of its own (issue 18 F3).
	sa.idNext, sa.idPrev = first, nil
	if first != nil {
		first.idPrev = sa
	}
	e.byID.set(sa.peerID, sa)
	sa.indexed = true
	e.indexed++
}

// idIndex maps a peer identity (what sameID compares) to the first
// established SA filed under it. An identity of up to 19 octets of data
// (an IPv4 or IPv6 address, a short name) is a key of fixed size, made
// without an allocation (issue 18: a key server files one per
// registration); a longer one (a DN) is a string.
type idIndex struct {
	short map[shortID]*SA
	long  map[string]*SA
}

// shortID is an identity's type, protocol, port and data, n octets of it.
type shortID struct {
	hdr  [4]byte
	n    uint8
	data [19]byte
}

func idHeader(id *isakmp.ID) [4]byte {
	return [4]byte{byte(id.IDType), id.ProtocolID, byte(id.Port >> 8), byte(id.Port)}
}

func toShortID(id *isakmp.ID) (shortID, bool) {
	k := shortID{hdr: idHeader(id), n: uint8(len(id.Data))}
	if len(id.Data) > len(k.data) {
		return shortID{}, false
	}
	copy(k.data[:], id.Data)
	return k, true
}

func longID(id *isakmp.ID) string {
	h := idHeader(id)
	return string(h[:]) + string(id.Data)
}

// get returns the first SA filed under id, nil if none.
func (ix *idIndex) get(id *isakmp.ID) *SA {
	if k, ok := toShortID(id); ok {
		return ix.short[k]
	}
	return ix.long[longID(id)]
}

// set files sa first under id; nil takes the identity out.
func (ix *idIndex) set(id *isakmp.ID, sa *SA) {
	if k, ok := toShortID(id); ok {
		if sa == nil {
			delete(ix.short, k)
			return
		}
		if ix.short == nil {
			ix.short = map[shortID]*SA{}
		}
		ix.short[k] = sa
		return
	}
	if sa == nil {
		delete(ix.long, longID(id))
		return
	}
	if ix.long == nil {
		ix.long = map[string]*SA{}
	}
	ix.long[longID(id)] = sa
}

// Len is how many identities are filed.
func (ix *idIndex) Len() int { return len(ix.short) + len(ix.long) }

// firsts returns the first SA of every identity.
func (ix *idIndex) firsts() []*SA {
	var out []*SA
	for _, sa := range ix.short {
		out = append(out, sa)
	}
	for _, sa := range ix.long {
		out = append(out, sa)
	}
	return out
}

func sameID(a, b *isakmp.ID) bool {
	return a != nil && b != nil && a.IDType == b.IDType && a.ProtocolID == b.ProtocolID &&
		a.Port == b.Port && string(a.Data) == string(b.Data)
}

func (e *Endpoint) leaveHalfOpen(sa *SA) {
	if sa.hs == nil || !sa.hs.halfOpen {
		return
	}
	sa.hs.halfOpen = false
	keyed := sa.hs.keyed
	sa.hs.keyed = false
	if keyed {
		e.keyed.unlink(sa, globalLinks)
	} else {
		e.halfOpen.unlink(sa, globalLinks)
	}
	a := sa.peer.Addr()
	if pp := sa.hs.pp; pp.prev == nil && pp.next == nil {
		// Its address's only half-open SA (a member's, as a rule): the
		// list goes without being read.
		e.probes.perPeer++
		delete(e.perPeer, a)
	} else {
		e.probes.perPeer += 2
		l := e.perPeer[a]
		l.unlink(sa, peerLinks)
		e.perPeer[a] = l
	}
	if !keyed {
		e.leavePending(sa)
	}
}

// oldestWaiting is the oldest SA of an address's list still waiting for
// message 3, nil if all are past it.
func oldestWaiting(l halfList) *SA {
	sa := l.head
	for sa != nil && sa.state != StateMM2Sent {
		sa = peerLinks(sa).next
	}
	return sa
}

// leavePending deletes a responder's entry in e.pending once it is past
// message 2. newResponder filed it there under its cookie and address,
// and nothing replaces that entry while it waits for message 3: a message
// 1 of the same cookie and address goes to it, Initiate refuses a cookie
// in use, and other SAs delete only their own entries.
func (e *Endpoint) leavePending(sa *SA) {
	e.probes.pending++
	delete(e.pending, halfKey{sa.icky, sa.peer})
}

// keyedFromHalfOpen moves a responder that has just answered message 3
// (MM4_SENT: its key pair made, the agreement computed) from the list of
// those waiting for message 3 to the list of those waiting for message 5,
// where it stays until message 5 authenticates the peer or it dies. It
// stays in its address's list: until it is established it counts against
// MaxHalfOpenPerPeer, so one address that answers message 2 and never
// sends message 5 has us compute at most that many agreements per
// expiry, not one per message 3 it sends (S1). At MaxKeyed the list's
// oldest is evicted: a member's message 5 follows its message 4 within a
// round trip and the time it waits in our socket, in which we cannot make
// MaxKeyed agreements.
func (e *Endpoint) keyedFromHalfOpen(sa *SA) {
	if sa.hs == nil || !sa.hs.halfOpen || sa.hs.keyed {
		return
	}
	e.halfOpen.unlink(sa, globalLinks)
	e.leavePending(sa)
	if e.keyed.Len() >= e.limits.MaxKeyed {
		e.Stats.KeyedEvicted++
		e.remove(e.keyed.head)
	}
	sa.hs.keyed = true
	e.keyed.push(sa, globalLinks)
}

// halfList is a list of half-open SAs, oldest first, linked through
// their main-mode state (mmState.ho for the Endpoint's list, mmState.pp
// for an address's): an SA enters and leaves it without an allocation
// (issue 18: container/list cost a key server three per registration).
type halfList struct {
	head, tail *SA
	n          int
}

// halfLinks are an SA's neighbours in one halfList.
type halfLinks struct{ prev, next *SA }

func globalLinks(sa *SA) *halfLinks { return &sa.hs.ho }
func peerLinks(sa *SA) *halfLinks   { return &sa.hs.pp }

// Len is how many SAs l holds.
func (l halfList) Len() int { return l.n }

// push appends sa, which is in no list of this kind.
func (l *halfList) push(sa *SA, links func(*SA) *halfLinks) {
	*links(sa) = halfLinks{prev: l.tail}
	if l.tail != nil {
		links(l.tail).next = sa
	} else {
		l.head = sa
	}
	l.tail = sa
	l.n++
}

// unlink takes sa, which l holds, out of l.
func (l *halfList) unlink(sa *SA, links func(*SA) *halfLinks) {
	lk := links(sa)
	if lk.prev != nil {
		links(lk.prev).next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		links(lk.next).prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	*lk = halfLinks{}
	l.n--
}

// remove forgets sa; entries of the tables that name another SA stay.
func (e *Endpoint) remove(sa *SA) {
	e.leaveHalfOpen(sa)
	// A responder is in e.pending only while it waits for message 3,
	// which leaveHalfOpen or keyedFromHalfOpen ended: an initiator's
	// entry is looked for alone
	// (issue 18: a probe saved per member's SA removed).
	if k := (halfKey{sa.icky, sa.peer}); sa.initiator {
		e.probes.pending++
		if e.pending[k] == sa {
			e.probes.pending++
			delete(e.pending, k)
		}
	}
	e.probes.sas++
	if k := (pair{sa.icky, sa.rcky}); e.sas[k] == sa {
		e.probes.sas++
		delete(e.sas, k)
	}
	sa.gen++ // its timers are stale
	sa.timerAt = 0
	sa.p2block = nil // a dead SA keeps no key schedule (an initiator's is kept through an exchange)
	if sa.indexed {
		if sa.idNext != nil {
			sa.idNext.idPrev = sa.idPrev
		}
		if sa.idPrev != nil {
			sa.idPrev.idNext = sa.idNext
		} else {
			e.probes.byID++
			e.byID.set(sa.peerID, sa.idNext) // nil: the identity's last
		}
		sa.idNext, sa.idPrev, sa.indexed = nil, nil, false
		e.indexed--
	}
	sa.state = StateDead
}

func (e *Endpoint) apply(sa *SA, r Result) Output {
	var out Output
	e.applyInto(&out, sa, r)
	return out
}

// applyInto is apply appending to out.
func (e *Endpoint) applyInto(out *Output, sa *SA, r Result) {
	out.Send = slices.Grow(out.Send, r.sends())
	if r.one != nil {
		out.Send = append(out.Send, Packet{To: sa.peer, Data: r.one})
	}
	for _, d := range r.Send {
		out.Send = append(out.Send, Packet{To: sa.peer, Data: d})
	}
	first := len(out.Events)
	out.Events = slices.Grow(out.Events, r.events())
	for _, ev := range r.ev {
		if ev != nil {
			out.Events = append(out.Events, SAEvent{SA: sa, Event: ev})
		}
	}
	for _, ev := range r.Events {
		out.Events = append(out.Events, SAEvent{SA: sa, Event: ev})
	}
	for _, ev := range out.Events[first:] {
		if _, ok := ev.Event.(PeerLostState); ok {
			e.Stats.PeerLostState++
		}
	}
	e.Stats.Dropped += uint64(sa.Dropped)
	e.Stats.EstablishedIgnored += uint64(sa.ignored)
	sa.Dropped, sa.ignored = 0, 0
	d := &sa.dpd
	e.Stats.DPDSent += uint64(d.rutSent)
	e.Stats.DPDAcked += uint64(d.acks)
	e.Stats.DPDAckUnexpected += uint64(d.ackUnexpected)
	e.Stats.DPDDead += uint64(d.dead)
	d.rutSent, d.acks, d.ackUnexpected, d.dead = 0, 0, 0, 0
	// A timer already set for the same instant stays as it is: an
	// established SA answers every message with its timer, unchanged.
	if at := r.Timer; !at.IsZero() && sa.state != StateDead && at.UnixNano() != sa.timerAt {
		sa.gen++
		sa.timerAt = at.UnixNano()
		e.timers.push(timerEntry{at: at, sa: sa, gen: sa.gen})
		if len(e.timers) > 2*(len(e.sas)+len(e.pending))+64 {
			e.compactTimers()
		}
	}
}

// compactTimers drops superseded timers, so that the heap stays within
// twice the SAs held however many were evicted before their timer.
func (e *Endpoint) compactTimers() {
	live := e.timers[:0]
	for _, t := range e.timers {
		if t.live() {
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
		if t.live() {
			return t.at
		}
		e.timers.pop() // superseded
	}
	return time.Time{}
}

// Tick runs the timers that are due.
func (e *Endpoint) Tick(now time.Time) Output {
	var out Output
	for len(e.timers) > 0 && !e.timers[0].at.After(now) {
		t := e.timers.pop()
		if !t.live() {
			continue
		}
		t.sa.timerAt = 0 // fired: the SA has no timer until it says again
		was := t.sa.state
		e.stepInto(&out, t.sa, t.sa.Timeout(now), now)
		if !t.sa.initiator && t.sa.state == StateDead {
			switch was {
			case StateMM2Sent:
				e.Stats.HalfOpenExpired++
			case StateMM4Sent:
				e.Stats.KeyedExpired++
			}
		}
	}
	return out
}

// Delete deletes an established SA and returns the Delete for the peer.
func (e *Endpoint) Delete(sa *SA, now time.Time) (Output, error) {
	if e.sas[pair{sa.icky, sa.rcky}] != sa {
		return Output{}, errors.New("ike: SA not held by this endpoint")
	}
	return e.step(sa, sa.Delete(now), now), nil
}

// DPD sends an R-U-THERE on an established SA at once (RFC 3706), a probe
// of SA.DPD's kind.
func (e *Endpoint) DPD(sa *SA, now time.Time) (Output, error) {
	r, err := sa.DPD(now)
	if err != nil {
		return Output{}, err
	}
	return e.step(sa, r, now), nil
}

// DPDChanged re-arms the dead peer detection of every established SA after
// the Config's DPD changed (a reload of crypto isakmp keepalive): see
// DPD. Nothing is sent at once; the timers say when.
func (e *Endpoint) DPDChanged(now time.Time) Output {
	var out Output
	for _, sa := range e.sas {
		if sa.state != StateEstablished {
			continue
		}
		sa.dpdRearm(now)
		o := e.apply(sa, Result{Timer: sa.timer()})
		out.Send = append(out.Send, o.Send...)
		out.Events = append(out.Events, o.Events...)
	}
	return out
}

type timerEntry struct {
	at  time.Time
	sa  *SA
	gen uint64
}

// live reports whether t is its SA's current timer: an SA's later timer,
// or its removal, supersedes it.
func (t timerEntry) live() bool { return t.sa.gen == t.gen }

// push and pop are heap.Push and heap.Pop without boxing the entry in an
// interface (an allocation per timer set), and up and down container/heap's
// on the slice itself, without calling Less and Swap through the
// interface (issue 18: a few timers per registration in a heap of every
// SA's; the same moves, so the same order, as container/heap's).
func (h *timerHeap) push(t timerEntry) {
	*h = append(*h, t)
	h.up(len(*h) - 1)
}

func (h *timerHeap) pop() timerEntry {
	old := *h
	n := len(old) - 1
	old[0], old[n] = old[n], old[0]
	t := old[n]
	old[n] = timerEntry{}
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	return t
}

func (h timerHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2 // parent
		if !h[j].at.Before(h[i].at) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
}

func (h timerHeap) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if j2 := j + 1; j2 < n && h[j2].at.Before(h[j].at) {
			j = j2 // the earlier child
		}
		if !h[j].at.Before(h[i].at) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
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
			o := to.Handle(from.sh.local, p.Data, now)
			next.Send = append(next.Send, o.Send...)
			events = append(events, o.Events...)
		}
		out, from = next, to
	}
	return events
}
