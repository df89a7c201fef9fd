package ike

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// DPDVendorID announces Dead Peer Detection support (RFC 3706 §4).
var DPDVendorID = []byte{0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00}

// Retransmit is the retransmission policy for an unanswered message.
type Retransmit struct {
	Initial time.Duration // first timeout
	Max     time.Duration // cap for the doubling timeout
	Tries   int           // transmissions of one message before giving up
	// GiveUp bounds an initiator's whole main mode: it fails GiveUp after
	// message 1 was first sent if it is not established by then, whatever
	// Tries still allows. Zero: DefaultGiveUp; negative: no bound but
	// Tries. A responder's retransmissions are not bounded by it.
	GiveUp time.Duration
}

// DefaultGiveUp is an initiator's time to give up on a silent or stalled
// peer: the life a responder gives a half-open SA (Limits.HalfOpenTimeout,
// as Solaris in.iked's expire_timer), four transmissions of message 1
// (at 0, 2, 6 and 14 s) under DefaultRetransmit. A group member whose key
// server does not answer tries the next one, or again, after 30 s instead
// of the 46 s the schedule alone took, which was most of the time left
// for retries after a removal (issue 18, docs/scale.md F6). strongSwan's
// charon gives up after 165 s (5 retransmissions, 4 s x 1.8^n).
const DefaultGiveUp = 30 * time.Second

// DefaultRetransmit waits 2 s, then 4, 8, 16, 16 s between transmissions
// of one message (46 s in all), and an initiator gives up 30 s after
// message 1.
var DefaultRetransmit = Retransmit{Initial: 2 * time.Second, Max: 16 * time.Second, Tries: 5, GiveUp: DefaultGiveUp}

// Config is the phase-1 policy of one endpoint.
type Config struct {
	// Suites are offered in order by an initiator and accepted by a
	// responder (lifetimes: the shorter of the two wins).
	Suites []Suite
	Creds  Credentials
	// LocalID overrides the identity we send; nil: Identity says.
	LocalID *isakmp.ID
	// Identity is the kind of identity we send (crypto isakmp identity);
	// IdentityAuto: the certificate subject for signatures, our address
	// for PSK.
	Identity Identity
	// Hostname is the FQDN IdentityHostname sends.
	Hostname string
	// Version is announced in our Vendor ID (SPEC V2); zero: version.Current.
	Version version.Version
	// DOI is the DOI of the phase-1 SA payload an initiator sends: the
	// IPsec DOI (default) or, for GDOI registration, the GDOI DOI, which
	// RFC 6407 §2.1 requires. A responder accepts either.
	DOI        isakmp.DOI
	Retransmit Retransmit
	// DPD is the dead peer detection timer (crypto isakmp keepalive).
	DPD  DPD
	Rand io.Reader // nil: crypto/rand
	// KeyPair, if set, gives main mode's ephemeral Diffie-Hellman key
	// pair for g instead of g.GenerateKey(Rand): a load generator makes
	// its members' key pairs ahead of time (issue 18). Each pair it
	// returns must be fresh, used by one exchange only. nil: made in
	// the exchange from Rand.
	KeyPair func(g Group) (PrivateKey, []byte, error)
	Logger  *slog.Logger // nil: discard
	// KeepTranscript keeps main mode's public values (nonces, KE data,
	// SAi_b, HASH_I and HASH_R: SA.Transcript) after the SA is
	// established, for known-answer tests against other implementations
	// and debugging. Off, an established SA drops them (issue 18 F3).
	KeepTranscript bool
}

func (c *Config) rand() io.Reader {
	if c.Rand == nil {
		return rand.Reader
	}
	return c.Rand
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Config) version() version.Version { return c.Version.OrCurrent() }

func (c *Config) retransmit() Retransmit {
	r := c.Retransmit
	if r.Tries == 0 {
		r = DefaultRetransmit
		if c.Retransmit.GiveUp != 0 {
			r.GiveUp = c.Retransmit.GiveUp
		}
	}
	if r.GiveUp == 0 {
		r.GiveUp = DefaultGiveUp
	}
	return r
}

// State is where a phase-1 SA is in main mode (RFC 2409 §5).
type State int

const (
	StateMM1Sent     State = iota + 1 // initiator: SA offered
	StateMM2Sent                      // responder: SA chosen
	StateMM3Sent                      // initiator: KE, Ni sent
	StateMM4Sent                      // responder: KE, Nr sent, keys derived
	StateMM5Sent                      // initiator: ID, auth sent (encrypted)
	StateEstablished                  // both: authenticated
	StateDead                         // failed, deleted or expired
)

func (s State) String() string {
	return [...]string{"", "MM1_SENT", "MM2_SENT", "MM3_SENT", "MM4_SENT", "MM5_SENT", "ESTABLISHED", "DEAD"}[s]
}

// Result is what one step of an SA asks its owner to do.
type Result struct {
	Send   [][]byte  // datagrams for the peer, in order
	Timer  time.Time // call Timeout at this instant; zero: no timer
	Events []Event

	// one is a datagram sent before Send's, and ev events before
	// Events' (the non-nil ones, in order), which the SA's steps return
	// without a slice of their own: an Endpoint copies them into its
	// Output at once (issue 18: a key server made every datagram's and
	// event's slice twice). SA.handle's callers read them; the exported
	// methods move them into Send and Events (public).
	one []byte
	ev  [2]Event
}

// public returns r with one and ev moved into Send and Events.
func (r Result) public() Result {
	if r.one != nil {
		r.Send = append([][]byte{r.one}, r.Send...)
		r.one = nil
	}
	if r.ev[0] != nil || r.ev[1] != nil {
		evs := make([]Event, 0, len(r.ev)+len(r.Events))
		for _, e := range r.ev {
			if e != nil {
				evs = append(evs, e)
			}
		}
		r.Events = append(evs, r.Events...)
		r.ev = [2]Event{}
	}
	return r
}

// sends is how many datagrams r carries.
func (r *Result) sends() int {
	n := len(r.Send)
	if r.one != nil {
		n++
	}
	return n
}

// events is how many events r carries.
func (r *Result) events() int {
	n := len(r.Events)
	for _, e := range r.ev {
		if e != nil {
			n++
		}
	}
	return n
}

// Event reports something an owner acts on or logs.
type Event interface{ event() }

// Established: the SA is authenticated; GROUPKEY-PULL may run inside it.
type Established struct{ Info Info }

// Failed: the SA is dead. Err wraps ErrAuth for authentication failures,
// ErrTimeout when the peer stopped answering, ErrRefused when the peer said
// no with a notification.
type Failed struct{ Err error }

// PeerNotAuthenticated: a responder's message 5 did not authenticate its
// peer (Err wraps ErrAuth, or says what did not check: a pre-shared key
// mismatch, an untrusted certificate). The SA is not dead: it waits for a
// message 5 that authenticates until its message 4's transmissions end,
// then fails (ErrTimeout). Reported once per SA.
type PeerNotAuthenticated struct{ Err error }

// Deleted: the peer deleted the SA with an Informational Delete, or the
// Endpoint deleted it (sending the Delete) because the same peer identity
// announced INITIAL-CONTACT on a newer SA.
type Deleted struct{}

// Phase2: a message of another exchange (GROUPKEY-PULL, ...) arrived on
// the established SA; its owner decrypts it with DecryptPhase2. Raw is the
// datagram as received (Msg encoded, which Msg.Marshal would copy again),
// and Msg lies in it (Msg.Body is Raw's body, not a copy): the owner reads
// both while it handles the event and keeps no reference to either (the
// datagram's buffer is the caller of Handle's).
type Phase2 struct {
	Msg *isakmp.Message
	Raw []byte
}

// Expired: the SA reached the end of its lifetime.
type Expired struct{}

// InitialContact: the peer announced INITIAL-CONTACT (RFC 2407
// §4.6.3.3): it has rebooted and holds no other SA with us. An Endpoint
// has already deleted the older SAs of the same identity (each reported
// Deleted).
type InitialContact struct{}

// PeerLostState: an unprotected INVALID-COOKIE named this established
// SA's cookies: a hint, not proof, that the peer lost its phase-1 state
// (a restarted key server). The SA is left as it is: nothing
// unauthenticated removes an established SA (SPEC S2); the owner may
// start a new phase 1 beside it. Reported at most once per SA per
// hintInterval.
type PeerLostState struct{}

// Notified: an authenticated Informational notification from the peer
// (DPD is answered by the SA itself and not reported).
type Notified struct{ Notify *isakmp.Notify }

func (Established) event()          {}
func (Failed) event()               {}
func (Deleted) event()              {}
func (Notified) event()             {}
func (Expired) event()              {}
func (Phase2) event()               {}
func (InitialContact) event()       {}
func (PeerLostState) event()        {}
func (PeerNotAuthenticated) event() {}

var (
	ErrTimeout = errors.New("peer did not answer")
	ErrRefused = errors.New("peer refused")
)

// Info describes an established SA.
type Info struct {
	Initiator     bool
	Local, Peer   netip.AddrPort
	ICookie       isakmp.Cookie
	RCookie       isakmp.Cookie
	Suite         Suite
	PeerID        *isakmp.ID
	PeerCert      *x509.Certificate // nil for PSK
	PeerVersion   version.Version   // zero: the peer sent no groupvpn version
	PeerDPD       bool
	EstablishedAt time.Time
	Expires       time.Time
	// DPD is the SA's dead peer detection when Info was called (SA.Info
	// of an established SA).
	DPD DPDState
}

// SA is one IKEv1 phase-1 SA in main mode, initiator or responder. It is
// not safe for concurrent use: one goroutine owns it (DESIGN.md §3). The
// SAs of an Endpoint share its working memory (scratch.go): the goroutine
// that owns the Endpoint owns its SAs, their cryptography included (Info,
// Keys and Transcript only read the SA).
//
// A key server holds one per member for the SA's lifetime, so an
// established SA keeps only what the exchanges after main mode need
// (cookies, suite, keys, the phase-2 IV seed, the peer's identity,
// lifetimes, DPD); main mode's own state is in hs, released once the SA is
// established (issue 18 F3).
type SA struct {
	cfg *Config
	hs  *mmState // main mode's state; nil once released

	sh         *shared // the Endpoint's: its local address, the scratch of the SAs' cryptography
	peer       netip.AddrPort
	icky, rcky isakmp.Cookie
	suite      Suite
	km         keyMaterial       // SKEYID_d, SKEYID_a, SKEYID_e (and Ka); nil before message 4
	phase2IVs  map[uint32][]byte // IV chains of further exchanges in progress at once, by message ID; nil when none
	peerID     *isakmp.ID
	peerCert   *x509.Certificate

	establishedAt, expires time.Time
	lastHint               int64 // when the last PeerLostState was reported, Unix nanoseconds; 0: never
	dpd                    dpdState

	// Dropped counts datagrams ignored as stale, duplicate or malformed;
	// ignored counts those of them an established SA ignored.
	Dropped int
	gen     uint64 // of the SA's live timer in its Endpoint's heap
	timerAt int64  // the live timer's instant, Unix nanoseconds; 0: none
	idNext  *SA    // the next established SA of the same peer identity in its Endpoint
	idPrev  *SA    // the previous one; nil for the first (byID's)

	state          State
	doi            isakmp.DOI          // of the phase-1 SA payload
	dpdSeq         uint32              // of the last R-U-THERE sent
	lastBlock      [aes.BlockSize]byte // last CBC block of phase 1, seed of phase-2 IVs, once seeded
	p2iv           [aes.BlockSize]byte // the IV chain of one exchange in progress (p2mid's), without a map
	p2block        cipher.Block        // AES with the phase-2 key, from an accepted message to our answer (an initiator's: through its exchange): phase2Block
	seeded         bool                // lastBlock is set: phase-2 messages can be protected
	indexed        bool                // filed in its Endpoint's byID
	peerVersion    version.Version     // zero: the peer sent no groupvpn version
	initiator      bool
	peerDPD        bool
	initialContact bool   // the peer sent INITIAL-CONTACT
	ignored        int32  // see Dropped
	p2mid          uint32 // message ID of the exchange in p2iv; 0: none (0 is phase 1's)
}

// mmState is what main mode needs while it runs. Once the SA is
// established it is dropped (on a responder, after message 6's
// retransmission window: see SA.established): a responder's is cleared and
// kept by its endpoint for a new responder (shared.recycle); an
// initiator's is left to the collector. Config.KeepTranscript keeps its
// public values (and nothing is recycled).
type mmState struct {
	saiBody  []byte // SAi_b: the initiator's SA payload body
	dh       PrivateKey
	gxi, gxr []byte
	ni, nr   []byte
	nonce    [nonceLen]byte // ours: what ni (initiator) or nr (responder) holds
	hashes   *[2][]byte     // HASH_I and HASH_R, kept for Config.KeepTranscript only
	block    cipher.Block   // AES with the phase-1 key: messages 5 and 6, and a responder's first phase-2 message

	sent      []byte // last datagram sent, for retransmission
	rto       time.Duration
	deadline  time.Time // next retransmission or expiry; established: the end of message 6's window
	startedAt time.Time

	ho, pp halfLinks // a responder's neighbours in its Endpoint's half-open lists (halfList): halfOpen or keyed, its address's

	// The arrays and the small counters last: no padding between them.
	mk       mainKeys            // SKEYID and the first IV; the rest is SA.km
	iv       [aes.BlockSize]byte // phase-1 CBC IV chain
	lastRecv [32]byte            // digest of the last datagram accepted from the peer
	tries    int32
	resends  int32 // responder: message 2 sent again for a repeated message 1
	halfOpen bool  // in its Endpoint's half-open lists: its address's, and halfOpen or keyed
	keyed    bool  // in keyed (MM4_SENT), not halfOpen
	// mm5Refused counts the message 5s that did not authenticate the
	// peer (refuseMM5, at most mm5Checks); peerGaveUp: a protected
	// Informational came before message 5 (no message 5 is checked after).
	mm5Refused uint8
	peerGaveUp bool
}

// hintInterval is the least time between two PeerLostState events of one
// SA: a flood of spoofed INVALID-COOKIE costs the owner one new phase 1
// attempt per interval at most.
const hintInterval = 5 * time.Second

// MinLifetime is the shortest phase-1 lifetime a peer may propose (IOS's
// minimum): a shorter one would make us renegotiate all the time.
const MinLifetime = time.Minute

// drop counts an ignored datagram and keeps the timer.
func (sa *SA) drop() Result {
	sa.Dropped++
	if sa.state == StateEstablished {
		sa.ignored++
	}
	return Result{Timer: sa.timer()}
}

// State returns where the SA is.
func (sa *SA) State() State { return sa.state }

// Info describes the SA; meaningful once established.
func (sa *SA) Info() Info {
	i := sa.describe()
	if sa.state == StateEstablished {
		i.DPD = sa.DPDState()
	}
	return i
}

// describe is Info without the DPD state (the Established event's).
func (sa *SA) describe() Info {
	i := Info{PeerID: sa.peerID, PeerCert: sa.peerCert, PeerVersion: sa.peerVersion, PeerDPD: sa.peerDPD}
	if !sa.establishedAt.IsZero() {
		i.Initiator = sa.initiator
		i.Local, i.Peer = sa.sh.local, sa.peer
		i.ICookie, i.RCookie = sa.icky, sa.rcky
		i.Suite = sa.suite
		i.EstablishedAt, i.Expires = sa.establishedAt, sa.expires
	}
	return i
}

// Cookies returns the SA's cookie pair.
func (sa *SA) Cookies() (isakmp.Cookie, isakmp.Cookie) { return sa.icky, sa.rcky }

// Keys returns the keying material (nil before MM4). Once the SA is
// established SKEYID and the phase-1 IV are gone (nil), unless
// Config.KeepTranscript kept them.
func (sa *SA) Keys() *Keys {
	if sa.km == nil {
		return nil
	}
	var mk *mainKeys
	if sa.hs != nil {
		mk = &sa.hs.mk
	}
	return mk.keys(sa.suite, sa.km)
}

// Peer returns the peer's address.
func (sa *SA) Peer() netip.AddrPort { return sa.peer }

func (sa *SA) fail(err error) Result {
	sa.state = StateDead
	if sa.hs != nil {
		sa.hs.deadline = time.Time{}
	}
	sa.log(slog.LevelWarn, "phase 1 failed", "err", err)
	return Result{Events: []Event{Failed{Err: err}}}
}

// role names the SA's side in its log records.
func (sa *SA) role() string {
	if sa.initiator {
		return "initiator"
	}
	return "responder"
}

// log writes one record about the SA, with its peer and role: through the
// endpoint's bounded logger until the peer is authenticated (SPEC S6),
// through the configured one after. The SA holds no logger of its own:
// the attributes are added to the records written (issue 18 F3).
func (sa *SA) log(level slog.Level, msg string, args ...any) {
	l := sa.unauthLogger()
	if l == nil || !sa.establishedAt.IsZero() {
		l = sa.cfg.logger()
	}
	sa.logTo(l, level, msg, args...)
}

// logUnauth writes a record caused by input nothing authenticated, through
// the endpoint's bounded logger whatever the SA's state.
func (sa *SA) logUnauth(level slog.Level, msg string, args ...any) {
	l := sa.unauthLogger()
	if l == nil {
		l = sa.cfg.logger()
	}
	sa.logTo(l, level, msg, args...)
}

// unauthLogger is the endpoint's bounded logger, for records before the
// peer is authenticated; nil without an Endpoint (an SA made in a test:
// cfg's is used then).
func (sa *SA) unauthLogger() *slog.Logger {
	if sa.sh == nil {
		return nil
	}
	return sa.sh.unauth
}

func (sa *SA) logTo(l *slog.Logger, level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	l.Log(ctx, level, msg, append([]any{"peer", sa.peer.String(), "role", sa.role()}, args...)...)
}

// logEnabled reports whether a record at level would be written: what a
// caller checks before it builds costly attributes.
func (sa *SA) logEnabled(level slog.Level) bool {
	l := sa.unauthLogger()
	if l == nil || !sa.establishedAt.IsZero() {
		l = sa.cfg.logger()
	}
	return l.Enabled(context.Background(), level)
}

// send records msg for retransmission and arms the timer.
func (sa *SA) send(msg []byte, now time.Time, retransmit bool) Result {
	hs := sa.hs
	hs.sent = msg
	r := Result{one: msg}
	if retransmit {
		rt := sa.cfg.retransmit()
		hs.tries, hs.rto = 1, rt.Initial
		hs.deadline = sa.capped(rt, now.Add(hs.rto))
		r.Timer = hs.deadline
	} else {
		hs.deadline = time.Time{}
		if sa.state == StateEstablished {
			r.Timer = sa.timer()
		}
	}
	return r
}

// timer is the instant the owner should call Timeout next: an
// established SA's expiry, its dead peer detection or the end of message
// 6's retransmission window, whichever is first.
func (sa *SA) timer() time.Time {
	if sa.state == StateEstablished {
		t := sa.expires
		if n := sa.dpd.next; !n.IsZero() && n.Before(t) {
			t = n
		}
		if sa.hs != nil && !sa.hs.deadline.IsZero() && sa.hs.deadline.Before(t) {
			t = sa.hs.deadline
		}
		return t
	}
	if sa.hs == nil {
		return time.Time{}
	}
	return sa.hs.deadline
}

// Timeout is called when the timer of the last Result fires: it
// retransmits, gives up, or expires the SA.
func (sa *SA) Timeout(now time.Time) Result {
	if sa.state == StateEstablished {
		if !now.Before(sa.expires) {
			sa.state = StateDead
			sa.log(slog.LevelInfo, "phase 1 lifetime expired")
			return Result{Events: []Event{Expired{}}}
		}
		if sa.hs != nil && !sa.hs.deadline.IsZero() && !now.Before(sa.hs.deadline) {
			sa.release()
		}
		if n := sa.dpd.next; !n.IsZero() && !now.Before(n) {
			return sa.dpdDue(now)
		}
		return Result{Timer: sa.timer()}
	}
	hs := sa.hs
	if sa.state == StateDead || hs == nil || hs.deadline.IsZero() || now.Before(hs.deadline) {
		return Result{Timer: sa.timer()}
	}
	if !sa.initiator && sa.state == StateMM2Sent {
		// Message 2 went to an address nothing verified: it is not
		// retransmitted, and the half-open SA just expires.
		sa.state = StateDead
		sa.log(slog.LevelDebug, "half-open SA expired: no message 3")
		return Result{}
	}
	rt := sa.cfg.retransmit()
	if end, ok := sa.giveUpAt(rt); ok && !now.Before(end) {
		return sa.fail(fmt.Errorf("%w: main mode with %s not done %v after it started (%d transmissions of %s)",
			ErrTimeout, sa.peer, rt.GiveUp, hs.tries, sa.state))
	}
	if int(hs.tries) >= rt.Tries {
		if hs.mm5Refused > 0 {
			// It answered, but never with a message 5 that authenticates
			// it (refuseMM5 reported why).
			return sa.fail(fmt.Errorf("%w: %d transmissions of %s to %s, and no message 5 that authenticated it", ErrTimeout, hs.tries, sa.state, sa.peer))
		}
		return sa.fail(fmt.Errorf("%w: %d transmissions of %s to %s", ErrTimeout, hs.tries, sa.state, sa.peer))
	}
	hs.tries++
	hs.rto = min(2*hs.rto, rt.Max)
	hs.deadline = sa.capped(rt, now.Add(hs.rto))
	if sa.waitsUnanswered() {
		// Nothing it could get back would be checked: it keeps its place
		// on the same schedule (S1), silently.
		return Result{Timer: hs.deadline}
	}
	return Result{Send: [][]byte{hs.sent}, Timer: hs.deadline}
}

// waitsUnanswered: a responder's SA past message 4 whose peer gave up (a
// protected Informational) or that had its share of message 5 checks
// (refuseMM5) drops every message 5 unchecked, so it no longer
// retransmits message 4; it waits out its time within its address's
// half-open SAs, as before.
func (sa *SA) waitsUnanswered() bool {
	return !sa.initiator && sa.state == StateMM4Sent && sa.hs != nil &&
		(sa.hs.peerGaveUp || int(sa.hs.mm5Refused) >= mm5Checks)
}

// giveUpAt is when an initiator's main mode fails if not established
// (Retransmit.GiveUp after message 1); ok is false for a responder and
// without a bound.
func (sa *SA) giveUpAt(rt Retransmit) (time.Time, bool) {
	if !sa.initiator || rt.GiveUp <= 0 {
		return time.Time{}, false
	}
	return sa.hs.startedAt.Add(rt.GiveUp), true
}

// capped brings a retransmission instant forward to the give-up time.
func (sa *SA) capped(rt Retransmit, at time.Time) time.Time {
	if end, ok := sa.giveUpAt(rt); ok && end.Before(at) {
		return end
	}
	return at
}

// span is how long a peer retransmitting on this schedule keeps sending
// one message: the sum of its timeouts.
func (r Retransmit) span() time.Duration {
	var d time.Duration
	rto := r.Initial
	for range r.Tries {
		d += rto
		rto = min(2*rto, r.Max)
	}
	return d
}

// established releases main mode's state when the SA is established. A
// responder keeps message 6 (and the digest of message 5, to recognise it
// again) for the window in which a peer that did not get message 6
// retransmits message 5, as long as our own schedule would; nothing else
// of the handshake stays (Config.KeepTranscript keeps its public values).
func (sa *SA) established(now time.Time) {
	hs := sa.hs
	if hs == nil {
		return
	}
	// hs.block goes with hs: within message 6's window a responder's
	// first phase-2 message uses it (phase2Block).
	hs.dh, hs.iv = nil, [aes.BlockSize]byte{}
	if !sa.cfg.KeepTranscript {
		hs.mk = mainKeys{} // SKEYID: cleared, not left to the collector
		hs.saiBody, hs.gxi, hs.gxr, hs.ni, hs.nr, hs.hashes = nil, nil, nil, nil, nil, nil
	}
	if sa.initiator {
		// Its first exchange's messages use main mode's block
		// (phase2Block).
		sa.p2block = hs.block
	}
	if sa.initiator || hs.sent == nil {
		sa.release()
		return
	}
	hs.deadline = now.Add(sa.cfg.retransmit().span())
}

// release ends message 6's retransmission window: at its end, or once an
// authenticated message of the peer proved it has message 6. A
// responder's main-mode state goes back to the Endpoint (shared.recycle),
// cleared: nothing refers to it once sa.hs is nil (the datagrams and
// payloads it pointed to are arrays of their own), and the one goroutine
// that owns the SA reuses it only for a new responder, in a later
// datagram's call. An initiator's is left to the collector: an Endpoint
// that only initiates (a load generator's, one per member) would keep it
// for nothing.
func (sa *SA) release() {
	if sa.hs == nil || sa.state != StateEstablished {
		return
	}
	if sa.cfg.KeepTranscript {
		sa.hs.sent, sa.hs.deadline, sa.hs.lastRecv, sa.hs.block = nil, time.Time{}, [32]byte{}, nil
		return
	}
	hs := sa.hs
	sa.hs = nil
	if !sa.initiator {
		sa.sh.recycle(hs)
	}
}

func (sa *SA) header(np isakmp.PayloadType, exch isakmp.ExchangeType, flags isakmp.Flags, mid uint32) isakmp.Header {
	return isakmp.Header{InitiatorCookie: sa.icky, ResponderCookie: sa.rcky, NextPayload: np,
		Exchange: exch, Flags: flags, MessageID: mid}
}

// vendorIDs are the Vendor ID payloads of messages 1 and 2: our version,
// DPD. An Endpoint's SAs share them, made once per version (a key server
// sends them in every registration's message 2), and only read them: the
// callers append them to slices of their own.
func (sa *SA) vendorIDs() []isakmp.Payload {
	v := sa.cfg.version()
	sh := sa.sh
	if sh == nil {
		sh = &shared{}
	}
	if sh.vids == nil || sh.vidsFor != v {
		sh.vids = []isakmp.Payload{&isakmp.VendorID{Data: v.VendorID()}, &isakmp.VendorID{Data: DPDVendorID}}
		sh.vidsFor = v
	}
	return sh.vids[:len(sh.vids):len(sh.vids)]
}

func (sa *SA) noteVendorIDs(ps []isakmp.Payload) {
	for _, p := range ps {
		vid, ok := p.(*isakmp.VendorID)
		if !ok {
			continue
		}
		if v, ok := version.FromVendorID(vid.Data); ok {
			sa.peerVersion = v
		}
		if string(vid.Data) == string(DPDVendorID) {
			sa.peerDPD = true
		}
	}
}

// phase1DOI is the DOI of our notifications and deletes: the one the
// phase-1 SA was negotiated in.
func (sa *SA) phase1DOI() isakmp.DOI {
	if sa.doi == isakmp.DOIGDOI {
		return isakmp.DOIGDOI
	}
	return isakmp.DOIIPsec
}

func (sa *SA) randBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(sa.cfg.rand(), b); err != nil {
		return nil, fmt.Errorf("ike: random: %w", err)
	}
	return b, nil
}

func find[T isakmp.Payload](ps []isakmp.Payload) T {
	var zero T
	for _, p := range ps {
		if t, ok := p.(T); ok {
			return t
		}
	}
	return zero
}

// Transcript is the public input of the key derivation, kept for
// known-answer tests against other implementations and for debugging.
type Transcript struct {
	Suite            Suite
	ICookie, RCookie isakmp.Cookie
	Ni, Nr           []byte // nonce bodies
	GXI, GXR         []byte // KE payload data
	SAi              []byte // SAi_b: the initiator's SA payload body
	IDi, IDr         []byte // ID payload bodies (IDii_b, IDir_b), once known
	HashI, HashR     []byte // HASH_I and HASH_R, once computed
}

// Transcript returns the exchange's public inputs so far. Once the SA is
// established only the cookies, the suite and the identities are left,
// unless Config.KeepTranscript kept the rest. The nonces are copies: our
// own lies in main mode's state, which the Endpoint clears and reuses
// once the SA released it (shared.recycle); so is SAi, an initiator's
// shared by its Endpoint's initiators (shared.proposal).
func (sa *SA) Transcript() Transcript {
	t := Transcript{Suite: sa.suite, ICookie: sa.icky, RCookie: sa.rcky}
	if hs := sa.hs; hs != nil {
		t.Ni, t.Nr, t.GXI, t.GXR, t.SAi = bytes.Clone(hs.ni), bytes.Clone(hs.nr), hs.gxi, hs.gxr, bytes.Clone(hs.saiBody)
		if hs.hashes != nil {
			t.HashI, t.HashR = hs.hashes[0], hs.hashes[1]
		}
	}
	local, _ := localID(sa.cfg, sa.suite.Auth, sa.sh.local.Addr())
	var peer []byte
	if sa.peerID != nil {
		peer = sa.peerID.AppendBody(nil)
	}
	var mine []byte
	if local != nil {
		mine = local.AppendBody(nil)
	}
	if sa.initiator {
		t.IDi, t.IDr = mine, peer
	} else {
		t.IDi, t.IDr = peer, mine
	}
	return t
}
