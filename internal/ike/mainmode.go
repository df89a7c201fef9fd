package ike

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// nonceLen is the length of our nonces (RFC 2409 §5: 8 to 256 octets).
const nonceLen = 32

// newInitiator starts main mode toward peer for an SA of the Endpoint
// whose shared is sh: it returns the SA and the Result carrying message 1
// (HDR, SA, VID, VID).
func newInitiator(cfg *Config, sh *shared, peer netip.AddrPort, now time.Time) (*SA, Result, error) {
	if len(cfg.Suites) == 0 {
		return nil, Result{}, errors.New("ike: no phase-1 suites configured")
	}
	sa := &SA{cfg: cfg, initiator: true, sh: sh, peer: peer, hs: &mmState{startedAt: now}}
	ck, err := sa.randBytes(8)
	if err != nil {
		return nil, Result{}, err
	}
	copy(sa.icky[:], ck)
	p, err := sh.proposal(cfg)
	if err != nil {
		return nil, Result{}, err
	}
	sa.doi = p.sa.DOI
	sa.hs.saiBody = p.body
	msg, err := sa.marshal(0, append([]isakmp.Payload{p.sa}, sa.vendorIDs()...))
	if err != nil {
		return nil, Result{}, err
	}
	sa.state = StateMM1Sent
	return sa, sa.send(msg, now, true).public(), nil
}

// initProposal is an initiator's SA payload of message 1 and its body
// (SAi_b), for a config's DOI and suites.
type initProposal struct {
	doi    isakmp.DOI
	suites []Suite // a copy of the config's
	sa     *isakmp.SA
	body   []byte
}

// proposal returns message 1's SA payload for cfg. The SAs of an
// Endpoint propose the same: it is made once while cfg's DOI and suites
// stay what they were, and kept in the scratch (issue 18: a load
// generator's Endpoint runs a main mode per registration). The SAs only
// encode it and hash its body.
func (sh *shared) proposal(cfg *Config) (*initProposal, error) {
	scr := sh.scr()
	if p := scr.proposal; p != nil && p.doi == cfg.DOI && slices.Equal(p.suites, cfg.Suites) {
		return p, nil
	}
	prop := &isakmp.Proposal{Number: 1, Protocol: isakmp.ProtoISAKMP}
	for i, s := range cfg.Suites {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		prop.Transforms = append(prop.Transforms, s.transform(uint8(i+1)))
	}
	doi := cfg.DOI
	if doi == isakmp.DOIISAKMP {
		doi = isakmp.DOIIPsec
	}
	saP := &isakmp.SA{DOI: doi, Situation: isakmp.SituationIdentityOnly, Proposals: []*isakmp.Proposal{prop}}
	p := &initProposal{doi: cfg.DOI, suites: slices.Clone(cfg.Suites), sa: saP, body: saP.AppendBody(nil)}
	scr.proposal = p
	return p, nil
}

// newResponder creates the responder SA for a message 1; the Endpoint has
// already chosen the responder cookie. local is the Endpoint's, shared by
// its SAs.
func newResponder(cfg *Config, sh *shared, peer netip.AddrPort, icky, rcky isakmp.Cookie, now time.Time) *SA {
	return &SA{cfg: cfg, sh: sh, peer: peer, icky: icky, rcky: rcky, hs: sh.newMMState(now)}
}

func (sa *SA) marshal(mid uint32, ps []isakmp.Payload) ([]byte, error) {
	m := &isakmp.Message{Header: sa.header(0, isakmp.ExchangeIdentityProt, 0, mid), Payloads: ps}
	return m.Marshal()
}

// marshalEncrypted builds a phase-1 message 5 or 6: the payloads encrypted
// with the phase-1 IV chain.
func (sa *SA) marshalEncrypted(ps []isakmp.Payload) ([]byte, error) {
	b, err := sa.phase1Cipher()
	if err != nil {
		return nil, err
	}
	msg, err := sealMessage(sa.header(ps[0].Type(), isakmp.ExchangeIdentityProt, isakmp.FlagEncryption, 0), b, sa.hs.iv[:], ps)
	if err != nil {
		return nil, err
	}
	copy(sa.hs.iv[:], msg[len(msg)-aes.BlockSize:])
	return msg, nil
}

// Handle processes one datagram from the peer for this SA. The state is
// checked before anything in the message can change it: an established
// SA ignores (and counts) every main-mode message, and only an
// authenticated Informational can delete it (SPEC S2).
func (sa *SA) Handle(pkt []byte, now time.Time) Result { return sa.handle(pkt, now).public() }

// handle is Handle, its Result's one and ev not yet moved (Result.public).
func (sa *SA) handle(pkt []byte, now time.Time) Result {
	if sa.state == StateDead {
		sa.Dropped++
		return Result{}
	}
	var digest [32]byte // of pkt, once computed (hashed once a datagram)
	hashed := false
	if sa.hs != nil && sa.hs.sent != nil {
		digest, hashed = sha256.Sum256(pkt), true
	}
	if hashed && digest == sa.hs.lastRecv {
		if !sa.initiator && sa.state == StateMM2Sent {
			// Message 1 again: message 2 again, as many times as an
			// initiator retransmits, no more (nothing verified the address).
			if int(sa.hs.resends) >= sa.cfg.retransmit().Tries {
				return sa.drop()
			}
			sa.hs.resends++
		}
		if sa.waitsUnanswered() {
			return sa.drop() // message 3 again: message 4 is no longer sent
		}
		// The peer did not get our answer: send it again, unchanged.
		return Result{one: sa.hs.sent, Timer: sa.timer()}
	}
	// In place: pkt is the caller's for the call only, and what the SA
	// keeps of it is copied (peerKE, cloneID, SAi_b re-encoded; an
	// encrypted body is decrypted into a buffer of its own, or, with a
	// pre-shared key, into the endpoint's scratch, cleared once the
	// message is handled); a Phase2
	// event's Msg lies in pkt like its Raw.
	m, err := isakmp.ParseMessageInPlace(pkt)
	if err != nil {
		if sit, ok := situation(pkt); ok && !sa.initiator && sa.state == 0 && sit&^isakmp.SituationIdentityOnly != 0 {
			// The parser cannot read the labelled domains of SIT_SECRECY
			// and SIT_INTEGRITY; the answer is the one RFC 2408 names.
			res := sa.fail(fmt.Errorf("message 1 proposes situation %#x (want SIT_IDENTITY_ONLY)", sit))
			if msg, err := sa.notifyMessage(isakmp.NotifySituationNotSupported, false); err == nil {
				res.Send = [][]byte{msg}
			}
			return res
		}
		sa.logUnauth(slog.LevelDebug, "dropped malformed datagram", "err", err)
		return sa.drop()
	}
	if m.Header.Exchange == isakmp.ExchangeInformational {
		return sa.informational(m, pkt, now)
	}
	if m.Header.Exchange != isakmp.ExchangeIdentityProt {
		if sa.state == StateEstablished && m.Encrypted() && m.Header.MessageID != 0 {
			return Result{Timer: sa.timer(), ev: [2]Event{Phase2{Msg: m, Raw: pkt}}}
		}
		return sa.drop()
	}
	var step func(*isakmp.Message, time.Time) (Result, error)
	switch {
	case sa.state == StateEstablished:
		// Main mode is over: a late or forged message changes nothing.
		sa.logUnauth(slog.LevelDebug, "ignored main-mode message on an established SA")
		return sa.drop()
	case m.Header.ResponderCookie != sa.rcky && !(sa.initiator && sa.state == StateMM1Sent) && sa.state != 0:
		return sa.drop() // a message 1 again, but not the same one
	case sa.initiator && sa.state == StateMM1Sent && !m.Encrypted():
		step = sa.onMM2
	case sa.initiator && sa.state == StateMM3Sent && !m.Encrypted():
		step = sa.onMM4
	case sa.initiator && sa.state == StateMM5Sent && m.Encrypted():
		step = sa.onMM6
	case !sa.initiator && sa.state == 0 && !m.Encrypted():
		step = sa.onMM1
	case !sa.initiator && sa.state == StateMM2Sent && !m.Encrypted():
		step = sa.onMM3
	case !sa.initiator && sa.state == StateMM4Sent && m.Encrypted():
		if sa.waitsUnanswered() {
			// Its peer gave up (a protected Informational), or it had
			// its share of checks (refuseMM5): dropped unchecked.
			return sa.drop()
		}
		step = sa.onMM5
	default:
		sa.logUnauth(slog.LevelDebug, "dropped out-of-state message", "state", sa.state)
		return sa.drop()
	}
	for _, p := range m.Payloads {
		if raw, ok := p.(*isakmp.RawPayload); ok && raw.PayloadType < 128 {
			// RFC 2408 §5.1: an unknown payload type in a known range is
			// an error, answered with INVALID-PAYLOAD-TYPE.
			res := sa.fail(fmt.Errorf("peer %s sent a %s payload in main mode", sa.peer.Addr(), raw.PayloadType))
			if msg, err := sa.notifyMessage(isakmp.NotifyInvalidPayloadType, false); err == nil {
				res.Send = [][]byte{msg}
			}
			return res
		}
	}
	// A responder's message 5 is the peer's first authenticated word:
	// until it verifies, it changes nothing (refuseMM5).
	var before authState
	if !sa.initiator && sa.state == StateMM4Sent {
		before = sa.authState()
	}
	r, err := step(m, now)
	var refused mm5Refused
	if errors.As(err, &refused) {
		return sa.refuseMM5(refused, before)
	}
	if err != nil {
		var ne *notifyError
		if errors.As(err, &ne) {
			res := sa.fail(err)
			if msg, merr := sa.notifyMessage(ne.notify, ne.encrypted); merr == nil {
				res.Send = [][]byte{msg}
			}
			return res
		}
		return sa.fail(err)
	}
	if sa.hs != nil && sa.hs.sent != nil {
		// The digest recognises the peer's retransmission of pkt
		// (RFC 2408 §5): the answer to a repeat is our datagram again.
		if !hashed {
			digest = sha256.Sum256(pkt)
		}
		sa.hs.lastRecv = digest
	}
	return r
}

// authState is what handling a message 5 may change before it is known
// to authenticate the peer: the CBC IV chain (decryptPhase1 moves it to
// the message's last block), the phase-2 seed (a protected notification
// seeds it), the INITIAL-CONTACT mark, the peer's ID and certificate.
type authState struct {
	iv, lastBlock [aes.BlockSize]byte
	seeded, ic    bool
	peerID        *isakmp.ID
	peerCert      *x509.Certificate
	p2iv          [aes.BlockSize]byte
	p2mid         uint32
}

func (sa *SA) authState() authState {
	return authState{iv: sa.hs.iv, lastBlock: sa.lastBlock, seeded: sa.seeded, ic: sa.initialContact,
		peerID: sa.peerID, peerCert: sa.peerCert, p2iv: sa.p2iv, p2mid: sa.p2mid}
}

// mm5Refused is a responder's message 5 that does not authenticate its
// peer: it does not decrypt or parse, or its ID, HASH, certificates or
// signature do not check.
type mm5Refused struct{ err error }

func (r mm5Refused) Error() string { return r.err.Error() }
func (r mm5Refused) Unwrap() error { return r.err }

// mm5Checks is how many message 5s a responder's SA checks before it drops
// them unchecked: one for each transmission of message 4 (DefaultRetransmit).
const mm5Checks = 5

// refuseMM5 answers a responder's message 5 that does not authenticate its
// peer without failing the SA. The first refusal gets the notification a
// failure sends (a peer with another pre-shared key or certificate learns
// why) and is reported (PeerNotAuthenticated); each is counted (Dropped)
// and logged through the bounded logger; what it changed is undone
// (before). The SA waits on, within its address's half-open SAs, until its
// message 4's transmissions end, for a message 5 that authenticates:
// anybody who saw the cookies could have sent the refused one. It checks
// at most mm5Checks of them (its peer sends one per message 4 it gets):
// past that they are dropped unchecked, so that one agreement buys a
// bounded amount of checking (a message 5 carries certificates the peer
// chose). Failing at once freed that place: an
// address that sent junk after message 3 had us compute the next
// agreement at once, without bound (S1), and anybody who saw a member's
// cookies could end its main mode with one datagram (S2).
func (sa *SA) refuseMM5(rf mm5Refused, before authState) Result {
	var res Result
	err := rf.err
	if sa.hs.mm5Refused == 0 {
		res.Events = []Event{PeerNotAuthenticated{Err: err}}
		var ne *notifyError
		if errors.As(err, &ne) {
			if msg, merr := sa.notifyMessage(ne.notify, ne.encrypted); merr == nil {
				res.Send = [][]byte{msg}
			}
		}
	}
	sa.hs.mm5Refused++
	sa.hs.iv, sa.lastBlock, sa.seeded, sa.initialContact = before.iv, before.lastBlock, before.seeded, before.ic
	sa.peerID, sa.peerCert, sa.p2iv, sa.p2mid = before.peerID, before.peerCert, before.p2iv, before.p2mid
	sa.Dropped++
	sa.log(slog.LevelWarn, "phase 1: message 5 refused, waiting for one that authenticates", "err", err)
	res.Timer = sa.timer()
	return res
}

// situation reads the Situation of a cleartext message whose first
// payload is an SA payload of the IPsec or GDOI DOI: header, generic
// payload header, DOI, Situation.
func situation(pkt []byte) (uint32, bool) {
	const at = isakmp.HeaderLen + 4 + 4
	if len(pkt) < at+4 || isakmp.PayloadType(pkt[16]) != isakmp.PayloadSA || isakmp.Flags(pkt[19])&isakmp.FlagEncryption != 0 {
		return 0, false
	}
	if doi := isakmp.DOI(binary.BigEndian.Uint32(pkt[at-4:])); doi != isakmp.DOIIPsec && doi != isakmp.DOIGDOI {
		return 0, false
	}
	return binary.BigEndian.Uint32(pkt[at:]), true
}

// notifyError is a failure that is answered with a notification.
type notifyError struct {
	notify    isakmp.NotifyType
	encrypted bool // phase-1 keys exist: send it in a protected Informational
	err       error
}

func (e *notifyError) Error() string { return e.err.Error() }
func (e *notifyError) Unwrap() error { return e.err }

func refuse(n isakmp.NotifyType, format string, args ...any) error {
	return &notifyError{notify: n, err: fmt.Errorf(format, args...)}
}

// onMM1 (responder): choose a suite from the initiator's proposal.
func (sa *SA) onMM1(m *isakmp.Message, now time.Time) (Result, error) {
	// Main mode is phase 1: its Message ID is 0 (RFC 2408 §3.1).
	if m.Header.MessageID != 0 {
		return Result{}, refuse(isakmp.NotifyInvalidMessageID, "message 1 with Message ID %#08x (phase 1 uses 0)", m.Header.MessageID)
	}
	saP := find[*isakmp.SA](m.Payloads)
	switch {
	case saP == nil:
		return Result{}, refuse(isakmp.NotifyPayloadMalformed, "message 1 lacks an SA payload")
	case saP.DOI != isakmp.DOIIPsec && saP.DOI != isakmp.DOIGDOI:
		return Result{}, refuse(isakmp.NotifyDOINotSupported, "message 1 proposes DOI %d (want IPsec or GDOI)", saP.DOI)
	case saP.Situation != isakmp.SituationIdentityOnly:
		return Result{}, refuse(isakmp.NotifySituationNotSupported, "message 1 proposes situation %#x (want SIT_IDENTITY_ONLY)", saP.Situation)
	}
	sa.doi = saP.DOI
	sa.hs.saiBody = saP.AppendBody(make([]byte, 0, saP.BodyLen()))
	sa.noteVendorIDs(m.Payloads)
	var offered offers
	for _, prop := range saP.Proposals {
		if prop.Protocol != isakmp.ProtoISAKMP {
			continue
		}
		for _, t := range prop.Transforms {
			if offered.full() {
				// Real initiators offer tens; a message 1 of thousands
				// costs its sender, not us, beyond this.
				offered.more++
				continue
			}
			s, err := suiteFromTransform(t)
			if err == nil && s.lifetime() < MinLifetime {
				// A transform outside our policy, like any other we cannot
				// accept: the answer, if none fits, is NO-PROPOSAL-CHOSEN
				// (RFC 2408 §3.14.1; ATTRIBUTES-NOT-SUPPORTED is for
				// attributes we do not know, and we know this one).
				err = fmt.Errorf("lifetime %v below the %v minimum", s.lifetime(), MinLifetime)
			}
			offered.add(offer{number: t.Number, suite: s, err: err})
			if err != nil {
				continue
			}
			for _, mine := range sa.cfg.Suites {
				if !mine.sameAlgorithms(s) {
					continue
				}
				s.Lifetime = min(s.lifetime(), mine.lifetime())
				sa.suite = s
				msg, err := sa.marshal(0, chosenSA(sa.sh, saP.DOI, prop, s, t.Number, sa.vendorIDs()))
				if err != nil {
					return Result{}, err
				}
				sa.state = StateMM2Sent
				if sa.logEnabled(slog.LevelDebug) {
					sa.log(slog.LevelDebug, "chose phase-1 suite", "suite", s.String())
				}
				// Not retransmitted: nothing verified the address yet. It
				// is sent again only if the same message 1 comes again.
				var ttl time.Duration
				if sa.sh != nil {
					ttl = sa.sh.halfOpenTTL
				}
				if ttl <= 0 {
					ttl = 30 * time.Second
				}
				sa.hs.sent, sa.hs.deadline = msg, now.Add(ttl)
				return Result{one: msg, Timer: sa.hs.deadline}, nil
			}
		}
	}
	return Result{}, refuse(isakmp.NotifyNoProposalChosen, "no acceptable phase-1 proposal from %s: offered %s", sa.peer, offered)
}

// mm2SA is message 2's payloads and what they point to, made in one
// allocation (a key server sends one message 2 per registration); the
// transform's attributes are the Endpoint's (shared.transformAttrs).
type mm2SA struct {
	sa    isakmp.SA
	props [1]*isakmp.Proposal
	prop  isakmp.Proposal
	trs   [1]*isakmp.Transform
	tr    isakmp.Transform
	ps    [3]isakmp.Payload
}

// chosenSA returns message 2's payloads: the SA payload choosing transform
// number tn of prop, read as suite s, then vids.
func chosenSA(sh *shared, doi isakmp.DOI, prop *isakmp.Proposal, s Suite, tn uint8, vids []isakmp.Payload) []isakmp.Payload {
	c := new(mm2SA)
	c.tr = isakmp.Transform{Number: tn, ID: isakmp.TransformKeyIKE, Attributes: sh.transformAttrs(s)}
	c.trs[0] = &c.tr
	c.prop = isakmp.Proposal{Number: prop.Number, Protocol: isakmp.ProtoISAKMP, SPI: prop.SPI, Transforms: c.trs[:]}
	c.props[0] = &c.prop
	c.sa = isakmp.SA{DOI: doi, Situation: isakmp.SituationIdentityOnly, Proposals: c.props[:]}
	return append(append(c.ps[:0], &c.sa), vids...)
}

// offers lists the transforms of a refused message 1 for the log: the
// first few and how many more, whatever the peer sent (SPEC S6). They are
// described only when the log is written: a message 1 that is accepted
// costs no strings (issue 18: the KS's allocations).
type offers struct {
	first    [offersShown]offer
	shown    int
	examined int
	more     int // not shown, or not examined
}

// offer is one examined transform: the suite it reads as, or why it reads
// as none.
type offer struct {
	number uint8
	suite  Suite
	err    error
}

func (o offer) String() string {
	if o.err != nil {
		return fmt.Sprintf("#%d (%v)", o.number, o.err)
	}
	return o.suite.String()
}

const (
	offersShown   = 4   // transforms named in the log
	maxTransforms = 256 // transforms of one message 1 examined at most
)

// add counts one examined transform, kept if it is among those shown.
func (o *offers) add(t offer) {
	o.examined++
	if o.shown < offersShown {
		o.first[o.shown] = t
		o.shown++
	} else {
		o.more++
	}
}

func (o *offers) full() bool { return o.examined >= maxTransforms }

func (o offers) String() string {
	names := make([]string, o.shown)
	for i, t := range o.first[:o.shown] {
		names[i] = t.String()
	}
	s := "[" + strings.Join(names, " ") + "]"
	if o.more > 0 {
		s += fmt.Sprintf(" and %d more", o.more)
	}
	return s
}

// onMM2 (initiator): the responder's choice must be one we offered.
func (sa *SA) onMM2(m *isakmp.Message, now time.Time) (Result, error) {
	saP := find[*isakmp.SA](m.Payloads)
	if saP == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].Transforms) != 1 {
		return Result{}, refuse(isakmp.NotifyBadProposalSyntax, "message 2 must carry exactly one proposal with one transform")
	}
	s, err := suiteFromTransform(saP.Proposals[0].Transforms[0])
	if err != nil {
		return Result{}, refuse(isakmp.NotifyNoProposalChosen, "responder chose an unsupported transform: %v", err)
	}
	ok := false
	for _, mine := range sa.cfg.Suites {
		if mine.sameAlgorithms(s) && s.lifetime() <= mine.lifetime() && (s.lifetime() >= MinLifetime || s.lifetime() == mine.lifetime()) {
			ok = true
		}
	}
	if !ok {
		return Result{}, refuse(isakmp.NotifyNoProposalChosen, "responder chose %s with lifetime %v, which we did not offer", s, s.lifetime())
	}
	sa.rcky = m.Header.ResponderCookie
	sa.suite = s
	sa.noteVendorIDs(m.Payloads)
	pub, err := sa.makeKE()
	if err != nil {
		return Result{}, err
	}
	sa.hs.gxi = pub
	if sa.hs.ni, err = sa.ownNonce(); err != nil {
		return Result{}, err
	}
	msg, err := sa.marshal(0, sa.keNoncePayloads(pub, sa.hs.ni))
	if err != nil {
		return Result{}, err
	}
	sa.state = StateMM3Sent
	return sa.send(msg, now, true), nil
}

// makeKE makes our Diffie-Hellman key pair and returns the public value,
// KE's data.
func (sa *SA) makeKE() ([]byte, error) {
	g, ok := GroupByID(sa.suite.Group)
	if !ok {
		return nil, fmt.Errorf("ike: DH group %d", sa.suite.Group)
	}
	var priv PrivateKey
	var pub []byte
	var err error
	if sa.cfg.KeyPair != nil {
		priv, pub, err = sa.cfg.KeyPair(g)
		if err == nil && len(pub) != g.PublicLen() {
			err = fmt.Errorf("ike: %s key pair source gave a %d-octet public value (want %d)", g.Name(), len(pub), g.PublicLen())
		}
	} else {
		priv, pub, err = g.GenerateKey(sa.cfg.rand())
	}
	if err != nil {
		return nil, err
	}
	sa.hs.dh = priv
	return pub, nil
}

// ownNonce fills our nonce, Ni or Nr, in main mode's state.
func (sa *SA) ownNonce() ([]byte, error) {
	n := sa.hs.nonce[:]
	if _, err := io.ReadFull(sa.cfg.rand(), n); err != nil {
		return nil, fmt.Errorf("ike: random: %w", err)
	}
	return n, nil
}

// keNonce is message 3's or 4's payloads, made in one allocation.
type keNonce struct {
	ke isakmp.KE
	n  isakmp.Nonce
	ps [3]isakmp.Payload
}

// keNoncePayloads returns KE, Nonce and, with signatures, CR.
func (sa *SA) keNoncePayloads(pub, nonce []byte) []isakmp.Payload {
	b := &keNonce{ke: isakmp.KE{Data: pub}, n: isakmp.Nonce{Data: nonce}}
	ps := append(b.ps[:0], &b.ke, &b.n)
	if sa.suite.Auth.signature() {
		ps = append(ps, &isakmp.CertRequest{CertType: isakmp.CertX509Sig})
	}
	return ps
}

// peerKE reads the peer's KE and nonce and derives the keys.
func (sa *SA) peerKE(m *isakmp.Message) error {
	ke := find[*isakmp.KE](m.Payloads)
	nonce := find[*isakmp.Nonce](m.Payloads)
	if ke == nil || nonce == nil {
		return refuse(isakmp.NotifyPayloadMalformed, "KE or nonce missing")
	}
	if len(nonce.Data) < 8 || len(nonce.Data) > 256 {
		return refuse(isakmp.NotifyPayloadMalformed, "nonce of %d octets (RFC 2409 §5: 8 to 256)", len(nonce.Data))
	}
	if g, _ := GroupByID(sa.suite.Group); len(ke.Data) != g.PublicLen() {
		return refuse(isakmp.NotifyInvalidKeyInformation, "KE of %d octets for %s (want %d)", len(ke.Data), g.Name(), g.PublicLen())
	}
	// Copied, in one array: the message lies in the caller's datagram.
	buf := make([]byte, len(ke.Data)+len(nonce.Data))
	k, n := buf[:len(ke.Data):len(ke.Data)], buf[len(ke.Data):]
	copy(k, ke.Data)
	copy(n, nonce.Data)
	if sa.initiator {
		sa.hs.gxr, sa.hs.nr = k, n
	} else {
		sa.hs.gxi, sa.hs.ni = k, n
	}
	return nil
}

func (sa *SA) deriveKeys() error {
	hs := sa.hs
	peerPub := hs.gxr
	if !sa.initiator {
		peerPub = hs.gxi
	}
	gxy, err := hs.dh.Shared(peerPub)
	if err != nil {
		return refuse(isakmp.NotifyInvalidKeyInformation, "DH: %v", err)
	}
	var psk []byte
	if sa.suite.Auth == AuthPSK {
		var ok bool
		if sa.cfg.Creds.PSK != nil {
			psk, ok = sa.cfg.Creds.PSK(sa.peer.Addr().Unmap())
		}
		if !ok || len(psk) == 0 {
			return fmt.Errorf("%w: no pre-shared key for peer %s", ErrAuth, sa.peer.Addr())
		}
	}
	sa.km, err = deriveKeys(sa.sh.scr(), sa.suite, psk, hs.ni, hs.nr, gxy, hs.gxi, hs.gxr, sa.icky[:], sa.rcky[:], &hs.mk)
	if err != nil {
		return err
	}
	hs.iv = hs.mk.iv
	return nil
}

// onMM3 (responder): KE and Ni in, KE and Nr out, keys derived.
func (sa *SA) onMM3(m *isakmp.Message, now time.Time) (Result, error) {
	if err := sa.peerKE(m); err != nil {
		return Result{}, err
	}
	pub, err := sa.makeKE()
	if err != nil {
		return Result{}, err
	}
	sa.hs.gxr = pub
	if sa.hs.nr, err = sa.ownNonce(); err != nil {
		return Result{}, err
	}
	if err := sa.deriveKeys(); err != nil {
		return Result{}, err
	}
	msg, err := sa.marshal(0, sa.keNoncePayloads(pub, sa.hs.nr))
	if err != nil {
		return Result{}, err
	}
	sa.state = StateMM4Sent
	return sa.send(msg, now, true), nil
}

// onMM4 (initiator): keys derived; ID and authentication out, encrypted.
func (sa *SA) onMM4(m *isakmp.Message, now time.Time) (Result, error) {
	if err := sa.peerKE(m); err != nil {
		return Result{}, err
	}
	if err := sa.deriveKeys(); err != nil {
		return Result{}, err
	}
	ps, err := sa.authPayloads(now)
	if err != nil {
		return Result{}, err
	}
	msg, err := sa.marshalEncrypted(ps)
	if err != nil {
		return Result{}, err
	}
	sa.state = StateMM5Sent
	return sa.send(msg, now, true), nil
}

// hashFor computes HASH_I (initiator's) or HASH_R (RFC 2409 §5):
//
//	HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
//	HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
//
// With ECDSA authentication the prf is HMAC with the method's own hash
// (SHA-256 for ECDSA-256, ...) whatever hash was negotiated, and the
// result is signed as it is (RFC 4754 §3; strongSwan does the same).
func (sa *SA) hashFor(initiator bool, idBody []byte) []byte {
	h := sa.suite.Hash
	switch sa.suite.Auth {
	case AuthECDSA256:
		h = SHA256
	case AuthECDSA384:
		h = SHA384
	case AuthECDSA521:
		h = SHA512
	}
	hs := sa.hs
	scr := sa.sh.scr()
	// In the scratch, unless the transcript keeps it: the caller encodes
	// or compares it before the next hashFor (issue 18: the KS's
	// allocations).
	dst := scr.out[:0]
	if sa.cfg.KeepTranscript {
		dst = nil
	}
	var out []byte
	if initiator {
		out = scr.appendHMAC(dst, h, hs.mk.skeyid[:sa.suite.Hash.size()], hs.gxi, hs.gxr, sa.icky[:], sa.rcky[:], hs.saiBody, idBody)
		if sa.cfg.KeepTranscript {
			hs.keptHashes()[0] = out
		}
	} else {
		out = scr.appendHMAC(dst, h, hs.mk.skeyid[:sa.suite.Hash.size()], hs.gxr, hs.gxi, sa.rcky[:], sa.icky[:], hs.saiBody, idBody)
		if sa.cfg.KeepTranscript {
			hs.keptHashes()[1] = out
		}
	}
	return out
}

// keptHashes is where HASH_I and HASH_R are kept (Config.KeepTranscript).
func (hs *mmState) keptHashes() *[2][]byte {
	if hs.hashes == nil {
		hs.hashes = new([2][]byte)
	}
	return hs.hashes
}

// authBundle is message 5's or 6's payloads but the certificates and
// the initiator's INITIAL-CONTACT, made in one allocation.
type authBundle struct {
	hash isakmp.Hash
	sig  isakmp.Sig
	ps   [4]isakmp.Payload
}

// authPayloads builds ID, [CERT], HASH or SIG, and on the initiator
// INITIAL-CONTACT (RFC 2407 §4.6.3.3).
func (sa *SA) authPayloads(now time.Time) ([]isakmp.Payload, error) {
	id, err := sa.ourID()
	if err != nil {
		return nil, err
	}
	h := sa.hashFor(sa.initiator, sa.sh.scr().idBody(id))
	b := new(authBundle)
	ps := append(b.ps[:0], id)
	if sa.suite.Auth.signature() {
		if sa.cfg.Creds.Key == nil || len(sa.cfg.Creds.Chain) == 0 {
			return nil, fmt.Errorf("ike: %s needs a certificate and its key", sa.suite.Auth)
		}
		for _, der := range sa.cfg.Creds.Chain {
			ps = append(ps, &isakmp.Cert{Encoding: isakmp.CertX509Sig, Data: der})
		}
		sig, err := sign(sa.cfg.rand(), sa.suite.Auth, sa.cfg.Creds.Key, h)
		if err != nil {
			return nil, err
		}
		b.sig.Data = sig
		ps = append(ps, &b.sig)
	} else {
		b.hash.Data = h
		ps = append(ps, &b.hash)
	}
	if sa.initiator {
		ps = append(ps, &isakmp.Notify{DOI: sa.phase1DOI(), Protocol: isakmp.ProtoISAKMP,
			NotifyType: isakmp.NotifyInitialContact, SPI: append(sa.icky[:], sa.rcky[:]...)})
	}
	return ps, nil
}

// decryptPhase1 decrypts message 5 or 6 and advances the IV chain.
func (sa *SA) decryptPhase1(m *isakmp.Message) ([]isakmp.Payload, error) {
	if err := wholeBlocks(m.Body); err != nil {
		return nil, refuse(isakmp.NotifyPayloadMalformed, "%v", err)
	}
	b, err := sa.phase1Cipher()
	if err != nil {
		return nil, err
	}
	var plain []byte
	if scr := sa.sh.scr(); !sa.suite.Auth.signature() && len(m.Body) <= len(scr.plain) {
		// Nothing of a PSK message 5 or 6 outlives its handling (the
		// caller clears it: releasePlain); a certificate would (x509
		// keeps its DER), so signatures get a buffer of their own.
		plain = scr.plain[:len(m.Body)]
		cbcDecrypt(b, sa.hs.iv[:], plain, m.Body)
	} else {
		plain = decryptWith(b, sa.hs.iv[:], m.Body)
	}
	ps, _, err := m.SplitBody(plain)
	if err != nil {
		// A wrong key yields garbage: with PSK that is the usual symptom
		// of a pre-shared key mismatch.
		if sa.suite.Auth == AuthPSK {
			return nil, &notifyError{notify: isakmp.NotifyPayloadMalformed, encrypted: true,
				err: fmt.Errorf("%w: cannot decrypt message from %s (pre-shared key mismatch?): %v", ErrAuth, sa.peer.Addr(), err)}
		}
		return nil, &notifyError{notify: isakmp.NotifyPayloadMalformed, encrypted: true, err: err}
	}
	copy(sa.hs.iv[:], m.Body[len(m.Body)-aes.BlockSize:])
	return ps, nil
}

// checkAuth verifies the peer's ID and HASH or SIG.
func (sa *SA) checkAuth(ps []isakmp.Payload, now time.Time) error {
	for _, p := range ps {
		if n, ok := p.(*isakmp.Notify); ok && n.NotifyType == isakmp.NotifyInitialContact {
			sa.initialContact = true
		}
	}
	id := find[*isakmp.ID](ps)
	if id == nil {
		return &notifyError{notify: isakmp.NotifyInvalidIDInformation, encrypted: true, err: errors.New("no ID payload")}
	}
	want := sa.hashFor(!sa.initiator, sa.sh.scr().idBody(id))
	// A copy of its own: id's data lies in the whole decrypted message.
	sa.peerID = cloneID(id)
	if !sa.suite.Auth.signature() {
		h := find[*isakmp.Hash](ps)
		if h == nil || string(h.Data) != string(want) {
			return &notifyError{notify: isakmp.NotifyInvalidHashInformation, encrypted: true,
				err: fmt.Errorf("%w: peer %s (%s) sent a wrong hash: pre-shared key mismatch", ErrAuth, sa.peer.Addr(), id)}
		}
		return nil
	}
	var chain [][]byte
	for _, p := range ps {
		if c, ok := p.(*isakmp.Cert); ok && c.Encoding == isakmp.CertX509Sig {
			chain = append(chain, c.Data)
		}
	}
	if len(chain) > maxPeerChain {
		// Each certificate is parsed and may be tried as an
		// intermediate: the peer chooses how many (S1).
		return &notifyError{notify: isakmp.NotifyAuthenticationFailed, encrypted: true,
			err: fmt.Errorf("%w: peer %s sent %d certificates (at most %d)", ErrAuth, sa.peer.Addr(), len(chain), maxPeerChain)}
	}
	cert, err := verifyPeerCert(&sa.cfg.Creds, chain, id, now)
	if err != nil {
		return &notifyError{notify: isakmp.NotifyAuthenticationFailed, encrypted: true,
			err: fmt.Errorf("peer %s: %w", sa.peer.Addr(), err)}
	}
	sig := find[*isakmp.Sig](ps)
	if sig == nil {
		return &notifyError{notify: isakmp.NotifyAuthenticationFailed, encrypted: true,
			err: fmt.Errorf("%w: peer %s sent no signature", ErrAuth, sa.peer.Addr())}
	}
	if err := verify(sa.suite.Auth, cert.PublicKey, want, sig.Data); err != nil {
		return &notifyError{notify: isakmp.NotifyInvalidSignature, encrypted: true,
			err: fmt.Errorf("peer %s (%s): %w", sa.peer.Addr(), cert.Subject, err)}
	}
	sa.peerCert = cert
	return nil
}

// maxPeerChain bounds the certificates a peer's message 5 or 6 may carry:
// its own and the intermediates up to a root we trust.
const maxPeerChain = 8

// ownedID is an ID and room for its data: an address identity, the usual
// one, is copied in one allocation.
type ownedID struct {
	id   isakmp.ID
	data [16]byte
}

// cloneID returns a copy of id that shares no memory with it.
func cloneID(id *isakmp.ID) *isakmp.ID {
	o := &ownedID{id: isakmp.ID{IDType: id.IDType, ProtocolID: id.ProtocolID, Port: id.Port}}
	if n := len(id.Data); n <= len(o.data) {
		copy(o.data[:], id.Data)
		o.id.Data = o.data[:n:n]
	} else {
		o.id.Data = bytes.Clone(id.Data)
	}
	return &o.id
}

// releasePlain clears what decryptPhase1 may have decrypted into the
// scratch (a PSK message 5 or 6), once its handling is over.
func (sa *SA) releasePlain() { clear(sa.sh.scr().plain[:]) }

// onMM5 (responder): authenticate the initiator, answer with message 6.
func (sa *SA) onMM5(m *isakmp.Message, now time.Time) (Result, error) {
	defer sa.releasePlain()
	ps, err := sa.decryptPhase1(m)
	if err != nil {
		return Result{}, mm5Refused{err: err}
	}
	if err := sa.checkAuth(ps, now); err != nil {
		return Result{}, mm5Refused{err: err}
	}
	out, err := sa.authPayloads(now)
	if err != nil {
		return Result{}, err
	}
	msg, err := sa.marshalEncrypted(out)
	if err != nil {
		return Result{}, err
	}
	sa.seed()
	sa.hs.sent = msg // sent again for a repeated message 5, in the window
	r := sa.establish(now)
	r.one = msg
	return r, nil
}

// onMM6 (initiator): authenticate the responder.
func (sa *SA) onMM6(m *isakmp.Message, now time.Time) (Result, error) {
	defer sa.releasePlain()
	ps, err := sa.decryptPhase1(m)
	if err != nil {
		return Result{}, err
	}
	if err := sa.checkAuth(ps, now); err != nil {
		return Result{}, err
	}
	sa.seed()
	sa.hs.sent = nil
	return sa.establish(now), nil
}

func (sa *SA) establish(now time.Time) Result {
	sa.state = StateEstablished
	sa.establishedAt = now
	sa.expires = now.Add(sa.suite.lifetime())
	startedAt := sa.hs.startedAt
	sa.established(now)
	// Authenticated: from now on the SA logs in full. A responder logs it
	// at Debug: on a key server every member's registration would write
	// it (100,000 lines for 100,000 members), and the KS logs the
	// registration itself (KS_REGS_COMPLETE); an initiator logs at Info.
	level := slog.LevelInfo
	if !sa.initiator {
		level = slog.LevelDebug
	}
	if sa.logEnabled(level) {
		sa.log(level, "phase 1 established", "suite", sa.suite.String(), "peer_id", sa.peerID.String(),
			"peer_version", sa.peerVersion.String(), "in", now.Sub(startedAt))
	}
	sa.dpdArm(now)
	r := Result{Timer: sa.timer(), ev: [2]Event{Established{Info: sa.describe()}}}
	if sa.initialContact {
		r.ev[1] = InitialContact{}
	}
	return r
}

// phase1Cipher is the AES block of the phase-1 key, made once for main
// mode's messages 5 and 6 and dropped with main mode's state.
func (sa *SA) phase1Cipher() (cipher.Block, error) {
	if sa.hs.block == nil {
		b, err := aes.NewCipher(sa.km.ka(sa.suite))
		if err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		sa.hs.block = b
	}
	return sa.hs.block, nil
}

// seed makes the last CBC block of phase 1 the seed of the phase-2 IVs.
func (sa *SA) seed() {
	copy(sa.lastBlock[:], sa.hs.iv[:])
	sa.seeded = true
}
