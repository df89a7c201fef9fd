package ike

import (
	"crypto/rand"
	"crypto/sha256"
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
	Tries   int           // transmissions before giving up
}

// DefaultRetransmit waits 2 s, then 4, 8, 16, 16 s: about 46 s in all.
var DefaultRetransmit = Retransmit{Initial: 2 * time.Second, Max: 16 * time.Second, Tries: 5}

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
	DPD    DPD
	Rand   io.Reader    // nil: crypto/rand
	Logger *slog.Logger // nil: discard
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

func (c *Config) version() version.Version {
	if c.Version.IsZero() {
		return version.Current
	}
	return c.Version
}

func (c *Config) retransmit() Retransmit {
	if c.Retransmit.Tries == 0 {
		return DefaultRetransmit
	}
	return c.Retransmit
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
}

// Event reports something an owner acts on or logs.
type Event interface{ event() }

// Established: the SA is authenticated; GROUPKEY-PULL may run inside it.
type Established struct{ Info Info }

// Failed: the SA is dead. Err wraps ErrAuth for authentication failures,
// ErrTimeout when the peer stopped answering, ErrRefused when the peer said
// no with a notification.
type Failed struct{ Err error }

// Deleted: the peer deleted the SA with an Informational Delete, or the
// Endpoint deleted it (sending the Delete) because the same peer identity
// announced INITIAL-CONTACT on a newer SA.
type Deleted struct{}

// Phase2: a message of another exchange (GROUPKEY-PULL, ...) arrived on
// the established SA; its owner decrypts it with DecryptPhase2.
type Phase2 struct{ Msg *isakmp.Message }

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

func (Established) event()    {}
func (Failed) event()         {}
func (Deleted) event()        {}
func (Notified) event()       {}
func (Expired) event()        {}
func (Phase2) event()         {}
func (InitialContact) event() {}
func (PeerLostState) event()  {}

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
// not safe for concurrent use: one goroutine owns it (DESIGN.md §3).
type SA struct {
	cfg       *Config
	log       *slog.Logger
	initiator bool
	local     netip.AddrPort
	peer      netip.AddrPort
	icky      isakmp.Cookie
	rcky      isakmp.Cookie
	state     State
	suite     Suite
	doi       isakmp.DOI // of the phase-1 SA payload

	saiBody    []byte // SAi_b: the initiator's SA payload body
	dh         PrivateKey
	gxi, gxr   []byte
	ni, nr     []byte
	keys       *Keys
	iv         []byte // phase-1 CBC IV chain
	lastBlock  []byte // last CBC block of phase 1, seed of phase-2 IVs
	peerWantCR bool

	sent      []byte   // last datagram sent, for retransmission
	lastRecv  [32]byte // digest of the last datagram accepted from the peer
	tries     int
	rto       time.Duration
	deadline  time.Time
	startedAt time.Time

	halfOpenTTL time.Duration // responder: life in MM2_SENT without message 3
	resends     int           // responder: message 2 sent again for a repeated message 1
	lastHint    time.Time     // last PeerLostState reported

	info           Info
	phase2IVs      map[uint32][]byte
	hashI          []byte
	hashR          []byte
	dpdSeq         uint32 // of the last R-U-THERE sent
	dpd            dpdState
	initialContact bool // the peer sent INITIAL-CONTACT

	// Dropped counts datagrams ignored as stale, duplicate or malformed;
	// ignored counts those of them an established SA ignored.
	Dropped int
	ignored int
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
	i := sa.info
	if sa.state == StateEstablished {
		i.DPD = sa.DPDState()
	}
	return i
}

// Cookies returns the SA's cookie pair.
func (sa *SA) Cookies() (isakmp.Cookie, isakmp.Cookie) { return sa.icky, sa.rcky }

// Keys returns the keying material (nil before MM4).
func (sa *SA) Keys() *Keys { return sa.keys }

// Peer returns the peer's address.
func (sa *SA) Peer() netip.AddrPort { return sa.peer }

func (sa *SA) fail(err error) Result {
	sa.state = StateDead
	sa.deadline = time.Time{}
	sa.log.Warn("phase 1 failed", "err", err)
	return Result{Events: []Event{Failed{Err: err}}}
}

// send records msg for retransmission and arms the timer.
func (sa *SA) send(msg []byte, now time.Time, retransmit bool) Result {
	sa.sent = msg
	r := Result{Send: [][]byte{msg}}
	if retransmit {
		rt := sa.cfg.retransmit()
		sa.tries, sa.rto = 1, rt.Initial
		sa.deadline = now.Add(sa.rto)
		r.Timer = sa.deadline
	} else {
		sa.deadline = time.Time{}
		if sa.state == StateEstablished {
			r.Timer = sa.timer()
		}
	}
	return r
}

// timer is the instant the owner should call Timeout next: an
// established SA's expiry or its dead peer detection, whichever is first.
func (sa *SA) timer() time.Time {
	if sa.state == StateEstablished {
		if n := sa.dpd.next; !n.IsZero() && n.Before(sa.info.Expires) {
			return n
		}
		return sa.info.Expires
	}
	return sa.deadline
}

// Timeout is called when the timer of the last Result fires: it
// retransmits, gives up, or expires the SA.
func (sa *SA) Timeout(now time.Time) Result {
	if sa.state == StateEstablished {
		if !now.Before(sa.info.Expires) {
			sa.state = StateDead
			sa.log.Info("phase 1 lifetime expired")
			return Result{Events: []Event{Expired{}}}
		}
		if n := sa.dpd.next; !n.IsZero() && !now.Before(n) {
			return sa.dpdDue(now)
		}
		return Result{Timer: sa.timer()}
	}
	if sa.state == StateDead || sa.deadline.IsZero() || now.Before(sa.deadline) {
		return Result{Timer: sa.deadline}
	}
	if !sa.initiator && sa.state == StateMM2Sent {
		// Message 2 went to an address nothing verified: it is not
		// retransmitted, and the half-open SA just expires.
		sa.state = StateDead
		sa.log.Debug("half-open SA expired: no message 3")
		return Result{}
	}
	rt := sa.cfg.retransmit()
	if sa.tries >= rt.Tries {
		return sa.fail(fmt.Errorf("%w: %d transmissions of %s to %s", ErrTimeout, sa.tries, sa.state, sa.peer))
	}
	sa.tries++
	sa.rto = min(2*sa.rto, rt.Max)
	sa.deadline = now.Add(sa.rto)
	return Result{Send: [][]byte{sa.sent}, Timer: sa.deadline}
}

// duplicate reports whether pkt repeats the last datagram we accepted;
// the answer to a repeat is our last datagram again (RFC 2408 §5).
func (sa *SA) duplicate(pkt []byte) bool { return sha256.Sum256(pkt) == sa.lastRecv }

func (sa *SA) accepted(pkt []byte) { sa.lastRecv = sha256.Sum256(pkt) }

func (sa *SA) header(np isakmp.PayloadType, exch isakmp.ExchangeType, flags isakmp.Flags, mid uint32) isakmp.Header {
	return isakmp.Header{InitiatorCookie: sa.icky, ResponderCookie: sa.rcky, NextPayload: np,
		Exchange: exch, Flags: flags, MessageID: mid}
}

func (sa *SA) vendorIDs() []isakmp.Payload {
	return []isakmp.Payload{&isakmp.VendorID{Data: sa.cfg.version().VendorID()}, &isakmp.VendorID{Data: DPDVendorID}}
}

func (sa *SA) noteVendorIDs(ps []isakmp.Payload) {
	for _, p := range ps {
		vid, ok := p.(*isakmp.VendorID)
		if !ok {
			continue
		}
		if v, ok := version.FromVendorID(vid.Data); ok {
			sa.info.PeerVersion = v
		}
		if string(vid.Data) == string(DPDVendorID) {
			sa.info.PeerDPD = true
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

// Transcript returns the exchange's public inputs so far.
func (sa *SA) Transcript() Transcript {
	t := Transcript{Suite: sa.suite, ICookie: sa.icky, RCookie: sa.rcky, Ni: sa.ni, Nr: sa.nr,
		GXI: sa.gxi, GXR: sa.gxr, SAi: sa.saiBody, HashI: sa.hashI, HashR: sa.hashR}
	local, _ := localID(sa.cfg, sa.suite.Auth, sa.local.Addr())
	var peer []byte
	if sa.info.PeerID != nil {
		peer = sa.info.PeerID.AppendBody(nil)
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
