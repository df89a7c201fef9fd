package gikev2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

var (
	gmAddr = netip.MustParseAddrPort("127.0.0.1:848")
	ksAddr = netip.MustParseAddrPort("127.0.0.2:848")
	t0     = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
)

const groupID = 1234

// keyServer is a ks.Server with group "G" (ID 1234): AES-GCM-16/128 TEKs
// for 10.0.0.0/8, counter replay, a rekey key (ECDSA P-256 unless given).
func keyServer(t testing.TB, signer interface{}) *ks.Server {
	t.Helper()
	srv := ks.New(ks.Options{})
	cfg := ks.GroupConfig{Name: "G", ID: groupID, Address: netip.MustParseAddr("127.0.0.2"),
		TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Replay: isakmp.ReplayCounter, ReplayWindow: 64,
			Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}},
		Rekey: ks.RekeyPolicy{Multicast: netip.MustParseAddrPort("239.192.0.1:848")},
		Authorize: func(p ks.Peer) error {
			if p.Addr.Addr() == netip.MustParseAddr("127.0.0.66") {
				return errors.New("revoked")
			}
			return nil
		}}
	switch k := signer.(type) {
	case nil:
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cfg.SigningKey = key
	case *rsa.PrivateKey:
		cfg.SigningKey = k
	case *ecdsa.PrivateKey:
		cfg.SigningKey = k
	}
	if err := srv.AddGroup(cfg, t0); err != nil {
		t.Fatal(err)
	}
	return srv
}

// ikePair establishes the unicast IKE SA of G-IKEv2 registration in memory
// over internal/ikev2 (IKE_SA_INIT, then GSA_AUTH carrying the GM's IDg and
// N(GROUP_SENDER)); the GCKS checks the request in OnAuth as RFC 9838
// §2.3.4 says (unknown group, authorization) before the SA is established.
func ikePair(t testing.TB, srv *ks.Server, req Request) (gmEP, ksEP *ikev2.Endpoint, gmSA, ksSA *ikev2.SA, events []ikev2.SAEvent) {
	t.Helper()
	psk := ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("group secret"), true }}
	gcfg := &ikev2.Config{Creds: psk, AuthExchange: wire.ExchangeGSAAuth, AuthRequest: req.Payloads()}
	kcfg := &ikev2.Config{Creds: psk, AuthExchange: wire.ExchangeGSAAuth,
		OnAuth: func(peer *ikev2.Identity, _ *x509.Certificate, ps []wire.Payload) ([]wire.Payload, error) {
			r, err := ParseRequest(ps)
			if err == nil {
				name := ""
				for _, n := range srv.Groups() {
					if st, _ := srv.State(n, t0); st != nil && st.ID == r.Group {
						name = n
					}
				}
				if name == "" {
					err = refuse(wire.NotifyInvalidGroupID, "no group %d", r.Group)
				}
			}
			if err != nil {
				return nil, &ikev2.Refusal{Notify: Refusal(err)[0].(*wire.Notify).NotifyType, Err: err}
			}
			return nil, nil
		}}
	var err error
	if gmEP, err = ikev2.NewEndpoint(gcfg, gmAddr, ikev2.Limits{}); err != nil {
		t.Fatal(err)
	}
	if ksEP, err = ikev2.NewEndpoint(kcfg, ksAddr, ikev2.Limits{}); err != nil {
		t.Fatal(err)
	}
	sa, out, err := gmEP.Initiate(ksAddr, t0)
	if err != nil {
		t.Fatal(err)
	}
	events = ikev2.Exchange(gmEP, ksEP, gmEP, out, t0)
	if sa.State() != ikev2.StateEstablished {
		return gmEP, ksEP, sa, nil, events
	}
	return gmEP, ksEP, sa, ksEP.SAs()[0], events
}

func findEvent[T any](evs []ikev2.SAEvent, sa *ikev2.SA) (T, bool) {
	for _, e := range evs {
		if v, ok := e.Event.(T); ok && (sa == nil || e.SA == sa) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// kwkOf is the unicast IKE SA's default KWK (RFC 9838 §3.1.1).
func kwkOf(t testing.TB, sa *ikev2.SA) KWK {
	t.Helper()
	k, err := UnicastKWK(sa.Keys(), DefaultKWA)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// register runs GSA_AUTH and GSA_REGISTRATION between a GM Member and the
// GCKS over real internal/ikev2 endpoints and returns what the GM got.
func register(t testing.TB, srv *ks.Server, gcks *GCKS, m *Member) (*Update, *ikev2.SA, *ikev2.SA, *ikev2.Endpoint, *ikev2.Endpoint) {
	t.Helper()
	gmEP, ksEP, gmSA, ksSA, _ := ikePair(t, srv, m.AuthRequest())
	if ksSA == nil {
		t.Fatal("GSA_AUTH did not establish the IKE SA")
	}
	// GSA_REGISTRATION (§2.3.2): HDR, SK{IDg, [SAg,] [N(GROUP_SENDER),] [N]} -->
	out, err := gmEP.Request(gmSA, wire.ExchangeGSARegistration, m.Request().Payloads(), t0)
	if err != nil {
		t.Fatal(err)
	}
	// The KS's loop: the Request event carries the inner payloads; the
	// answer goes back through Respond.
	var resp ikev2.Response
	for len(out.Send) > 0 {
		var next ikev2.Output
		for _, p := range out.Send {
			if p.To == ksAddr {
				o := ksEP.Handle(gmAddr, p.Data, t0)
				next.Send = append(next.Send, o.Send...)
				if req, ok := findEvent[ikev2.Request](o.Events, nil); ok {
					if req.Exchange != wire.ExchangeGSARegistration {
						t.Fatalf("KS got %s", req.Exchange)
					}
					r, err := ParseRequest(req.Payloads)
					var ps []wire.Payload
					if err == nil {
						ps, err = gcks.Register(ks.Peer{Addr: gmAddr, Identity: "gm"}, r, kwkOf(t, ksSA), t0)
					}
					if err != nil {
						ps = Refusal(err)
					}
					o2, err := ksEP.Respond(ksSA, ps, t0)
					if err != nil {
						t.Fatal(err)
					}
					next.Send = append(next.Send, o2.Send...)
				}
			} else {
				o := gmEP.Handle(ksAddr, p.Data, t0)
				next.Send = append(next.Send, o.Send...)
				if r, ok := findEvent[ikev2.Response](o.Events, gmSA); ok {
					resp = r
				}
			}
		}
		out = next
	}
	if resp.Exchange != wire.ExchangeGSARegistration {
		t.Fatalf("no GSA_REGISTRATION response")
	}
	//                              <--  HDR, SK{GSA, KD, [N]}
	u, err := m.Registered(resp.Payloads, kwkOf(t, gmSA), t0)
	if err != nil {
		t.Fatalf("registration: %v", err)
	}
	return u, gmSA, ksSA, gmEP, ksEP
}

func tekKeys(t testing.TB, srv *ks.Server) map[uint32][]byte {
	t.Helper()
	st, err := srv.State("G", t0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32][]byte{}
	for _, k := range st.TEKs {
		out[k.SPI] = k.EncKey
	}
	return out
}

// proves: G2 (issue 17: RFC 9838 §2.3 stepped over internal/ikev2 in
// memory: IKE_SA_INIT, GSA_AUTH with IDg and N(GROUP_SENDER), then
// GSA_REGISTRATION answered with GSA and KD; the GM unwraps with its
// GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2") the same TEK keys ks gives
// GDOI members, gets a Sender-ID and GWP_SENDER_ID_BITS, the Rekey SA and
// the GCKS's AUTH_KEY; the GCKS's and the GM's GSK_w agree)
func TestRegistrationStepsRFC9838(t *testing.T) {
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true, SenderIDs: 2})
	u, gmSA, ksSA, _, _ := register(t, srv, gcks, m)
	if !bytes.Equal(kwkOf(t, gmSA).Key, kwkOf(t, ksSA).Key) {
		t.Fatal("the two sides' GSK_w differ")
	}
	want := tekKeys(t, srv)
	if len(u.TEKs) != 1 || !bytes.Equal(u.TEKs[0].EncKey, want[u.TEKs[0].SPI]) {
		t.Fatalf("TEKs %+v, ks has %x", u.TEKs, want)
	}
	tk := u.TEKs[0]
	if tk.Transform != uint8(isakmp.ESPAESGCM16) || tk.KeyBits != 128 || tk.ReceiveOnly || tk.ReplayMethod != isakmp.ReplayCounter ||
		tk.Src != netip.MustParsePrefix("10.0.0.0/8") || tk.Expires != t0.Add(time.Hour) {
		t.Fatalf("TEK %+v", tk)
	}
	sids, bits := m.SenderIDs()
	if len(sids) != 2 || bits != ks.MinSIDBits || len(tk.SenderIDs) != 2 {
		t.Fatalf("sender IDs %v/%d, TEK %v", sids, bits, tk.SenderIDs)
	}
	if !u.NewKEK || len(u.Policy) != 1 || u.Policy[0].Action != sadb.Protect {
		t.Fatalf("update %+v", u)
	}
	st, _ := srv.State("G", t0)
	if spi, ok := m.RekeySPI(); !ok || spi != st.KEK.SPI {
		t.Fatalf("Rekey SA %x, ks KEK %x", spi, st.KEK.SPI)
	}
	if n := len(srv.Snapshot(t0)[0].Members); n != 1 {
		t.Fatalf("ks lists %d members", n)
	}
	// A receiver (no GROUP_SENDER) gets no Sender-ID and receive-only TEKs.
	r := NewMember(MemberConfig{Name: "G", ID: groupID})
	u2, _, _, _, _ := register(t, srv, gcks, r)
	if s, _ := r.SenderIDs(); len(s) != 0 || !u2.TEKs[0].ReceiveOnly {
		t.Fatalf("receiver: sids %v, TEK %+v", s, u2.TEKs[0])
	}
}

// proves: G2 (issue 17: GSA_AUTH refusals of RFC 9838 §2.3.4: an unknown
// group is refused with INVALID_GROUP_ID before the IKE SA is established;
// an unauthorized peer's GSA_REGISTRATION gets AUTHORIZATION_FAILED and
// installs nothing)
func TestRegistrationRefused(t *testing.T) {
	srv := keyServer(t, nil)
	_, _, gmSA, ksSA, evs := ikePair(t, srv, Request{Group: 99})
	f, ok := findEvent[ikev2.Failed](evs, gmSA)
	if ksSA != nil || !ok || !errors.Is(f.Err, ikev2.ErrRefused) {
		t.Fatalf("unknown group: SA %v, events %+v", ksSA, evs)
	}
	gcks := NewGCKS(srv, nil)
	_, err := gcks.Register(ks.Peer{Addr: netip.MustParseAddrPort("127.0.0.66:848")}, Request{Group: groupID}, KWK{Alg: DefaultKWA, Key: make([]byte, 32)}, t0)
	var re *RefusedError
	if !errors.As(err, &re) || re.Notify != wire.NotifyAuthorizationFailed {
		t.Fatalf("unauthorized: %v", err)
	}
	m := NewMember(MemberConfig{Name: "G", ID: groupID})
	if _, err := m.Registered(Refusal(err), KWK{}, t0); !errors.As(err, &re) || re.Notify != wire.NotifyAuthorizationFailed {
		t.Fatalf("GM: %v", err)
	}
	if _, ok := m.RekeySPI(); ok || m.Stats.Refused != 1 {
		t.Fatalf("refused GM holds a Rekey SA or uncounted: %+v", m.Stats)
	}
}

func ksPeer() ks.Peer { return ks.Peer{Addr: gmAddr, Identity: "gm"} }

// proves: G2 (issue 17: the SAg payload, RFC 9838 §4.3: a groupvpn GM
// names what it runs, key wrap algorithms included; the GCKS evaluates it
// (§2.3.4) and admits a GM that supports the group's transforms, refuses
// one that does not with NO_PROPOSAL_CHOSEN)
func TestSAg(t *testing.T) {
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	m := NewMember(MemberConfig{Name: "G", ID: groupID, SAg: true})
	raw, err := wire.AppendPayloads(nil, m.Request().Payloads())
	if err != nil {
		t.Fatal(err)
	}
	ps, err := wire.ParseInner(wire.PayloadIDg, raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRequest(ps)
	if err != nil || r.SAg == nil {
		t.Fatalf("SAg lost: %v", err)
	}
	if p := r.SAg.Proposals[1]; p.Protocol != wire.ProtoGIKEUpdate || len(p.SPI) != 0 {
		t.Fatalf("GIKE_UPDATE proposal %+v", p)
	}
	kwk := KWK{Alg: DefaultKWA, Key: make([]byte, 32)}
	if _, err := gcks.Register(ksPeer(), r, kwk, t0); err != nil {
		t.Fatalf("supported SAg refused: %v", err)
	}
	// A GM that runs only AES-CBC for ESP.
	r.SAg.Proposals[0].Transforms = []*wire.Transform{{Type: wire.TransformENCR, ID: wire.EncrAESCBC, Attributes: keyLenAttr(128)},
		{Type: wire.TransformINTEG, ID: wire.IntegHMACSHA2256128}, {Type: wire.TransformSN, ID: wire.SN32Bit}}
	_, err = gcks.Register(ksPeer(), r, kwk, t0)
	var re *RefusedError
	if !errors.As(err, &re) || re.Notify != wire.NotifyNoProposalChosen {
		t.Fatalf("unsupported SAg: %v", err)
	}
	// And the registration over the IKE SA with SAg in GSA_REGISTRATION.
	if u, _, _, _, _ := register(t, srv, gcks, m); len(u.TEKs) != 1 {
		t.Fatalf("registration with SAg: %+v", u)
	}
}

// proves: G2 (issue 17: the GSA_AUTH response chain of RFC 9838 §2.3.1,
// HDR, SK{IDr, [CERT,] AUTH, GSA, KD, [N]}: the GM takes GSA and KD from
// it beside the SA layer's IDr and AUTH, so the one-exchange form needs
// only internal/ikev2's OnAuth to see the SA's keys (docs/gikev2.md))
func TestGSAAuthResponseChain(t *testing.T) {
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	kwk := KWK{Alg: DefaultKWA, Key: bytes.Repeat([]byte{1}, 32)}
	ps, err := gcks.Register(ksPeer(), Request{Group: groupID, Sender: true}, kwk, t0)
	if err != nil {
		t.Fatal(err)
	}
	chain := append([]wire.Payload{wire.IDr(wire.IDKeyID, []byte("ks")), &wire.Auth{Method: wire.AuthPSK, Data: make([]byte, 32)}}, ps...)
	raw, err := wire.AppendPayloads(nil, chain)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := wire.ParseInner(wire.PayloadIDr, raw)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
	u, err := m.Registered(parsed, kwk, t0)
	if err != nil || len(u.TEKs) != 1 || !u.NewKEK {
		t.Fatalf("GSA_AUTH response: %+v %v", u, err)
	}
}
