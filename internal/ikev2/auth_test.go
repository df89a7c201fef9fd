package ikev2

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
)

// proves: G3 (issue 17: AUTH with digital signatures, RFC 7427 method 14
// with RSA PKCS#1 v1.5, RSASSA-PSS and ECDSA, and the classic methods 1 and
// 9-11 when the peer announced no SIGNATURE_HASH_ALGORITHMS: each verifies,
// and fails with ike.ErrAuth for other octets, another key or a cut
// signature).
func TestSignVerify(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	e256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	e521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	octets := []byte("message 1 | nonce | prf(SK_p, ID')")
	cases := []struct {
		name   string
		key    crypto.Signer
		hashes []uint16
		pss    bool
		method AuthMethod
	}{
		{"rsa-pkcs1-7427", rk, ourHashes, false, wire.AuthDigitalSignature},
		{"rsa-pss-7427", rk, ourHashes, true, wire.AuthDigitalSignature},
		{"rsa-classic", rk, nil, false, wire.AuthRSASig},
		{"ecdsa256-7427", e256, ourHashes, false, wire.AuthDigitalSignature},
		{"ecdsa384-7427", e384, ourHashes, false, wire.AuthDigitalSignature},
		{"ecdsa521-7427", e521, ourHashes, false, wire.AuthDigitalSignature},
		{"ecdsa256-classic", e256, nil, false, wire.AuthECDSA256},
		{"ecdsa384-classic", e384, []uint16{HashSHA256}, false, wire.AuthECDSA384},
		{"ecdsa521-classic", e521, nil, false, wire.AuthECDSA521},
	}
	for _, c := range cases {
		s, err := chooseSigner(c.key, c.hashes, c.pss)
		if err != nil {
			t.Fatal(err)
		}
		m, data, err := s.sign(rand.Reader, c.key, octets)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if m != c.method {
			t.Fatalf("%s: method %s, want %s", c.name, m, c.method)
		}
		if err := verifySig(c.key.Public(), m, data, octets); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := verifySig(c.key.Public(), m, data, append(octets, 0)); !errors.Is(err, ike.ErrAuth) {
			t.Fatalf("%s: other octets: %v", c.name, err)
		}
		if err := verifySig(other.Public(), m, data, octets); !errors.Is(err, ike.ErrAuth) {
			t.Fatalf("%s: other key: %v", c.name, err)
		}
		for i := 0; i < len(data); i += 7 {
			if err := verifySig(c.key.Public(), m, data[:i], octets); !errors.Is(err, ike.ErrAuth) {
				t.Fatalf("%s: cut to %d: %v", c.name, i, err)
			}
		}
	}
}

// proves: G3 (issue 17: the RFC 7427 AlgorithmIdentifiers we send are the
// DER encodings of the OIDs crypto/x509 knows for these signatures).
func TestAlgorithmIdentifiers(t *testing.T) {
	for _, c := range []struct {
		der []byte
		oid asn1.ObjectIdentifier
	}{
		{algSHA256RSA, oidSHA256RSA}, {algSHA384RSA, oidSHA384RSA}, {algSHA512RSA, oidSHA512RSA},
		{algECDSASHA256, oidECDSASHA256}, {algECDSASHA384, oidECDSASHA384}, {algECDSASHA512, oidECDSASHA512},
		{algPSSSHA256, oidRSAPSS},
	} {
		var a pkix.AlgorithmIdentifier
		if rest, err := asn1.Unmarshal(c.der, &a); err != nil || len(rest) > 0 || !a.Algorithm.Equal(c.oid) {
			t.Errorf("%x: %v %v", c.der, a.Algorithm, err)
		}
	}
	var p pssParams
	var a algorithmIdentifier
	asn1.Unmarshal(algPSSSHA256, &a)
	if _, err := asn1.Unmarshal(a.Parameters.FullBytes, &p); err != nil || p.SaltLength != 32 || hashOfOID(p.Hash.Algorithm) != crypto.SHA256 {
		t.Fatalf("PSS parameters %+v: %v", p, err)
	}
	_ = x509.SHA256WithRSA
}

// proves: G3 (issue 17: PSK AUTH = prf(prf(psk, "Key Pad for IKEv2"),
// octets) checks in constant time and refuses another key or none).
func TestPSKAuth(t *testing.T) {
	k, _ := DeriveKeys(DefaultSuites[0], []byte("ni"), []byte("nr"), []byte("gir"), [8]byte{1}, [8]byte{2})
	a := pskAuth(k, []byte("secret"), []byte("octets"))
	if err := checkPSK(k, []byte("secret"), []byte("octets"), a); err != nil {
		t.Fatal(err)
	}
	for _, psk := range [][]byte{[]byte("secreT"), nil} {
		if err := checkPSK(k, psk, []byte("octets"), a); !errors.Is(err, ike.ErrAuth) {
			t.Fatalf("psk %q: %v", psk, err)
		}
	}
}
