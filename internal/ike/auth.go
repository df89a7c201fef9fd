package ike

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Credentials are what an SA authenticates with and checks peers against.
type Credentials struct {
	// PSK returns the pre-shared key for a peer address. Main mode
	// chooses the key before identities are exchanged (RFC 2409 §5.4),
	// so it is keyed by address, as `crypto isakmp key K address A` is.
	PSK func(peer netip.Addr) ([]byte, bool)
	// Chain is our certificate chain, leaf first, DER; Key its private
	// key (RSA for rsa-sig, ECDSA for ecdsa-*).
	Chain [][]byte
	Key   crypto.Signer
	// Roots are the CAs peer certificates must chain to.
	Roots *x509.CertPool
}

// ErrAuth wraps every authentication failure, so callers can tell a wrong
// key or an untrusted certificate from a protocol error.
var ErrAuth = errors.New("authentication failed")

// Identity is the kind of phase-1 identity we send (IOS `crypto isakmp
// identity`).
type Identity int

const (
	IdentityAuto     Identity = iota // certificate subject for signatures, address for PSK
	IdentityAddress                  // ID_IPV4_ADDR or ID_IPV6_ADDR of our address, whatever the authentication
	IdentityDN                       // ID_DER_ASN1_DN of our certificate's subject
	IdentityHostname                 // ID_FQDN of Config.Hostname
)

// localID returns the identity we send: cfg.LocalID, else the kind
// cfg.Identity names.
func localID(cfg *Config, auth AuthMethod, local netip.Addr) (*isakmp.ID, error) {
	if cfg.LocalID != nil {
		return cfg.LocalID, nil
	}
	creds := &cfg.Creds
	switch identityKind(cfg, auth) {
	case IdentityHostname:
		if cfg.Hostname == "" {
			return nil, errors.New("ike: identity hostname needs a hostname")
		}
		return &isakmp.ID{IDType: isakmp.IDFQDN, Data: []byte(cfg.Hostname)}, nil
	case IdentityDN:
		if len(creds.Chain) == 0 {
			return nil, errors.New("ike: identity dn needs a certificate")
		}
		c, err := x509.ParseCertificate(creds.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("ike: our certificate: %w", err)
		}
		return &isakmp.ID{IDType: isakmp.IDDERASN1DN, Data: c.RawSubject}, nil
	}
	return isakmp.AddrID(local.Unmap()), nil
}

// identityKind is the kind of identity cfg sends with auth:
// IdentityAddress, IdentityDN or IdentityHostname.
func identityKind(cfg *Config, auth AuthMethod) Identity {
	switch cfg.Identity {
	case IdentityAuto:
		if auth.signature() {
			return IdentityDN
		}
		return IdentityAddress
	case IdentityDN, IdentityHostname:
		return cfg.Identity
	}
	return IdentityAddress
}

// ourID is localID for the SA. An address identity, the usual one with
// pre-shared keys, is made once per Endpoint and shared by its SAs, which
// only encode it (a key server sends one per registration).
func (sa *SA) ourID() (*isakmp.ID, error) {
	sh := sa.sh
	if sh == nil || sa.cfg.LocalID != nil || identityKind(sa.cfg, sa.suite.Auth) != IdentityAddress {
		return localID(sa.cfg, sa.suite.Auth, sa.sh.local.Addr())
	}
	a := sh.local.Addr().Unmap()
	if sh.addrID == nil || sh.addrIDFor != a {
		sh.addrID, sh.addrIDFor = isakmp.AddrID(a), a
	}
	return sh.addrID, nil
}

// sign signs HASH_I or HASH_R (RFC 2409 §5.1). RSA signatures are PKCS#1
// v1.5 over the raw hash with no DigestInfo, as IKEv1 implementations
// (strongSwan's SIGN_RSA_EMSA_PKCS1_NULL) do; ECDSA signs the hash as it is
// (it was computed with the method's own SHA-2, see hashFor) and encodes
// r||s at fixed width (RFC 4754 §3, §7).
func sign(rand io.Reader, auth AuthMethod, key crypto.Signer, h []byte) ([]byte, error) {
	switch auth {
	case AuthRSA:
		if _, ok := key.Public().(*rsa.PublicKey); !ok {
			return nil, errors.New("ike: rsa-sig needs an RSA key")
		}
		return key.Sign(rand, h, crypto.Hash(0))
	case AuthECDSA256, AuthECDSA384, AuthECDSA521:
		pub, ok := key.Public().(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("ike: %s needs an ECDSA key", auth)
		}
		ch, size := ecdsaParams(auth)
		if pub.Curve.Params().BitSize != map[AuthMethod]int{AuthECDSA256: 256, AuthECDSA384: 384, AuthECDSA521: 521}[auth] {
			return nil, fmt.Errorf("ike: %s needs a key on its curve, have %s", auth, pub.Curve.Params().Name)
		}
		der, err := key.Sign(rand, h, ch)
		if err != nil {
			return nil, err
		}
		return derToRS(der, size)
	}
	return nil, fmt.Errorf("ike: %s is not a signature method", auth)
}

func ecdsaParams(auth AuthMethod) (crypto.Hash, int) {
	switch auth {
	case AuthECDSA384:
		return crypto.SHA384, 48
	case AuthECDSA521:
		return crypto.SHA512, 66
	}
	return crypto.SHA256, 32
}

// verify checks a peer's signature over HASH_I/HASH_R with the public key
// of its certificate.
func verify(auth AuthMethod, pub crypto.PublicKey, h, sig []byte) error {
	switch auth {
	case AuthRSA:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: rsa-sig but the peer certificate has a %T key", ErrAuth, pub)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.Hash(0), h, sig); err != nil {
			return fmt.Errorf("%w: RSA signature does not verify", ErrAuth)
		}
		return nil
	case AuthECDSA256, AuthECDSA384, AuthECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s but the peer certificate has a %T key", ErrAuth, auth, pub)
		}
		_, size := ecdsaParams(auth)
		if len(sig) != 2*size {
			return fmt.Errorf("%w: ECDSA signature of %d octets, want %d", ErrAuth, len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, h, r, s) {
			return fmt.Errorf("%w: ECDSA signature does not verify", ErrAuth)
		}
		return nil
	}
	return fmt.Errorf("%w: %s is not a signature method", ErrAuth, auth)
}

// derToRS converts an ASN.1 ECDSA signature to fixed-width r||s.
func derToRS(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("ike: ECDSA signature: %w", err)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

// Bounds on a peer's certificates, which cost a signature check each
// under a key the peer chose (S1): their size, an RSA key's modulus and
// public exponent.
const (
	maxPeerCertDER = 8 << 10
	maxPeerRSABits = 8192
	maxPeerRSAExp  = 65537
)

// parsePeerCert parses one certificate a peer sent, within those bounds.
func parsePeerCert(der []byte) (*x509.Certificate, error) {
	if len(der) > maxPeerCertDER {
		return nil, fmt.Errorf("%d octets (at most %d)", len(der), maxPeerCertDER)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok && (k.N.BitLen() > maxPeerRSABits || k.E > maxPeerRSAExp) {
		return nil, fmt.Errorf("%q: an RSA key of %d bits, exponent %d (at most %d bits, exponent %d)",
			c.Subject, k.N.BitLen(), k.E, maxPeerRSABits, maxPeerRSAExp)
	}
	return c, nil
}

// verifyPeerCert checks the chain against the roots at now and that the
// identity the peer claimed is the certificate's: its subject DN, or an IP
// address, DNS name or e-mail address among its alternative names.
func verifyPeerCert(creds *Credentials, chain [][]byte, id *isakmp.ID, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: peer sent no certificate", ErrAuth)
	}
	if creds.Roots == nil {
		return nil, fmt.Errorf("%w: no CA configured to verify the peer certificate", ErrAuth)
	}
	leaf, err := parsePeerCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: peer certificate: %v", ErrAuth, err)
	}
	inter := x509.NewCertPool()
	subjects := map[string]bool{string(leaf.RawSubject): true}
	for _, der := range chain[1:] {
		c, err := parsePeerCert(der)
		if err != nil {
			return nil, fmt.Errorf("%w: peer's intermediate certificate: %v", ErrAuth, err)
		}
		// Certificates of one subject are all tried as each other's
		// issuers: six with one key and one subject had the chain builder
		// make its 100 signature checks (a review's measure, under keys
		// of 16,000 bits: 0.4 s a message).
		if subjects[string(c.RawSubject)] {
			return nil, fmt.Errorf("%w: the peer sent two certificates of subject %q", ErrAuth, c.Subject)
		}
		subjects[string(c.RawSubject)] = true
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: creds.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: untrusted certificate %q: %v", ErrAuth, leaf.Subject, err)
	}
	switch id.IDType {
	case isakmp.IDDERASN1DN:
		if bytes.Equal(id.Data, leaf.RawSubject) {
			return leaf, nil
		}
	case isakmp.IDIPv4Addr, isakmp.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.Data); ok && slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool {
			b, _ := netip.AddrFromSlice(ip)
			return b.Unmap() == a.Unmap()
		}) {
			return leaf, nil
		}
	case isakmp.IDFQDN:
		if slices.Contains(leaf.DNSNames, string(id.Data)) {
			return leaf, nil
		}
	case isakmp.IDUserFQDN:
		if slices.Contains(leaf.EmailAddresses, string(id.Data)) {
			return leaf, nil
		}
	}
	return nil, fmt.Errorf("%w: identity %s is not in certificate %q", ErrAuth, id, leaf.Subject)
}
