package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// MainMode is the phase-1 scenario: one complete IKEv1 main mode, both
// sides in memory, per suite, beside the public-key work the same exchange
// cannot avoid (two DH key pairs and agreements; for ECDSA two signatures
// and two verifications).
func MainMode() Scenario {
	psk := ike.Suite{KeyBits: 128, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK}
	ec := ike.Suite{KeyBits: 128, Hash: ike.SHA256, Group: 19, Auth: ike.AuthECDSA256}
	modp := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 14, Auth: ike.AuthPSK}
	ecCreds := ecdsaCreds()
	pskCreds := ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("bench"), true }}
	dh := func(s ike.Suite) *Case {
		return &Case{Name: "  " + groupName(s.Group) + " DH x2", Run: func(b *testing.B) { pkCost(b, s, nil) }}
	}
	return Scenario{
		Name:    "mainmode",
		About:   "one IKEv1 main mode, initiator and responder in memory, each beside its public-key work",
		Ceiling: Case{Name: "  ecp256 DH x2 + ECDSA-256 sign/verify x2", Run: func(b *testing.B) { pkCost(b, ec, ecCreds.Key.(*ecdsa.PrivateKey)) }},
		Cases: []Case{
			{Name: ec.String(), Run: func(b *testing.B) { mainModes(b, ec, ecCreds) }},
			{Name: psk.String(), Run: func(b *testing.B) { mainModes(b, psk, pskCreds) }, Ceiling: dh(psk)},
			{Name: modp.String(), Run: func(b *testing.B) { mainModes(b, modp, pskCreds) }, Ceiling: dh(modp)},
		},
	}
}

func mainModes(b *testing.B, s ike.Suite, creds ike.Credentials) {
	cfg := &ike.Config{Suites: []ike.Suite{s}, Creds: creds}
	a, r := netip.MustParseAddrPort("127.0.0.1:500"), netip.MustParseAddrPort("127.0.0.2:500")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < b.N; i++ {
		ei, _ := ike.NewEndpoint(cfg, a, ike.Limits{})
		er, _ := ike.NewEndpoint(cfg, r, ike.Limits{})
		_, out, err := ei.Initiate(r, now)
		if err != nil {
			b.Fatal(err)
		}
		established := 0
		for _, ev := range ike.Exchange(ei, er, ei, out, now) {
			if _, ok := ev.Event.(ike.Established); ok {
				established++
			}
		}
		if established != 2 {
			b.Fatalf("%s: established %d sides", s, established)
		}
	}
}

func groupName(id uint16) string {
	g, _ := ike.GroupByID(id)
	return g.Name()
}

// pkCost is two DH key pairs and agreements and, with key, two ECDSA
// signatures and verifications.
func pkCost(b *testing.B, s ike.Suite, key *ecdsa.PrivateKey) {
	g, _ := ike.GroupByID(s.Group)
	h := make([]byte, 32)
	for i := 0; i < b.N; i++ {
		pa, ka, _ := g.GenerateKey(rand.Reader)
		pb, kb, _ := g.GenerateKey(rand.Reader)
		pa.Shared(kb)
		pb.Shared(ka)
		for j := 0; key != nil && j < 2; j++ {
			r, sg, _ := ecdsa.Sign(rand.Reader, key, h)
			ecdsa.Verify(&key.PublicKey, h, r, sg)
		}
	}
}

// ecdsaCreds is a self-signed P-256 certificate acting as its own CA.
func ecdsaCreds() ike.Credentials {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return ike.Credentials{Chain: [][]byte{der}, Key: crypto.Signer(key), Roots: pool}
}
