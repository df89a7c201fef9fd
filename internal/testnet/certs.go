package testnet

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// CA is a throw-away certification authority for tests, made by NewCA.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte // "CERTIFICATE" PEM, for swanctl's x509ca/
	Key     crypto.Signer
}

// Cert is an end-entity certificate issued by a CA, with its private key.
type Cert struct {
	Cert    *x509.Certificate
	CertPEM []byte // "CERTIFICATE" PEM, for swanctl's x509/
	Key     crypto.Signer
	KeyPEM  []byte // PKCS#8 "PRIVATE KEY" PEM, for swanctl's private/
}

// NewRSAKey returns a new RSA 2048 key.
func NewRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewECDSAKey returns a new ECDSA P-256 key.
func NewECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// NewCA returns a self-signed CA with subject CN=cn and an RSA 2048 key (so
// that charon can verify what it signs with the gmp plugin alone), valid
// from an hour ago for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := NewRSAKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     key,
	}
}

// Issue issues an end-entity certificate for key (an *rsa.PrivateKey or
// *ecdsa.PrivateKey; nil means a new RSA 2048 key) with subject CN=cn and the
// given subjectAltNames: an IP address becomes an iPAddress, a string with
// '@' an rfc822Name, anything else a dNSName. charon matches an IKE identity
// of type FQDN, IPv4/IPv6 or RFC822 against these, and an ASN.1 DN identity
// against the subject ("CN=cn").
func (ca *CA) Issue(t testing.TB, cn string, key crypto.Signer, sans ...string) *Cert {
	t.Helper()
	if key == nil {
		key = NewRSAKey(t)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, san := range sans {
		if ip, err := netip.ParseAddr(san); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
		} else if strings.Contains(san, "@") {
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, san)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testnet: Issue %s: private key: %v", cn, err)
	}
	return &Cert{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     key,
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}
}
