package ikev2

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Nonce lengths: we send 32 octets; a peer's must be 16 to 256 (§3.9).
const (
	nonceLen    = 32
	minNonceLen = 16
	maxNonceLen = 256
)

// Refusal is an error an OnAuth callback returns to refuse an initiator
// with a specific notification.
type Refusal struct {
	Notify wire.NotifyType
	Err    error
}

func (r *Refusal) Error() string { return fmt.Sprintf("refused with %s: %v", r.Notify, r.Err) }
func (r *Refusal) Unwrap() error { return r.Err }

// NewInitiator starts an IKE SA toward peer: it returns the SA and the
// IKE_SA_INIT request to send. Endpoint.Initiate is the usual way in.
func NewInitiator(cfg *Config, local, peer netip.AddrPort, now time.Time) (*SA, Result, error) {
	for _, s := range cfg.suites() {
		if err := s.Validate(); err != nil {
			return nil, Result{}, err
		}
	}
	sa := &SA{cfg: cfg, log: cfg.logger(), initiator: true, local: local, peer: peer, group: cfg.suites()[0].Group}
	spi, err := sa.randBytes(8)
	if err != nil {
		return nil, Result{}, err
	}
	spi[0] |= 1 // never the zero SPI
	copy(sa.spii[:], spi)
	if sa.ni, err = sa.randBytes(nonceLen); err != nil {
		return nil, Result{}, err
	}
	msg, err := sa.initRequest()
	if err != nil {
		return nil, Result{}, err
	}
	sa.state = StateInitSent
	sa.nextMID = 1
	return sa, sa.sendRequest(reqInit, wire.ExchangeIKESAInit, 0, msg, now), nil
}

func transformsOf(s Suite) []*wire.Transform {
	ts := []*wire.Transform{{Type: wire.TransformENCR, ID: s.Encr,
		Attributes: wire.Attributes{wire.BasicAttr(wire.AttrKeyLength, uint16(s.KeyBits))}}}
	if s.Integ != wire.IntegNone {
		ts = append(ts, &wire.Transform{Type: wire.TransformINTEG, ID: s.Integ})
	}
	return append(ts, &wire.Transform{Type: wire.TransformPRF, ID: s.PRF},
		&wire.Transform{Type: wire.TransformKE, ID: s.Group})
}

func (sa *SA) newKE() (*wire.KE, error) {
	g, ok := ike.GroupByID(sa.group)
	if !ok {
		return nil, fmt.Errorf("ikev2: DH group %d not supported", sa.group)
	}
	priv, pub, err := g.GenerateKey(sa.cfg.rand())
	if err != nil {
		return nil, fmt.Errorf("ikev2: DH: %w", err)
	}
	sa.dh, sa.kePayload = priv, pub
	return &wire.KE{Group: sa.group, Data: pub}, nil
}

func hashesNotify() *wire.Notify {
	var d []byte
	for _, h := range ourHashes {
		d = binary.BigEndian.AppendUint16(d, h)
	}
	return &wire.Notify{NotifyType: wire.NotifySignatureHashAlgorithms, Data: d}
}

// initRequest builds the IKE_SA_INIT request: [N(COOKIE)], SA (one
// proposal per suite), KE of the first suite's group (or the group the
// responder asked for), Ni, N(SIGNATURE_HASH_ALGORITHMS),
// N(CHILDLESS_IKEV2_SUPPORTED).
func (sa *SA) initRequest() ([]byte, error) {
	ke, err := sa.newKE()
	if err != nil {
		return nil, err
	}
	prop := &wire.SA{}
	for i, s := range sa.cfg.suites() {
		prop.Proposals = append(prop.Proposals, &wire.Proposal{Number: uint8(i + 1), Protocol: wire.ProtoIKE, Transforms: transformsOf(s)})
	}
	var ps []wire.Payload
	if sa.cookie != nil {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyCookie, Data: sa.cookie})
	}
	ps = append(ps, prop, ke, &wire.Nonce{Data: sa.ni})
	ps = append(ps, sa.natdNotifies()...)
	ps = append(ps, hashesNotify(), &wire.Notify{NotifyType: wire.NotifyChildlessIKEv2Supported})
	m := &wire.Message{Header: sa.header(wire.ExchangeIKESAInit, 0, false), Payloads: ps}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	sa.initReq = b
	return b, nil
}

// suiteOf returns the suite of ours that proposal p allows, if any. A
// proposal with a transform type we do not know is unacceptable (§3.3.6).
func (sa *SA) suiteOf(p *wire.Proposal) (Suite, bool) {
	if p.Protocol != wire.ProtoIKE || len(p.SPI) != 0 {
		return Suite{}, false
	}
	for _, t := range p.Transforms {
		switch t.Type {
		case wire.TransformENCR, wire.TransformINTEG, wire.TransformPRF, wire.TransformKE:
		default:
			return Suite{}, false
		}
	}
	has := func(tt wire.TransformType, id uint16, keyBits int) bool {
		for _, t := range p.Transforms {
			if t.Type == tt && t.ID == id && (keyBits == 0 || int(t.KeyLength()) == keyBits) {
				return true
			}
		}
		return false
	}
	hasType := func(tt wire.TransformType) bool {
		for _, t := range p.Transforms {
			if t.Type == tt && !(tt == wire.TransformINTEG && t.ID == wire.IntegNone) {
				return true
			}
		}
		return false
	}
	for _, s := range sa.cfg.suites() {
		integOK := has(wire.TransformINTEG, s.Integ, 0)
		if s.Integ == wire.IntegNone {
			integOK = !hasType(wire.TransformINTEG) || has(wire.TransformINTEG, wire.IntegNone, 0)
		}
		if has(wire.TransformENCR, s.Encr, s.KeyBits) && integOK && has(wire.TransformPRF, s.PRF, 0) && has(wire.TransformKE, s.Group, 0) {
			return s, true
		}
	}
	return Suite{}, false
}

// initError is a refusal of an IKE_SA_INIT request, answered without
// keeping state (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, INVALID_SYNTAX).
type initError struct {
	notify wire.NotifyType
	data   []byte
	err    error
}

func (e *initError) Error() string { return fmt.Sprintf("%s: %v", e.notify, e.err) }

// onInitRequest runs a fresh responder on an IKE_SA_INIT request: it
// chooses a suite, derives the keys and answers SA, KE, Nr, [CERTREQ],
// N(SIGNATURE_HASH_ALGORITHMS), N(CHILDLESS_IKEV2_SUPPORTED). A refusal
// returns an initError and no state.
func (sa *SA) onInitRequest(m *wire.Message, pkt []byte, now time.Time) (Result, error) {
	ps := m.Payloads
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	ke, _ := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	n, _ := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce)
	if saP == nil || ke == nil || n == nil || m.Header.MessageID != 0 {
		return Result{}, &initError{notify: wire.NotifyInvalidSyntax, err: errors.New("IKE_SA_INIT without SA, KE or Ni")}
	}
	if len(n.Data) < minNonceLen || len(n.Data) > maxNonceLen {
		return Result{}, &initError{notify: wire.NotifyInvalidSyntax, err: fmt.Errorf("nonce of %d octets", len(n.Data))}
	}
	var chosen *wire.Proposal
	for _, p := range saP.Proposals {
		if s, ok := sa.suiteOf(p); ok {
			sa.suite = s
			chosen = &wire.Proposal{Number: p.Number, Protocol: wire.ProtoIKE, Transforms: transformsOf(s)}
			break
		}
	}
	if chosen == nil {
		return Result{}, &initError{notify: wire.NotifyNoProposalChosen, err: errors.New("no acceptable proposal")}
	}
	if ke.Group != sa.suite.Group {
		return Result{}, &initError{notify: wire.NotifyInvalidKEPayload, data: binary.BigEndian.AppendUint16(nil, sa.suite.Group),
			err: fmt.Errorf("KE of group %d, chose %d", ke.Group, sa.suite.Group)}
	}
	sa.group = sa.suite.Group
	sa.noteInitNotifies(ps)
	sa.ni = append([]byte{}, n.Data...)
	var err error
	if sa.nr, err = sa.randBytes(nonceLen); err != nil {
		return Result{}, err
	}
	ourKE, err := sa.newKE()
	if err != nil {
		return Result{}, err
	}
	if err := sa.deriveKeys(ke.Data); err != nil {
		return Result{}, &initError{notify: wire.NotifyInvalidSyntax, err: err}
	}
	out := []wire.Payload{&wire.SA{Proposals: []*wire.Proposal{chosen}}, ourKE, &wire.Nonce{Data: sa.nr}}
	if cr := sa.certReq(); cr != nil {
		out = append(out, cr)
	}
	if hasNATD(ps) {
		out = append(out, sa.natdNotifies()...) // only to a peer that sent its own (§2.23)
	}
	out = append(out, hashesNotify(), &wire.Notify{NotifyType: wire.NotifyChildlessIKEv2Supported})
	resp := &wire.Message{Header: sa.header(wire.ExchangeIKESAInit, 0, true), Payloads: out}
	b, err := resp.Marshal()
	if err != nil {
		return Result{}, err
	}
	sa.initReq, sa.initResp = append([]byte{}, pkt...), b
	sa.state = StateHalfOpen
	sa.halfOpenEnd = now.Add(sa.halfOpenTTL)
	return sa.respond(pkt, b), nil
}

func (sa *SA) noteInitNotifies(ps []wire.Payload) {
	for _, n := range wire.Notifies(ps) {
		switch n.NotifyType {
		case wire.NotifySignatureHashAlgorithms:
			for i := 0; i+1 < len(n.Data) && len(sa.peerHashes) < 16; i += 2 {
				sa.peerHashes = append(sa.peerHashes, binary.BigEndian.Uint16(n.Data[i:]))
			}
		case wire.NotifyChildlessIKEv2Supported:
			sa.peerNoChild = true
		}
	}
}

// certReq names our CAs (SHA-1 of each one's SubjectPublicKeyInfo).
func (sa *SA) certReq() *wire.CertReq {
	if len(sa.cfg.CACerts) == 0 {
		return nil
	}
	var d []byte
	for _, c := range sa.cfg.CACerts {
		h := sha1.Sum(c.RawSubjectPublicKeyInfo)
		d = append(d, h[:]...)
	}
	return &wire.CertReq{Encoding: wire.CertX509Sig, Authority: d}
}

// deriveKeys computes g^ir from the peer's KE data and the SA's keys.
func (sa *SA) deriveKeys(peerKE []byte) error {
	gir, err := sa.dh.Shared(peerKE)
	if err != nil {
		return fmt.Errorf("ikev2: peer's KE: %w", err)
	}
	sa.gir = gir
	k, err := DeriveKeys(sa.suite, sa.ni, sa.nr, gir, sa.spii, sa.spir)
	if err != nil {
		return err
	}
	sa.keys = k
	ei, err := NewSKCipher(sa.suite, k.SKei, k.SKai)
	if err != nil {
		return err
	}
	er, err := NewSKCipher(sa.suite, k.SKer, k.SKar)
	if err != nil {
		return err
	}
	if sa.initiator {
		sa.out, sa.in = ei, er
	} else {
		sa.out, sa.in = er, ei
	}
	return nil
}

// onInitResponse handles the IKE_SA_INIT response: a COOKIE or
// INVALID_KE_PAYLOAD makes us send the request again as asked (§2.6, §1.3);
// NO_PROPOSAL_CHOSEN fails the SA; else the keys are derived and IKE_AUTH
// sent. The response is unauthenticated: anything unreadable is dropped and
// the retransmissions go on.
func (sa *SA) onInitResponse(m *wire.Message, pkt []byte, now time.Time) Result {
	if sa.state != StateInitSent {
		return sa.drop()
	}
	ps := m.Payloads
	for _, n := range wire.Notifies(ps) {
		switch n.NotifyType {
		case wire.NotifyCookie:
			if len(n.Data) < 1 || len(n.Data) > 64 || sa.cookie != nil {
				return sa.drop()
			}
			sa.cookie = append([]byte{}, n.Data...)
			return sa.restart(now)
		case wire.NotifyInvalidKEPayload:
			if len(n.Data) != 2 {
				return sa.drop()
			}
			g := binary.BigEndian.Uint16(n.Data)
			offered := false
			for _, s := range sa.cfg.suites() {
				offered = offered || s.Group == g
			}
			if !offered || g == sa.group {
				return sa.drop()
			}
			sa.group = g
			return sa.restart(now)
		case wire.NotifyNoProposalChosen:
			// Unprotected: anyone can send it. We keep waiting for a real
			// answer (§2.21.1) and fail with it when the retransmissions
			// end.
			sa.refusedBy = n.NotifyType
			return sa.drop()
		}
	}
	saP, _ := wire.Find(ps, wire.PayloadSA).(*wire.SA)
	ke, _ := wire.Find(ps, wire.PayloadKE).(*wire.KE)
	n, _ := wire.Find(ps, wire.PayloadNonce).(*wire.Nonce)
	var zero wire.SPI
	if saP == nil || ke == nil || n == nil || len(saP.Proposals) != 1 || m.Header.SPIr == zero ||
		len(n.Data) < minNonceLen || len(n.Data) > maxNonceLen {
		return sa.drop()
	}
	s, ok := sa.suiteOf(saP.Proposals[0])
	if !ok || s.Group != sa.group || ke.Group != sa.group || int(saP.Proposals[0].Number) < 1 ||
		int(saP.Proposals[0].Number) > len(sa.cfg.suites()) || sa.cfg.suites()[saP.Proposals[0].Number-1] != s {
		return sa.drop() // not what we offered in that proposal
	}
	sa.suite = s
	sa.spir = m.Header.SPIr
	sa.nr = append([]byte{}, n.Data...)
	if err := sa.deriveKeys(ke.Data); err != nil {
		sa.spir, sa.keys = zero, nil
		return sa.drop()
	}
	sa.noteInitNotifies(ps)
	sa.initResp = append([]byte{}, pkt...)
	if sa.cfg.NATT && sa.natDetected(m.Header, ps) {
		// A NAT between us (or a peer forcing UDP encapsulation): move to
		// port 4500 for the rest of the SA (§2.23).
		sa.peer, sa.floated = netip.AddrPortFrom(sa.peer.Addr(), NATTPort), true
	}
	msg, err := sa.authRequest()
	if err != nil {
		return sa.fail(err)
	}
	sa.state = StateAuthSent
	mid := sa.nextMID
	sa.nextMID++
	return sa.sendRequest(reqAuth, sa.cfg.authExchange(), mid, msg, now)
}

// restart sends IKE_SA_INIT again after a COOKIE or INVALID_KE_PAYLOAD.
func (sa *SA) restart(now time.Time) Result {
	msg, err := sa.initRequest()
	if err != nil {
		return sa.fail(err)
	}
	return sa.sendRequest(reqInit, wire.ExchangeIKESAInit, 0, msg, now)
}

// localID is the identity we send.
func (sa *SA) localID() (*Identity, error) {
	if sa.cfg.LocalID != nil {
		return sa.cfg.LocalID, nil
	}
	if sa.cfg.Creds.Key != nil {
		if len(sa.cfg.Creds.Chain) == 0 {
			return nil, errors.New("ikev2: a signing key needs its certificate")
		}
		c, err := x509.ParseCertificate(sa.cfg.Creds.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("ikev2: our certificate: %w", err)
		}
		return &Identity{Type: wire.IDDERASN1DN, Data: c.RawSubject}, nil
	}
	return AddrIdentity(sa.local.Addr()), nil
}

// authPayloads are our ID, CERTs and AUTH for IKE_AUTH (§2.15): AUTH covers
// our IKE_SA_INIT message, the peer's nonce and prf(SK_p, our ID).
func (sa *SA) authPayloads() ([]wire.Payload, error) {
	id, err := sa.localID()
	if err != nil {
		return nil, err
	}
	first, peerNonce, skp, idType := sa.initReq, sa.nr, sa.keys.SKpi, wire.PayloadIDi
	if !sa.initiator {
		first, peerNonce, skp, idType = sa.initResp, sa.ni, sa.keys.SKpr, wire.PayloadIDr
	}
	sa.info.LocalID = id
	octets := signedOctets(sa.keys, first, peerNonce, skp, id.body())
	ps := []wire.Payload{&wire.ID{Which: idType, IDType: id.Type, Data: id.Data}}
	var auth *wire.Auth
	if key := sa.cfg.Creds.Key; key != nil {
		for _, c := range sa.cfg.Creds.Chain {
			ps = append(ps, &wire.Cert{Encoding: wire.CertX509Sig, Data: c})
		}
		s, err := chooseSigner(key, sa.peerHashes, sa.cfg.RSAPSS)
		if err != nil {
			return nil, err
		}
		method, data, err := s.sign(sa.cfg.rand(), key, octets)
		if err != nil {
			return nil, err
		}
		auth = &wire.Auth{Method: method, Data: data}
	} else {
		psk, ok := sa.psk()
		if !ok {
			return nil, fmt.Errorf("%w: no pre-shared key for %s", ike.ErrAuth, sa.peer.Addr())
		}
		auth = &wire.Auth{Method: wire.AuthPSK, Data: pskAuth(sa.keys, psk, octets)}
	}
	if sa.initiator {
		if cr := sa.certReq(); cr != nil {
			ps = append(ps, cr)
		}
	}
	return append(ps, auth), nil
}

func (sa *SA) psk() ([]byte, bool) {
	if sa.cfg.Creds.PSK == nil {
		return nil, false
	}
	return sa.cfg.Creds.PSK(sa.peer.Addr())
}

// authRequest builds the IKE_AUTH request: IDi, [CERT], [CERTREQ], AUTH,
// [SAi2, TSi, TSr] when Config.Child asks for a CHILD SA (else none, RFC
// 6023), then Config.AuthRequest.
func (sa *SA) authRequest() ([]byte, error) {
	ps, err := sa.authPayloads()
	if err != nil {
		return nil, err
	}
	child, err := sa.childRequest()
	if err != nil {
		return nil, err
	}
	ps = append(ps, child...)
	ps = append(ps, sa.cfg.AuthRequest...)
	return sa.seal(sa.cfg.authExchange(), sa.nextMID, false, ps)
}

// checkPeerAuth verifies the peer's ID, certificate and AUTH payloads
// (§2.15): AUTH covers the peer's IKE_SA_INIT message, our nonce and
// prf(SK_p of the peer, its ID).
func (sa *SA) checkPeerAuth(ps []wire.Payload, now time.Time) error {
	idType, first, ourNonce, skp := wire.PayloadIDr, sa.initResp, sa.ni, sa.keys.SKpr
	if !sa.initiator {
		idType, first, ourNonce, skp = wire.PayloadIDi, sa.initReq, sa.nr, sa.keys.SKpi
	}
	var id *wire.ID
	var auth *wire.Auth
	var chain [][]byte
	for _, p := range ps {
		switch q := p.(type) {
		case *wire.ID:
			if q.Which == idType && id == nil {
				id = q
			}
		case *wire.Auth:
			if auth == nil {
				auth = q
			}
		case *wire.Cert:
			if q.Encoding == wire.CertX509Sig && len(chain) < 8 {
				chain = append(chain, q.Data)
			}
		}
	}
	if id == nil || auth == nil {
		return fmt.Errorf("%w: no %s or AUTH payload", ike.ErrAuth, idType)
	}
	peerID := &Identity{Type: id.IDType, Data: append([]byte{}, id.Data...)}
	if sa.cfg.RemoteID != nil && !sa.cfg.RemoteID.equal(peerID) {
		return fmt.Errorf("%w: peer identity %s, want %s", ike.ErrAuth, peerID, sa.cfg.RemoteID)
	}
	octets := signedOctets(sa.keys, first, ourNonce, skp, peerID.body())
	method := auth.Method
	sa.info.PeerID, sa.info.AuthMethod = peerID, method
	if method == wire.AuthPSK {
		psk, _ := sa.psk()
		return checkPSK(sa.keys, psk, octets, auth.Data)
	}
	leaf, err := ike.VerifyPeerCert(&sa.cfg.Creds, chain, &isakmp.ID{IDType: isakmp.IDType(peerID.Type), Data: peerID.Data}, now)
	if err != nil {
		return err
	}
	if err := verifySig(leaf.PublicKey, method, auth.Data, octets); err != nil {
		return err
	}
	sa.info.PeerCert = leaf
	return nil
}

// onAuthRequest is the responder's IKE_AUTH: the initiator is verified,
// then answered with IDr, [CERT], AUTH (and what OnAuth adds), or with
// AUTHENTICATION_FAILED. A CHILD SA asked for is refused with
// NO_PROPOSAL_CHOSEN unless Config.Child accepts it; the IKE SA stands
// either way (§1.2).
func (sa *SA) onAuthRequest(m *wire.Message, pkt []byte, now time.Time) Result {
	ps, err := sa.open(m, pkt)
	if err != nil {
		return sa.drop() // not from the holder of the keys: ignored (§2.21.2)
	}
	refuse := func(n wire.NotifyType, err error) Result {
		resp, serr := sa.seal(m.Header.Exchange, m.Header.MessageID, true, []wire.Payload{&wire.Notify{NotifyType: n}})
		if serr != nil {
			return sa.fail(err)
		}
		r := sa.respond(pkt, resp)
		f := sa.fail(err)
		r.Events, r.Timer = f.Events, time.Time{}
		return r
	}
	if err := sa.checkPeerAuth(ps, now); err != nil {
		return refuse(wire.NotifyAuthenticationFailed, err)
	}
	out, err := sa.authPayloads()
	if err != nil {
		return refuse(wire.NotifyAuthenticationFailed, err)
	}
	if sa.cfg.OnAuth != nil || sa.cfg.OnAuthSA != nil {
		var extra []wire.Payload
		var err error
		if sa.cfg.OnAuthSA != nil {
			extra, err = sa.cfg.OnAuthSA(sa, ps)
		} else {
			extra, err = sa.cfg.OnAuth(sa.info.PeerID, sa.info.PeerCert, ps)
		}
		if err != nil {
			var rf *Refusal
			if errors.As(err, &rf) {
				return refuse(rf.Notify, err)
			}
			return refuse(wire.NotifyAuthenticationFailed, err)
		}
		out = append(out, extra...)
	}
	// In GSA_AUTH an SA payload is the member's SAg (RFC 9838 §4.3), which
	// OnAuth/OnAuthSA judged: no CHILD SA is negotiated there.
	var child *ChildSA
	if sa.cfg.authExchange() != wire.ExchangeGSAAuth {
		var childPs []wire.Payload
		childPs, child = sa.childResponse(ps)
		out = append(out, childPs...)
	}
	resp, err := sa.seal(m.Header.Exchange, m.Header.MessageID, true, out)
	if err != nil {
		return sa.fail(err)
	}
	r := sa.respond(pkt, resp)
	r.Events = sa.establish(now)
	if child != nil {
		r.Events = append(r.Events, ChildEstablished{Child: *child})
	}
	r.Timer = sa.timer()
	return r
}

// onAuthResponse is the initiator's end of IKE_AUTH.
func (sa *SA) onAuthResponse(m *wire.Message, pkt []byte, now time.Time) Result {
	ps, err := sa.open(m, pkt)
	if err != nil {
		return sa.drop()
	}
	for _, n := range wire.Notifies(ps) {
		if n.NotifyType < 16384 && n.NotifyType != wire.NotifyNoProposalChosen && n.NotifyType != wire.NotifyTSUnacceptable {
			return sa.fail(fmt.Errorf("%w: %s", ErrRefused, n.NotifyType))
		}
	}
	if err := sa.checkPeerAuth(ps, now); err != nil {
		return sa.fail(err)
	}
	child, err := sa.childAccepted(ps)
	if err != nil {
		return sa.fail(err)
	}
	sa.req = request{}
	r := Result{Events: sa.establish(now)}
	if child != nil {
		r.Events = append(r.Events, ChildEstablished{Child: *child})
	} else if sa.cfg.Child != nil {
		for _, n := range wire.Notifies(ps) {
			if n.NotifyType < 16384 {
				r.Events = append(r.Events, ChildRefused{Notify: n.NotifyType})
				break
			}
		}
	}
	if len(ps) > 0 && sa.cfg.AuthRequest != nil {
		r.Events = append(r.Events, Response{Exchange: m.Header.Exchange, Payloads: ps})
	}
	r.Timer = sa.timer()
	return r
}

func (sa *SA) establish(now time.Time) []Event {
	sa.state = StateEstablished
	sa.dh = nil
	i := &sa.info
	i.Initiator, i.Local, i.Peer = sa.initiator, sa.local, sa.peer
	i.SPIi, i.SPIr, i.Suite, i.Keys = sa.spii, sa.spir, sa.suite, sa.keys
	i.EstablishedAt, i.Expires = now, now.Add(sa.cfg.lifetime())
	i.Peer, i.NATT = sa.peer, sa.floated
	sa.log.Info("IKE SA established", "peer_id", i.PeerID.String(), "suite", sa.suite.String(), "auth", i.AuthMethod.String())
	return []Event{Established{Info: *i}}
}

func hasNATD(ps []wire.Payload) bool {
	for _, n := range wire.Notifies(ps) {
		if n.NotifyType == wire.NotifyNATDetectionSourceIP {
			return true
		}
	}
	return false
}
