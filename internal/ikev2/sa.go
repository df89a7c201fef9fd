package ikev2

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
)

// Config is the IKE SA policy of one endpoint.
type Config struct {
	// Suites are offered in order by an initiator (one proposal each) and
	// accepted by a responder; nil: DefaultSuites.
	Suites []Suite
	// Creds are internal/ike's: the PSK by peer address, our certificate
	// chain and key, the CAs peer certificates must chain to. With a Key
	// we authenticate by signature, else by PSK; a peer may use either.
	Creds ike.Credentials
	// LocalID is the identity we send; nil: our certificate's subject DN
	// with a Key, else our address.
	LocalID *Identity
	// RemoteID, if set, is the identity the peer must authenticate as.
	RemoteID *Identity
	// CACerts are named in our CERTREQ payloads (RFC 7296 §3.7: the SHA-1
	// hashes of their public keys), asking the peer for a certificate
	// that chains to one of them; strongSwan sends its certificate only
	// when asked (send_cert = ifasked). They should be among Creds.Roots.
	CACerts []*x509.Certificate
	// AuthRequest is appended to our IKE_AUTH (GSA_AUTH) request, e.g.
	// G-IKEv2's IDg (RFC 9838 §2.3.1).
	AuthRequest []wire.Payload
	// OnAuth, if set, is asked by a responder once the initiator is
	// authenticated: it returns payloads to add to the response (G-IKEv2's
	// SAg, KD, ...) or an error, which refuses the exchange with
	// AUTHENTICATION_FAILED... unless it is a *Refusal naming another
	// notification. The SA is established either way only without error.
	OnAuth func(peer *Identity, cert *x509.Certificate, request []wire.Payload) ([]wire.Payload, error)
	// OnAuthSA, if set, replaces OnAuth and sees the SA itself: its keys
	// (SA.Keys: G-IKEv2's GSK_w wraps the group keys that GSA_AUTH's
	// response carries, RFC 9838 §2.3.1, §3.1.1), its peer's address
	// (SA.Peer) and authenticated identity (SA.Info().PeerID, PeerCert).
	// The SA is not established yet; the owner must not keep it.
	OnAuthSA func(sa *SA, request []wire.Payload) ([]wire.Payload, error)
	// NATT enables NAT traversal (RFC 7296 §2.23): NAT_DETECTION
	// notifications in IKE_SA_INIT; when they show a translation, the
	// initiator moves to UDP 4500 (NATTPort) for the rest of the SA, and a
	// responder follows a peer that moved there once a message from the
	// new port authenticates. The owner's transport sends Packet.NATT
	// datagrams from its port 4500 socket with the non-ESP marker. Off:
	// no NAT detection, and peers stay on port 500.
	NATT bool
	// Child, if set, negotiates one CHILD SA in IKE_AUTH (see
	// ChildConfig); nil: none.
	Child *ChildConfig
	// RSAPSS makes our RFC 7427 RSA signatures RSASSA-PSS (default PKCS#1
	// v1.5, as strongSwan's default).
	RSAPSS bool
	// AuthExchange is the exchange that follows IKE_SA_INIT: IKE_AUTH (the
	// zero value) or, for G-IKEv2, GSA_AUTH (RFC 9838 §2.3).
	AuthExchange wire.ExchangeType
	// Lifetime of an established IKE SA before Expired (no rekeying yet);
	// 0: ike.DefaultLifetime.
	Lifetime   time.Duration
	Retransmit ike.Retransmit // zero: ike.DefaultRetransmit
	Rand       io.Reader      // nil: crypto/rand
	Logger     *slog.Logger   // nil: discard
}

// Identity is an IKEv2 identity (RFC 7296 §3.5): ID_IPV4_ADDR (1),
// ID_FQDN (2), ID_RFC822_ADDR (3), ID_IPV6_ADDR (5), ID_DER_ASN1_DN (9).
type Identity struct {
	Type wire.IDType
	Data []byte
}

// AddrIdentity returns the ID_IPV4_ADDR or ID_IPV6_ADDR identity of a.
func AddrIdentity(a netip.Addr) *Identity {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return &Identity{Type: wire.IDIPv4Addr, Data: b[:]}
	}
	b := a.As16()
	return &Identity{Type: wire.IDIPv6Addr, Data: b[:]}
}

// body is RestOfIDPayload: type, three reserved octets, data (§2.15).
func (id *Identity) body() []byte {
	return append([]byte{byte(id.Type), 0, 0, 0}, id.Data...)
}

func (id *Identity) equal(o *Identity) bool {
	return id != nil && o != nil && id.Type == o.Type && string(id.Data) == string(o.Data)
}

func (id *Identity) String() string {
	if id == nil {
		return "<none>"
	}
	switch id.Type {
	case wire.IDIPv4Addr, wire.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case wire.IDFQDN, wire.IDRFC822Addr:
		return fmt.Sprintf("%q", id.Data)
	case wire.IDDERASN1DN:
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(id.Data, &rdn); err == nil && len(rest) == 0 {
			var n pkix.Name
			n.FillFromRDNSequence(&rdn)
			return n.String()
		}
	}
	return fmt.Sprintf("%s:%x", id.Type, id.Data)
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

func (c *Config) suites() []Suite {
	if len(c.Suites) == 0 {
		return DefaultSuites
	}
	return c.Suites
}

func (c *Config) retransmit() ike.Retransmit {
	if c.Retransmit.Tries == 0 {
		return ike.DefaultRetransmit
	}
	return c.Retransmit
}

func (c *Config) lifetime() time.Duration {
	if c.Lifetime <= 0 {
		return ike.DefaultLifetime
	}
	return c.Lifetime
}

func (c *Config) authExchange() wire.ExchangeType {
	if c.AuthExchange == 0 {
		return wire.ExchangeIKEAuth
	}
	return c.AuthExchange
}

// State is where an IKE SA is.
type State int

const (
	StateInitSent    State = iota + 1 // initiator: IKE_SA_INIT request sent
	StateHalfOpen                     // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
	StateAuthSent                     // initiator: IKE_AUTH request sent
	StateEstablished                  // both: authenticated
	StateDead                         // failed, deleted or expired
)

func (s State) String() string {
	return [...]string{"", "INIT_SENT", "HALF_OPEN", "AUTH_SENT", "ESTABLISHED", "DEAD"}[s]
}

// Errors an SA fails with (Failed.Err wraps one of them or ike.ErrAuth).
var (
	ErrTimeout = ike.ErrTimeout
	ErrRefused = ike.ErrRefused
)

// Result is what one step of an SA asks its owner to do.
type Result struct {
	Send   [][]byte
	Timer  time.Time // call Timeout then; zero: none
	Events []Event
}

// Event reports something an owner acts on or logs.
type Event interface{ event() }

// Established: both sides are authenticated. Info.Keys holds SKEYSEED and
// the SK_* keys, for tests and the exchanges built on the SA; never log
// them.
type Established struct{ Info Info }

// Failed: the SA is dead; Err wraps ike.ErrAuth, ErrTimeout or ErrRefused
// (a notification from the peer), or says what was wrong.
type Failed struct{ Err error }

// Deleted: the peer deleted the IKE SA with an authenticated Delete, or
// our Delete was answered (or went unanswered: the SA is gone either way).
type Deleted struct{}

// Expired: the SA reached its lifetime.
type Expired struct{}

// Alive: the peer answered our liveness check (an empty INFORMATIONAL).
type Alive struct{}

// Notified: an authenticated INFORMATIONAL request carried a notification
// (or a Delete of a CHILD SA, which this layer does not hold).
type Notified struct{ Notify *wire.Notify }

// Request: an authenticated request of another exchange (for G-IKEv2:
// GSA_REGISTRATION, ...) arrived on the established SA; the owner answers
// it with SA.Respond. Until then the peer's retransmissions are dropped.
type Request struct {
	Exchange  wire.ExchangeType
	MessageID uint32
	Payloads  []wire.Payload
}

// Response: the answer to a request the owner sent with SA.Request.
type Response struct {
	Exchange wire.ExchangeType
	Payloads []wire.Payload
}

func (Established) event() {}
func (Failed) event()      {}
func (Deleted) event()     {}
func (Expired) event()     {}
func (Alive) event()       {}
func (Notified) event()    {}
func (Request) event()     {}
func (Response) event()    {}

// Info describes an established SA.
type Info struct {
	Initiator     bool
	Local, Peer   netip.AddrPort
	SPIi, SPIr    wire.SPI
	Suite         Suite
	AuthMethod    AuthMethod // the peer's
	NATT          bool       // the SA moved to UDP 4500 (NAT detected or faked)
	LocalID       *Identity
	PeerID        *Identity
	PeerCert      *x509.Certificate // nil for PSK
	Keys          *Keys
	EstablishedAt time.Time
	Expires       time.Time
}

// Transcript holds what both AUTH payloads covered, for known-answer
// tests against another implementation's logs.
type Transcript struct {
	Ni, Nr, GIR []byte
	InitReq     []byte // the IKE_SA_INIT request, as sent
	InitResp    []byte // the IKE_SA_INIT response, as sent
}

// request is our outstanding request (window of 1, RFC 7296 §2.3).
type request struct {
	kind     reqKind
	exchange wire.ExchangeType
	mid      uint32
	msg      []byte
	tries    int
	rto      time.Duration
	deadline time.Time
}

type reqKind int

const (
	reqNone reqKind = iota
	reqInit
	reqAuth
	reqDelete
	reqLiveness
	reqOwner
)

// SA is one IKE SA. It is sans-IO and owned by one goroutine (its
// Endpoint's).
type SA struct {
	cfg       *Config
	log       *slog.Logger
	initiator bool
	local     netip.AddrPort
	peer      netip.AddrPort
	spii      wire.SPI
	spir      wire.SPI
	state     State
	suite     Suite
	keys      *Keys
	in, out   *SKCipher

	dh          ike.PrivateKey
	group       uint16
	ni, nr      []byte
	gir         []byte
	initReq     []byte // IKE_SA_INIT request as sent (initiator) or received (responder)
	initResp    []byte // IKE_SA_INIT response as received (initiator) or sent (responder)
	cookie      []byte // initiator: the responder's COOKIE to echo
	kePayload   []byte
	peerHashes  []uint16
	peerNoChild bool            // the peer announced CHILDLESS_IKEV2_SUPPORTED
	refusedBy   wire.NotifyType // initiator: an unprotected refusal of IKE_SA_INIT seen
	childSPI    uint32          // initiator: the inbound SPI of the CHILD SA asked for
	from        netip.AddrPort  // where the datagram being handled came from
	floated     bool            // the SA runs on the NAT-T port (§2.23)
	halfFrom    netip.AddrPort  // responder: the address of IKE_SA_INIT, its Endpoint.pending key

	// Our requests: the next Message ID and the outstanding one.
	nextMID uint32
	req     request
	// The peer's requests: the Message ID we expect next, and our answer
	// to the last one with the digest of that request (§2.1: a
	// retransmitted request is answered with the same response).
	peerMID      uint32
	lastResp     []byte
	lastReqHash  [32]byte
	ownerPending bool // a Request event awaits Respond
	ownerMID     uint32
	ownerExch    wire.ExchangeType

	halfOpenTTL time.Duration
	halfOpenEnd time.Time
	info        Info

	// Dropped counts datagrams ignored as stale, duplicate, unverifiable or
	// malformed; resent counts stored responses sent again.
	Dropped int
	resent  int
}

// State returns where the SA is.
func (sa *SA) State() State { return sa.state }

// Peer is the peer's address.
func (sa *SA) Peer() netip.AddrPort { return sa.peer }

// SPIs returns the initiator's and the responder's SPI.
func (sa *SA) SPIs() (wire.SPI, wire.SPI) { return sa.spii, sa.spir }

// Info describes the SA (complete once established).
func (sa *SA) Info() Info { return sa.info }

// Keys returns the SA's keys (nil before IKE_SA_INIT completed).
func (sa *SA) Keys() *Keys { return sa.keys }

// Transcript returns the nonces, g^ir and IKE_SA_INIT messages.
func (sa *SA) Transcript() Transcript {
	return Transcript{Ni: sa.ni, Nr: sa.nr, GIR: sa.gir, InitReq: sa.initReq, InitResp: sa.initResp}
}

func (sa *SA) ourSPI() wire.SPI {
	if sa.initiator {
		return sa.spii
	}
	return sa.spir
}

func (sa *SA) fail(err error) Result {
	sa.state = StateDead
	sa.req = request{}
	sa.log.Warn("IKE SA failed", "err", err)
	return Result{Events: []Event{Failed{Err: err}}}
}

func (sa *SA) drop() Result {
	sa.Dropped++
	return Result{Timer: sa.timer()}
}

// timer is when Timeout should run next.
func (sa *SA) timer() time.Time {
	var t time.Time
	earliest := func(x time.Time) {
		if !x.IsZero() && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	switch sa.state {
	case StateDead:
		return time.Time{}
	case StateHalfOpen:
		earliest(sa.halfOpenEnd)
	case StateEstablished:
		earliest(sa.info.Expires)
	}
	if sa.req.kind != reqNone {
		earliest(sa.req.deadline)
	}
	return t
}

// Timeout runs the timer: retransmits our outstanding request with the
// same bytes (§2.1), gives up, expires a half-open or established SA.
func (sa *SA) Timeout(now time.Time) Result {
	switch {
	case sa.state == StateDead:
		return Result{}
	case sa.state == StateHalfOpen && !now.Before(sa.halfOpenEnd):
		sa.state = StateDead
		sa.log.Debug("half-open IKE SA expired: no IKE_AUTH")
		return Result{}
	case sa.state == StateEstablished && !now.Before(sa.info.Expires):
		sa.state = StateDead
		sa.log.Info("IKE SA lifetime expired")
		return Result{Events: []Event{Expired{}}}
	}
	r := &sa.req
	if r.kind == reqNone || now.Before(r.deadline) {
		return Result{Timer: sa.timer()}
	}
	rt := sa.cfg.retransmit()
	if r.tries >= rt.Tries {
		if r.kind == reqDelete {
			sa.state = StateDead
			sa.req = request{}
			return Result{Events: []Event{Deleted{}}}
		}
		if sa.refusedBy != 0 && r.kind == reqInit {
			return sa.fail(fmt.Errorf("%w: %s (unprotected) and no other answer to %d transmissions", ErrRefused, sa.refusedBy, r.tries))
		}
		return sa.fail(fmt.Errorf("%w: %d transmissions of %s to %s", ErrTimeout, r.tries, r.exchange, sa.peer))
	}
	r.tries++
	r.rto = min(2*r.rto, rt.Max)
	r.deadline = now.Add(r.rto)
	return Result{Send: [][]byte{r.msg}, Timer: sa.timer()}
}

// sendRequest records msg as the outstanding request and arms its timer.
func (sa *SA) sendRequest(kind reqKind, exch wire.ExchangeType, mid uint32, msg []byte, now time.Time) Result {
	rt := sa.cfg.retransmit()
	sa.req = request{kind: kind, exchange: exch, mid: mid, msg: msg, tries: 1, rto: rt.Initial, deadline: now.Add(rt.Initial)}
	return Result{Send: [][]byte{msg}, Timer: sa.timer()}
}

func (sa *SA) randBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(sa.cfg.rand(), b); err != nil {
		return nil, fmt.Errorf("ikev2: random: %w", err)
	}
	return b, nil
}

func (sa *SA) header(exch wire.ExchangeType, mid uint32, response bool) wire.Header {
	h := wire.Header{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, MessageID: mid}
	if sa.initiator {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	return h
}

// seal builds a message whose payloads ps travel in an SK payload.
func (sa *SA) seal(exch wire.ExchangeType, mid uint32, response bool, ps []wire.Payload) ([]byte, error) {
	plain, err := wire.AppendPayloads(nil, ps)
	if err != nil {
		return nil, err
	}
	inner := wire.PayloadNone
	if len(ps) > 0 {
		inner = ps[0].Type()
	}
	sk := &wire.Encrypted{Inner: inner, Data: make([]byte, sa.out.SealedLen(len(plain)))}
	m := &wire.Message{Header: sa.header(exch, mid, response), Payloads: []wire.Payload{sk}}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return sa.out.Seal(b[:len(b)-len(sk.Data)], plain, sa.cfg.rand())
}

// open verifies and decrypts the SK payload of m (pkt's parse) and
// returns its inner payloads. Any failure is an unverifiable message,
// dropped without an answer (§2.21.2).
func (sa *SA) open(m *wire.Message, pkt []byte) ([]wire.Payload, error) {
	sk := m.Encrypted()
	if sk == nil || sa.in == nil {
		return nil, errors.New("ikev2: no SK payload")
	}
	at, err := wire.EncryptedDataOffset(pkt)
	if err != nil {
		return nil, err
	}
	plain, err := sa.in.Open(pkt, at)
	if err != nil {
		return nil, err
	}
	if sa.from.IsValid() && sa.from != sa.peer {
		// Authenticated from the peer's NAT-T port: follow it (the
		// Endpoint lets only that change through).
		sa.peer, sa.floated = sa.from, true
	}
	return wire.ParseInner(sk.Inner, plain)
}

// Handle processes one datagram of this SA (its Endpoint routed it here
// by SPI).
func (sa *SA) Handle(pkt []byte, now time.Time) Result {
	if sa.state == StateDead {
		return Result{}
	}
	m, err := wire.Parse(pkt)
	if err != nil {
		return sa.drop()
	}
	h := m.Header
	// The I flag names the original initiator: a message from our peer
	// has it set exactly when we are the responder.
	if h.IsInitiator() == sa.initiator {
		return sa.drop()
	}
	if h.IsResponse() {
		return sa.onResponse(m, pkt, now)
	}
	return sa.onRequest(m, pkt, now)
}

// onRequest handles a request of the peer: a retransmission of the last
// one gets the stored response again; the next one is processed; anything
// else is dropped (§2.3, window of 1).
func (sa *SA) onRequest(m *wire.Message, pkt []byte, now time.Time) Result {
	mid := m.Header.MessageID
	if sa.lastResp != nil && mid+1 == sa.peerMID {
		if sha256.Sum256(pkt) != sa.lastReqHash {
			return sa.drop() // the same Message ID with other bytes: not a retransmission
		}
		sa.resent++
		return Result{Send: [][]byte{sa.lastResp}, Timer: sa.timer()}
	}
	if mid != sa.peerMID || sa.ownerPending {
		return sa.drop()
	}
	switch {
	case sa.state == StateHalfOpen && m.Header.Exchange == sa.cfg.authExchange() && mid == 1:
		return sa.onAuthRequest(m, pkt, now)
	case sa.state == StateEstablished && m.Header.Exchange == wire.ExchangeInformational:
		return sa.onInformational(m, pkt, now)
	case sa.state == StateEstablished && m.Header.Exchange != wire.ExchangeIKESAInit && m.Header.Exchange != wire.ExchangeIKEAuth:
		ps, err := sa.open(m, pkt)
		if err != nil {
			return sa.drop()
		}
		sa.ownerPending, sa.ownerMID, sa.ownerExch = true, mid, m.Header.Exchange
		sa.lastReqHash = sha256.Sum256(pkt)
		return Result{Timer: sa.timer(), Events: []Event{Request{Exchange: m.Header.Exchange, MessageID: mid, Payloads: ps}}}
	}
	return sa.drop()
}

// respond sends and stores the response to the request pkt.
func (sa *SA) respond(pkt, resp []byte) Result {
	sa.lastReqHash = sha256.Sum256(pkt)
	sa.lastResp = resp
	sa.peerMID++
	return Result{Send: [][]byte{resp}, Timer: sa.timer()}
}

// Respond answers the Request event the SA reported last, with payloads
// protected in the SK payload.
func (sa *SA) Respond(payloads []wire.Payload, now time.Time) (Result, error) {
	if !sa.ownerPending || sa.state != StateEstablished {
		return Result{}, errors.New("ikev2: no request to answer")
	}
	msg, err := sa.seal(sa.ownerExch, sa.ownerMID, true, payloads)
	if err != nil {
		return Result{}, err
	}
	sa.ownerPending = false
	sa.lastResp = msg
	sa.peerMID++
	return Result{Send: [][]byte{msg}, Timer: sa.timer()}, nil
}

// Request sends a request of exchange exch with payloads protected in the
// SK payload on an established SA; its answer is a Response event (or
// Failed after the retransmissions). One request at a time.
func (sa *SA) Request(exch wire.ExchangeType, payloads []wire.Payload, now time.Time) (Result, error) {
	return sa.request(reqOwner, exch, payloads, now)
}

func (sa *SA) request(kind reqKind, exch wire.ExchangeType, payloads []wire.Payload, now time.Time) (Result, error) {
	if sa.state != StateEstablished {
		return Result{}, fmt.Errorf("ikev2: SA is %s, not established", sa.state)
	}
	if sa.req.kind != reqNone {
		return Result{}, errors.New("ikev2: a request is outstanding (window of 1)")
	}
	msg, err := sa.seal(exch, sa.nextMID, false, payloads)
	if err != nil {
		return Result{}, err
	}
	mid := sa.nextMID
	sa.nextMID++
	return sa.sendRequest(kind, exch, mid, msg, now), nil
}

// Delete sends an INFORMATIONAL Delete of the IKE SA (§1.4.1); the SA is
// gone once the peer answers or the retransmissions end (Deleted).
func (sa *SA) Delete(now time.Time) (Result, error) {
	return sa.request(reqDelete, wire.ExchangeInformational, []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}}, now)
}

// Liveness sends an empty INFORMATIONAL request (§1.4): Alive when
// answered, Failed with ErrTimeout when not.
func (sa *SA) Liveness(now time.Time) (Result, error) {
	return sa.request(reqLiveness, wire.ExchangeInformational, nil, now)
}

// onResponse handles the answer to our outstanding request.
func (sa *SA) onResponse(m *wire.Message, pkt []byte, now time.Time) Result {
	r := sa.req
	if r.kind == reqNone || m.Header.MessageID != r.mid || m.Header.Exchange != r.exchange {
		return sa.drop()
	}
	switch r.kind {
	case reqInit:
		return sa.onInitResponse(m, pkt, now)
	case reqAuth:
		return sa.onAuthResponse(m, pkt, now)
	}
	ps, err := sa.open(m, pkt)
	if err != nil {
		return sa.drop()
	}
	sa.req = request{}
	switch r.kind {
	case reqDelete:
		sa.state = StateDead
		return Result{Events: []Event{Deleted{}}}
	case reqLiveness:
		return Result{Timer: sa.timer(), Events: []Event{Alive{}}}
	}
	return Result{Timer: sa.timer(), Events: []Event{Response{Exchange: r.exchange, Payloads: ps}}}
}

// onInformational answers an authenticated INFORMATIONAL request: a Delete
// of the IKE SA is answered with an empty response and ends the SA;
// notifications and CHILD SA Deletes (we hold none) are reported and
// answered empty; an empty request is a liveness check (§1.4.1).
func (sa *SA) onInformational(m *wire.Message, pkt []byte, now time.Time) Result {
	ps, err := sa.open(m, pkt)
	if err != nil {
		return sa.drop()
	}
	var events []Event
	deleteIKE := false
	for _, p := range ps {
		switch q := p.(type) {
		case *wire.Delete:
			if q.Protocol == wire.ProtoIKE {
				deleteIKE = true
			}
		case *wire.Notify:
			events = append(events, Notified{Notify: q})
		}
	}
	resp, err := sa.seal(wire.ExchangeInformational, m.Header.MessageID, true, nil)
	if err != nil {
		return sa.fail(err)
	}
	r := sa.respond(pkt, resp)
	if deleteIKE {
		sa.state = StateDead
		sa.req = request{}
		sa.log.Info("peer deleted the IKE SA")
		r.Timer = time.Time{}
		events = append(events, Deleted{})
	}
	r.Events = events
	return r
}
