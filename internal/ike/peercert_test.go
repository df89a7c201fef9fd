package ike

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S1 — the certificates a peer sends cost a signature check each
// under keys it chose, so verifyPeerCert refuses, before any chain is
// built: a certificate over 8 KiB, an RSA key over 8,192 bits or with a
// public exponent over 65,537, and two certificates of one subject (six
// with one subject and one key had Go's chain builder make its 100
// signature checks: 0.4 s a message under 16,000-bit keys, a review
// measured). A chain within the bounds is still verified as before.
func TestPeerCertificateBounds(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	serial := int64(0)
	cert := func(cn string, pub any, extra []byte) []byte {
		t.Helper()
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		if extra != nil {
			tmpl.ExtraExtensions = []pkix.Extension{{Id: []int{1, 3, 6, 1, 4, 1, 99999, 1}, Value: extra}}
		}
		issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "root"}, PublicKey: &caKey.PublicKey}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	odd := func(bits int) *big.Int { return new(big.Int).SetBit(big.NewInt(1), bits-1, 1) }
	id := &isakmp.ID{IDType: isakmp.IDDERASN1DN}
	creds := &Credentials{Roots: x509.NewCertPool()}
	for _, c := range []struct {
		name  string
		chain [][]byte
		want  string
	}{
		{"over 8 KiB", [][]byte{cert("leaf", &leafKey.PublicKey, make([]byte, 9<<10))}, "at most 8192"},
		{"an RSA key of 8,193 bits", [][]byte{cert("leaf", &rsa.PublicKey{N: odd(8193), E: 65537}, nil)}, "at most 8192 bits"},
		{"an RSA exponent over 65,537", [][]byte{cert("leaf", &rsa.PublicKey{N: odd(2048), E: 1<<31 - 1}, nil)}, "exponent 65537"},
		{"two certificates of one subject", [][]byte{cert("leaf", &leafKey.PublicKey, nil), cert("inter", &leafKey.PublicKey, nil),
			cert("inter", &leafKey.PublicKey, nil)}, "two certificates of subject"},
		{"within the bounds, untrusted", [][]byte{cert("leaf", &leafKey.PublicKey, nil), cert("inter", &leafKey.PublicKey, nil)}, "untrusted certificate"},
	} {
		_, err := verifyPeerCert(creds, c.chain, id, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
