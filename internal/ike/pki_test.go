package ike

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA and leaf certificates for each signature method, made once
// per test binary (RSA key generation is slow).
type testPKI struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	pool   *x509.CertPool
	leaves map[string]leaf // by name: "rsa", "ecdsa-256", ...
}

type leaf struct {
	der []byte
	key crypto.Signer
}

// The fake clock of the tests (t0) lies inside this validity.
var (
	notBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
)

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func pki(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal = newTestPKI(t, "groupvpn test CA") })
	return pkiVal
}

func newTestPKI(t testing.TB, cn string) *testPKI {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{caCert: ca, caKey: caKey, pool: x509.NewCertPool(), leaves: map[string]leaf{}}
	p.pool.AddCert(ca)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.Signer{"rsa": rsaKey}
	for name, c := range map[string]elliptic.Curve{"ecdsa-256": elliptic.P256(), "ecdsa-384": elliptic.P384(), "ecdsa-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	for i, name := range []string{"rsa", "ecdsa-256", "ecdsa-384", "ecdsa-521"} {
		p.leaves[name] = leaf{der: p.issue(t, int64(10+i), "gm-"+name+".example", keys[name]), key: keys[name]}
	}
	return p
}

func (p *testPKI) issue(t testing.TB, serial int64, cn string, key crypto.Signer) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"groupvpn"}},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{cn}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (p *testPKI) creds(name string) Credentials {
	l := p.leaves[name]
	return Credentials{Chain: [][]byte{l.der}, Key: l.key, Roots: p.pool}
}
