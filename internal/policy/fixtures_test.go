package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var regen = flag.Bool("regen", false, "regenerate the key and certificate fixtures in testdata/")

// TestRegenerateFixtures writes testdata/*.pem when run with -regen:
//
//	go test ./internal/policy -run TestRegenerateFixtures -regen
//
// The files are committed; this is how they were made.
//
// proves: O1
func TestRegenerateFixtures(t *testing.T) {
	if !*regen {
		t.Skip("run with -regen to rewrite testdata/*.pem")
	}
	write := func(name, typ string, der ...[]byte) {
		var out []byte
		for _, d := range der {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		if err := os.WriteFile(filepath.Join("testdata", name), out, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ecKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ecDER := func(k *ecdsa.PrivateKey) []byte {
		d, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	notBefore := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.AddDate(100, 0, 0)
	caKey := ecKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "groupvpn test CA", Organization: []string{"groupvpn"}},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i, name := range []string{"ks", "gm"} {
		k := ecKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(10 + i)), Subject: pkix.Name{CommonName: name + "1.example.net", OrganizationalUnit: []string{name}, Organization: []string{"groupvpn"}},
			NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, k.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(name+"-cert.pem", "CERTIFICATE", der, caDER)
		write(name+"-key.pem", "EC PRIVATE KEY", ecDER(k))
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	write("ks-rekey.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	p8, err := x509.MarshalPKCS8PrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	write("ks-rekey-ec.pem", "PRIVATE KEY", p8)
}
