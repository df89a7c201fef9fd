package testnet

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCAIssue(t *testing.T) {
	ca := NewCA(t, "test CA")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	for name, key := range map[string]crypto.Signer{"rsa": NewRSAKey(t), "ecdsa": NewECDSAKey(t)} {
		c := ca.Issue(t, "moon.test", key, "moon.test", "10.231.0.2", "moon@example.test")
		blk, _ := pem.Decode(c.CertPEM)
		if blk == nil || blk.Type != "CERTIFICATE" {
			t.Fatalf("%s: bad certificate PEM", name)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "moon.test", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "10.231.0.2" ||
			len(cert.EmailAddresses) != 1 || cert.Subject.CommonName != "moon.test" {
			t.Errorf("%s: SANs %v %v %v, subject %v", name, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, cert.Subject)
		}
		kb, _ := pem.Decode(c.KeyPEM)
		if kb == nil || kb.Type != "PRIVATE KEY" {
			t.Fatalf("%s: bad key PEM", name)
		}
		if _, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if c := ca.Issue(t, "sun.test", nil); c.Key == nil || len(c.KeyPEM) == 0 {
		t.Error("Issue with a nil key made no key")
	}
}
