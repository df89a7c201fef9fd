package ikev2

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

var (
	addrA = netip.MustParseAddrPort("127.0.0.1:500")
	addrB = netip.MustParseAddrPort("127.0.0.2:500")
	// t0 is the tests' clock: within the validity of testnet's
	// certificates (made now, valid from an hour ago), whenever the tests
	// run (a fixed date failed once the real clock was an hour past it).
	t0 = time.Now().UTC().Truncate(time.Hour)
)

func pskConfig(suites ...Suite) *Config {
	return &Config{Suites: suites, Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("shared secret"), true }}}
}

func certConfigs(t *testing.T, keyA, keyB crypto.Signer) (*Config, *Config) {
	ca := testnet.NewCA(t, "ikev2 test CA")
	a := ca.Issue(t, "a.test", keyA)
	b := ca.Issue(t, "b.test", keyB)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &Config{Creds: ike.Credentials{Chain: [][]byte{a.Cert.Raw}, Key: a.Key, Roots: pool}, CACerts: []*x509.Certificate{ca.Cert}},
		&Config{Creds: ike.Credentials{Chain: [][]byte{b.Cert.Raw}, Key: b.Key, Roots: pool}, CACerts: []*x509.Certificate{ca.Cert}}
}

func pair(t *testing.T, ca, cb *Config, limits Limits) (*Endpoint, *Endpoint) {
	t.Helper()
	a, err := NewEndpoint(ca, addrA, limits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEndpoint(cb, addrB, limits)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func established(t *testing.T, evs []SAEvent) (init, resp *SA) {
	t.Helper()
	for _, ev := range evs {
		switch e := ev.Event.(type) {
		case Established:
			if e.Info.Initiator {
				init = ev.SA
			} else {
				resp = ev.SA
			}
		case Failed:
			t.Fatalf("failed: %v", e.Err)
		}
	}
	if init == nil || resp == nil {
		t.Fatalf("not established on both sides: %v", evs)
	}
	return init, resp
}

func sameKeys(t *testing.T, x, y *Keys) {
	t.Helper()
	for _, p := range [][2][]byte{{x.SKEYSEED, y.SKEYSEED}, {x.SKd, y.SKd}, {x.SKai, y.SKai}, {x.SKar, y.SKar},
		{x.SKei, y.SKei}, {x.SKer, y.SKer}, {x.SKpi, y.SKpi}, {x.SKpr, y.SKpr}} {
		if !bytes.Equal(p[0], p[1]) {
			t.Fatalf("keys differ: %x %x", p[0], p[1])
		}
	}
}

// proves: G3 (issue 17: IKE_SA_INIT + IKE_AUTH between two of our
// endpoints in memory, with PSK and with RSA and ECDSA certificates, AES-GCM
// and AES-CBC + HMAC-SHA2 suites, DH groups 14 and 19-21: both sides
// establish with the same SKEYSEED and SK_*; an INFORMATIONAL liveness check
// is answered and a Delete removes the SA from both endpoints).
func TestExchangeInMemory(t *testing.T) {
	gcm := Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19}
	cases := []struct {
		name  string
		a, b  *Config
		suite Suite
	}{
		{"psk-gcm128-ecp256", pskConfig(gcm), pskConfig(gcm), gcm},
		{"psk-gcm256-ecp384", pskConfig(Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 20}),
			pskConfig(Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 20}), Suite{}},
		{"psk-cbc-modp2048", pskConfig(Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14}),
			pskConfig(DefaultSuites...), Suite{}},
		{"psk-gcm-ecp521", pskConfig(Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 21}),
			pskConfig(Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 21}), Suite{}},
	}
	ea, eb := certConfigs(t, testnet.NewECDSAKey(t), testnet.NewECDSAKey(t))
	cases = append(cases, struct {
		name  string
		a, b  *Config
		suite Suite
	}{"ecdsa", ea, eb, Suite{}})
	ra, rb := certConfigs(t, nil, nil)
	rb.RSAPSS = true
	cases = append(cases, struct {
		name  string
		a, b  *Config
		suite Suite
	}{"rsa", ra, rb, Suite{}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t, c.a, c.b, Limits{})
			_, out, err := a.Initiate(addrB, t0)
			if err != nil {
				t.Fatal(err)
			}
			si, sr := established(t, Exchange(a, b, a, out, t0))
			sameKeys(t, si.Keys(), sr.Keys())
			if len(a.SAs()) != 1 || len(b.SAs()) != 1 || b.HalfOpen() != 0 {
				t.Fatalf("SAs %d %d, half-open %d", len(a.SAs()), len(b.SAs()), b.HalfOpen())
			}
			out, err = b.Liveness(sr, t0)
			if err != nil {
				t.Fatal(err)
			}
			evs := Exchange(a, b, b, out, t0)
			if len(evs) != 1 || evs[0].Event != (Alive{}) {
				t.Fatalf("liveness: %v", evs)
			}
			out, err = a.Delete(si, t0)
			if err != nil {
				t.Fatal(err)
			}
			evs = Exchange(a, b, a, out, t0)
			if len(evs) != 2 || len(a.SAs()) != 0 || len(b.SAs()) != 0 {
				t.Fatalf("delete: %v, SAs left %d %d", evs, len(a.SAs()), len(b.SAs()))
			}
			for _, ev := range evs {
				if ev.Event != (Deleted{}) {
					t.Fatalf("delete: %v", evs)
				}
			}
		})
	}
}

// proves: G3 (issue 17: a wrong PSK or a certificate from another CA fails
// IKE_AUTH with ike.ErrAuth on both sides, counted in auth_failed, and
// leaves no SA).
func TestAuthFailure(t *testing.T) {
	bad := pskConfig()
	bad.Creds.PSK = func(netip.Addr) ([]byte, bool) { return []byte("other secret"), true }
	a, b := pair(t, pskConfig(), bad, Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	evs := Exchange(a, b, a, out, t0)
	fails := 0
	for _, ev := range evs {
		if f, ok := ev.Event.(Failed); ok {
			fails++
			if !errors.Is(f.Err, ike.ErrAuth) && !errors.Is(f.Err, ErrRefused) {
				t.Fatalf("failure %v", f.Err)
			}
		} else {
			t.Fatalf("unexpected %T", ev.Event)
		}
	}
	if fails != 2 || len(a.sas) != 0 || len(b.sas) != 0 || b.Stats.AuthFailed != 1 {
		t.Fatalf("fails %d, SAs %d %d, auth_failed %d", fails, len(a.sas), len(b.sas), b.Stats.AuthFailed)
	}
}

// proves: G3 (issue 17: retransmission per RFC 7296 §2.1: a lost request
// is sent again with the same bytes, a retransmitted request is answered
// with the stored response without new state, and the initiator gives up
// with ErrTimeout after Retransmit.Tries).
func TestRetransmission(t *testing.T) {
	a, b := pair(t, pskConfig(), pskConfig(), Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	first := out.Send[0].Data
	// The request is lost: the timer sends the same bytes again.
	next := a.NextTimer()
	if next.IsZero() {
		t.Fatal("no retransmission timer")
	}
	re := a.Tick(next)
	if len(re.Send) != 1 || !bytes.Equal(re.Send[0].Data, first) {
		t.Fatal("retransmission differs from the request")
	}
	r1 := b.Handle(addrA, first, next)
	r2 := b.Handle(addrA, first, next)
	if len(r1.Send) != 1 || len(r2.Send) != 1 || !bytes.Equal(r1.Send[0].Data, r2.Send[0].Data) || b.HalfOpen() != 1 || b.Stats.Resent != 1 {
		t.Fatalf("responder: answers %d %d, half-open %d, resent %d", len(r1.Send), len(r2.Send), b.HalfOpen(), b.Stats.Resent)
	}
	// IKE_AUTH request lost twice, answered, then retransmitted again.
	o := a.Handle(addrB, r1.Send[0].Data, next)
	auth := o.Send[0].Data
	at := a.NextTimer()
	if re := a.Tick(at); !bytes.Equal(re.Send[0].Data, auth) {
		t.Fatal("IKE_AUTH retransmission differs")
	}
	resp := b.Handle(addrA, auth, at)
	again := b.Handle(addrA, auth, at)
	if !bytes.Equal(resp.Send[0].Data, again.Send[0].Data) || len(resp.Events) != 1 || len(again.Events) != 0 {
		t.Fatalf("stored IKE_AUTH response: %d events then %d", len(resp.Events), len(again.Events))
	}
	if evs := a.Handle(addrB, resp.Send[0].Data, at).Events; len(evs) != 1 {
		t.Fatalf("initiator: %v", evs)
	}
	// A request nobody answers ends in ErrTimeout.
	c, _ := pair(t, pskConfig(), pskConfig(), Limits{})
	c.Initiate(addrB, t0)
	var failed error
	for now := t0; failed == nil; {
		now = c.NextTimer()
		if now.IsZero() {
			t.Fatal("no timer and no failure")
		}
		for _, ev := range c.Tick(now).Events {
			if f, ok := ev.Event.(Failed); ok {
				failed = f.Err
			}
		}
	}
	if !errors.Is(failed, ErrTimeout) || len(c.sas) != 0 {
		t.Fatalf("%v, %d SAs left", failed, len(c.sas))
	}
}

// proves: G3 (issue 17: a CHILD SA in IKE_AUTH when both sides configure
// one: the responder takes the initiator's ESP proposal, both report the
// same SPIs, selectors and KEYMAT (§2.17), split initiator-to-responder
// keys first; without a ChildConfig the responder refuses it with
// NO_PROPOSAL_CHOSEN, which the initiator reports as ChildRefused, and the
// IKE SA stands).
func TestChildSAInMemory(t *testing.T) {
	ts := func(s string) []wire.TrafficSelector {
		return []wire.TrafficSelector{wire.PrefixTS(netip.MustParsePrefix(s))}
	}
	for _, cs := range []ChildSuite{{Encr: wire.EncrAESGCM16, KeyBits: 128}, {Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128}} {
		ca, cb := pskConfig(), pskConfig()
		ca.Child = &ChildConfig{Suites: []ChildSuite{cs}, TSi: ts("127.0.0.1/32"), TSr: ts("127.0.0.2/32")}
		cb.Child = &ChildConfig{Suites: []ChildSuite{{Encr: wire.EncrAESGCM16, KeyBits: 256}, cs}}
		a, b := pair(t, ca, cb, Limits{})
		_, out, _ := a.Initiate(addrB, t0)
		evs := Exchange(a, b, a, out, t0)
		established(t, evs)
		var children []ChildSA
		for _, ev := range evs {
			if c, ok := ev.Event.(ChildEstablished); ok {
				children = append(children, c.Child)
			}
		}
		if len(children) != 2 {
			t.Fatalf("%s: %d CHILD SAs", cs, len(children))
		}
		x, y := children[0], children[1]
		el := cs.ike().encrKeyLen()
		if x.SPIi != y.SPIi || x.SPIr != y.SPIr || x.Suite != cs || !bytes.Equal(x.EncrI, y.EncrI) || !bytes.Equal(x.EncrR, y.EncrR) ||
			!bytes.Equal(x.IntegI, y.IntegI) || !bytes.Equal(x.IntegR, y.IntegR) || len(x.EncrI) != el || bytes.Equal(x.EncrI, x.EncrR) {
			t.Fatalf("%s: CHILD SAs differ: %+v %+v", cs, x, y)
		}
	}
	// The responder holds no ChildConfig: refused, the IKE SA stands.
	ca := pskConfig()
	ca.Child = &ChildConfig{Suites: []ChildSuite{{Encr: wire.EncrAESGCM16, KeyBits: 128}}, TSi: ts("127.0.0.1/32"), TSr: ts("127.0.0.2/32")}
	a, b := pair(t, ca, pskConfig(), Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	evs := Exchange(a, b, a, out, t0)
	established(t, evs)
	if len(evs) != 3 || evs[2].Event != (ChildRefused{Notify: wire.NotifyNoProposalChosen}) {
		t.Fatalf("events %v", evs)
	}
}

// proves: G3 (issue 17: Config.RemoteID pins the peer's identity: an
// ID_FQDN peer that authenticates with the right key but names another
// identity is refused with ike.ErrAuth).
func TestRemoteIDPinned(t *testing.T) {
	ca, cb := pskConfig(), pskConfig()
	ca.LocalID = &Identity{Type: wire.IDFQDN, Data: []byte("gm.example")}
	cb.RemoteID = &Identity{Type: wire.IDFQDN, Data: []byte("other.example")}
	a, b := pair(t, ca, cb, Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	for _, ev := range Exchange(a, b, a, out, t0) {
		if _, ok := ev.Event.(Established); ok {
			t.Fatal("established with the wrong identity")
		}
	}
	if b.Stats.AuthFailed != 1 || len(b.sas) != 0 {
		t.Fatalf("auth_failed %d, SAs %d", b.Stats.AuthFailed, len(b.sas))
	}
	cb.RemoteID = &Identity{Type: wire.IDFQDN, Data: []byte("gm.example")}
	_, out, _ = a.Initiate(addrB, t0)
	si, _ := established(t, Exchange(a, b, a, out, t0))
	if si.Info().LocalID.String() != `"gm.example"` {
		t.Fatal(si.Info().LocalID)
	}
}
