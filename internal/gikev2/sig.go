package gikev2

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrSignature is a GSA_REKEY whose AUTH payload is missing, of another
// algorithm than the group's, or does not verify.
var ErrSignature = errors.New("gikev2: GSA_REKEY signature does not verify")

// RFC 7427 Appendix A's AlgorithmIdentifiers (DER) of the signatures a GCKS
// makes over GSA_REKEY messages (the same values internal/ikev2 uses for
// IKE_AUTH).
var (
	algSHA256RSA   = mustHex("300d06092a864886f70d01010b0500")
	algECDSASHA256 = mustHex("300a06082a8648ce3d040302")
	algECDSASHA384 = mustHex("300a06082a8648ce3d040303")
	algECDSASHA512 = mustHex("300a06082a8648ce3d040304")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// sigAlg is how a rekey key signs: its AlgorithmIdentifier and hash.
type sigAlg struct {
	der  []byte
	hash crypto.Hash
}

// sigAlgOf picks the RFC 7427 algorithm of a public key: ECDSA with the
// hash of its curve's size (P-256: SHA-256, P-384: SHA-384, P-521:
// SHA-512), RSA PKCS#1 v1.5 with SHA-256.
func sigAlgOf(pub crypto.PublicKey) (sigAlg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return sigAlg{algECDSASHA256, crypto.SHA256}, nil
		case elliptic.P384():
			return sigAlg{algECDSASHA384, crypto.SHA384}, nil
		case elliptic.P521():
			return sigAlg{algECDSASHA512, crypto.SHA512}, nil
		}
		return sigAlg{}, fmt.Errorf("gikev2: ECDSA rekey key on an unsupported curve")
	case *rsa.PublicKey:
		return sigAlg{algSHA256RSA, crypto.SHA256}, nil
	}
	return sigAlg{}, fmt.Errorf("gikev2: rekey key of type %T (RSA or ECDSA)", pub)
}

// sigAlgByDER finds the algorithm of an AlgorithmIdentifier a GCKS sent.
func sigAlgByDER(der []byte) (sigAlg, bool) {
	for _, a := range []sigAlg{{algSHA256RSA, crypto.SHA256}, {algECDSASHA256, crypto.SHA256}, {algECDSASHA384, crypto.SHA384}, {algECDSASHA512, crypto.SHA512}} {
		if bytes.Equal(a.der, der) {
			return a, true
		}
	}
	return sigAlg{}, false
}

func (a sigAlg) sign(rand io.Reader, key crypto.Signer, data []byte) ([]byte, error) {
	h := a.hash.New()
	h.Write(data)
	sig, err := key.Sign(rand, h.Sum(nil), a.hash)
	if err != nil {
		return nil, fmt.Errorf("gikev2: sign GSA_REKEY: %w", err)
	}
	return sig, nil
}

// verify checks an RFC 7427 signature value: PKCS#1 v1.5 for RSA, the DER
// Ecdsa-Sig-Value for ECDSA.
func (a sigAlg) verify(pub crypto.PublicKey, data, sig []byte) error {
	h := a.hash.New()
	h.Write(data)
	d := h.Sum(nil)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bytes.Equal(a.der, algSHA256RSA) && rsa.VerifyPKCS1v15(k, a.hash, d, sig) == nil {
			return nil
		}
	case *ecdsa.PublicKey:
		if !bytes.Equal(a.der, algSHA256RSA) && ecdsa.VerifyASN1(k, d, sig) {
			return nil
		}
	}
	return ErrSignature
}

// ParseAuthKey decodes an AUTH_KEY attribute: a DER SubjectPublicKeyInfo
// (RFC 9838 §4.5.3.2) of an RSA or ECDSA key.
func ParseAuthKey(der []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("gikev2: AUTH_KEY: %w", err)
	}
	if _, err := sigAlgOf(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func marshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("gikev2: AUTH_KEY: %w", err)
	}
	return der, nil
}

// sigLen is the length of an RSA signature, and the most likely length of a
// DER Ecdsa-Sig-Value: SEQUENCE { INTEGER r, INTEGER s } with one integer
// of n+1 octets (its high bit set, a zero octet before it) and one of n, for
// a curve of n-octet coordinates (probability 1/2).
func sigLen(pub crypto.PublicKey) int {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k.Size()
	case *ecdsa.PublicKey:
		n := (k.Curve.Params().BitSize + 7) / 8
		c := 2*n + 5
		if c < 128 {
			return c + 2
		}
		return c + 3
	}
	return 0
}
