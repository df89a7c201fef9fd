package ike

import (
	"crypto/x509"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// VerifyPeerCert checks a peer's certificate chain (leaf first, DER)
// against creds.Roots at now, and that id names the leaf: its subject DN,
// or an address, DNS name or e-mail address among its alternative names.
// internal/ikev2 uses it too: IKEv2's identity types 1, 2, 3, 5 and 9 have
// the values and meanings of the IPsec DOI's (RFC 7296 §3.5). Failures
// wrap ErrAuth.
func VerifyPeerCert(creds *Credentials, chain [][]byte, id *isakmp.ID, now time.Time) (*x509.Certificate, error) {
	return verifyPeerCert(creds, chain, id, now)
}
