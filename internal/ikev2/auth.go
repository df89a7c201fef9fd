package ikev2

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"hash"
	"io"
	"math/big"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
)

// AuthMethod is the codec's Authentication Method.
type AuthMethod = wire.AuthMethod

// Hash algorithm identifiers of the SIGNATURE_HASH_ALGORITHMS notify
// (RFC 7427 §4, IANA "IKEv2 Hash Algorithms").
const (
	HashSHA1   uint16 = 1
	HashSHA256 uint16 = 2
	HashSHA384 uint16 = 3
	HashSHA512 uint16 = 4
)

// ourHashes are the hashes we announce and accept in RFC 7427 signatures.
var ourHashes = []uint16{HashSHA256, HashSHA384, HashSHA512}

// keyPad is the PSK pad of RFC 7296 §2.15.
const keyPad = "Key Pad for IKEv2"

// signedOctets is what AUTH covers (RFC 7296 §2.15): the first message we
// sent in full, the peer's nonce, and prf(SK_p, RestOfIDPayload) where
// SK_p is the key of the side whose ID it is and idBody is the ID
// payload's body (ID type, three reserved octets, data).
func signedOctets(k *Keys, firstMsg, peerNonce, skp, idBody []byte) []byte {
	out := make([]byte, 0, len(firstMsg)+len(peerNonce)+64)
	out = append(out, firstMsg...)
	out = append(out, peerNonce...)
	return append(out, k.PRF(skp, idBody)...)
}

// pskAuth is AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
func pskAuth(k *Keys, psk, octets []byte) []byte {
	return k.PRF(k.PRF(psk, []byte(keyPad)), octets)
}

// RFC 7427 Appendix A: the AlgorithmIdentifiers of the signatures we make,
// DER, as the RFC prints them.
var (
	algSHA256RSA   = mustHex("300d06092a864886f70d01010b0500")
	algSHA384RSA   = mustHex("300d06092a864886f70d01010c0500")
	algSHA512RSA   = mustHex("300d06092a864886f70d01010d0500")
	algECDSASHA256 = mustHex("300a06082a8648ce3d040302")
	algECDSASHA384 = mustHex("300a06082a8648ce3d040303")
	algECDSASHA512 = mustHex("300a06082a8648ce3d040304")
	// RSASSA-PSS with SHA-256, MGF1 with SHA-256, 32 octets of salt (A.4.3).
	// (RFC 7427 A.4.3's structure, the hash AlgorithmIdentifiers with
	// NULL parameters).
	algPSSSHA256 = mustHex("304106092a864886f70d01010a3034a00f300d06096086480165030402010500" +
		"a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120")
)

var (
	oidRSAPSS      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidSHA256RSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384RSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512RSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA256      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

func mustHex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			default:
				panic("mustHex: " + s)
			}
		}
		b[i] = v
	}
	return b
}

// signer is how we sign: a method and, for RFC 7427, the algorithm.
type signer struct {
	method AuthMethod
	alg    []byte      // RFC 7427 AlgorithmIdentifier; nil for classic methods
	hash   crypto.Hash // hash of the octets
	pss    bool
	rawRS  int // classic ECDSA: r||s of this many octets each
}

// chooseSigner picks how key signs: RFC 7427 when the peer announced one
// of our hashes in SIGNATURE_HASH_ALGORITHMS (peerHashes), else the
// classic method of the key type. RSA uses PKCS#1 v1.5 unless pss.
func chooseSigner(key crypto.Signer, peerHashes []uint16, pss bool) (signer, error) {
	has := func(h uint16) bool {
		for _, x := range peerHashes {
			if x == h {
				return true
			}
		}
		return false
	}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if !has(HashSHA256) {
			return signer{method: wire.AuthRSASig, hash: crypto.SHA1}, nil
		}
		if pss {
			return signer{method: wire.AuthDigitalSignature, alg: algPSSSHA256, hash: crypto.SHA256, pss: true}, nil
		}
		return signer{method: wire.AuthDigitalSignature, alg: algSHA256RSA, hash: crypto.SHA256}, nil
	case *ecdsa.PublicKey:
		var s signer
		switch pub.Curve {
		case elliptic.P256():
			s = signer{method: wire.AuthECDSA256, alg: algECDSASHA256, hash: crypto.SHA256, rawRS: 32}
		case elliptic.P384():
			s = signer{method: wire.AuthECDSA384, alg: algECDSASHA384, hash: crypto.SHA384, rawRS: 48}
		case elliptic.P521():
			s = signer{method: wire.AuthECDSA521, alg: algECDSASHA512, hash: crypto.SHA512, rawRS: 66}
		default:
			return signer{}, fmt.Errorf("ikev2: ECDSA curve %s not supported", pub.Curve.Params().Name)
		}
		if has(hashID(s.hash)) {
			s.method, s.rawRS = wire.AuthDigitalSignature, 0
		} else {
			s.alg = nil
		}
		return s, nil
	}
	return signer{}, fmt.Errorf("ikev2: %T keys cannot sign", key.Public())
}

func hashID(h crypto.Hash) uint16 {
	switch h {
	case crypto.SHA256:
		return HashSHA256
	case crypto.SHA384:
		return HashSHA384
	case crypto.SHA512:
		return HashSHA512
	}
	return 0
}

func digest(h crypto.Hash, data []byte) []byte {
	var d hash.Hash
	switch h {
	case crypto.SHA1:
		d = sha1.New()
	case crypto.SHA256:
		d = sha256.New()
	case crypto.SHA384:
		d = sha512.New384()
	case crypto.SHA512:
		d = sha512.New()
	default:
		return nil
	}
	d.Write(data)
	return d.Sum(nil)
}

// sign returns the AUTH payload's method and data for octets.
func (s signer) sign(rand io.Reader, key crypto.Signer, octets []byte) (AuthMethod, []byte, error) {
	h := digest(s.hash, octets)
	var opts crypto.SignerOpts = s.hash
	if s.pss {
		opts = &rsa.PSSOptions{SaltLength: 32, Hash: s.hash}
	}
	sig, err := key.Sign(rand, h, opts)
	if err != nil {
		return 0, nil, fmt.Errorf("ikev2: sign: %w", err)
	}
	if s.rawRS > 0 {
		if sig, err = derToRS(sig, s.rawRS); err != nil {
			return 0, nil, err
		}
	}
	if s.alg == nil {
		return s.method, sig, nil
	}
	data := append([]byte{byte(len(s.alg))}, s.alg...)
	return s.method, append(data, sig...), nil
}

func derToRS(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("ikev2: ECDSA signature: %w", err)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pssParams struct {
	Hash       algorithmIdentifier `asn1:"explicit,tag:0,optional"`
	MGF        algorithmIdentifier `asn1:"explicit,tag:1,optional"`
	SaltLength int                 `asn1:"explicit,tag:2,optional,default:20"`
	Trailer    int                 `asn1:"explicit,tag:3,optional,default:1"`
}

func hashOfOID(oid asn1.ObjectIdentifier) crypto.Hash {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256
	case oid.Equal(oidSHA384):
		return crypto.SHA384
	case oid.Equal(oidSHA512):
		return crypto.SHA512
	}
	return 0
}

// verifySig checks the AUTH payload (method, data) of a peer over octets
// with the public key of its certificate. Every failure wraps ike.ErrAuth.
func verifySig(pub crypto.PublicKey, method AuthMethod, data, octets []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ike.ErrAuth, fmt.Sprintf(format, args...))
	}
	switch method {
	case wire.AuthRSASig:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fail("rsa-sig but the certificate has a %T key", pub)
		}
		if rsa.VerifyPKCS1v15(k, crypto.SHA1, digest(crypto.SHA1, octets), data) != nil {
			return fail("RSA signature does not verify")
		}
		return nil
	case wire.AuthECDSA256, wire.AuthECDSA384, wire.AuthECDSA521:
		k, ok := pub.(*ecdsa.PublicKey)
		want := map[AuthMethod]elliptic.Curve{wire.AuthECDSA256: elliptic.P256(), wire.AuthECDSA384: elliptic.P384(), wire.AuthECDSA521: elliptic.P521()}[method]
		if !ok || k.Curve != want {
			return fail("%s but the certificate has another key", method)
		}
		size := (want.Params().BitSize + 7) / 8
		h := map[AuthMethod]crypto.Hash{wire.AuthECDSA256: crypto.SHA256, wire.AuthECDSA384: crypto.SHA384, wire.AuthECDSA521: crypto.SHA512}[method]
		if len(data) != 2*size {
			return fail("ECDSA signature of %d octets, want %d", len(data), 2*size)
		}
		r, s := new(big.Int).SetBytes(data[:size]), new(big.Int).SetBytes(data[size:])
		if !ecdsa.Verify(k, digest(h, octets), r, s) {
			return fail("ECDSA signature does not verify")
		}
		return nil
	case wire.AuthDigitalSignature:
		algDER, sig, err := (&wire.Auth{Method: method, Data: data}).Signature()
		if err != nil {
			return fail("digital signature AUTH data: %v", err)
		}
		var alg algorithmIdentifier
		if rest, err := asn1.Unmarshal(algDER, &alg); err != nil || len(rest) > 0 {
			return fail("signature AlgorithmIdentifier unreadable")
		}
		switch {
		case alg.Algorithm.Equal(oidSHA256RSA), alg.Algorithm.Equal(oidSHA384RSA), alg.Algorithm.Equal(oidSHA512RSA):
			h := map[string]crypto.Hash{oidSHA256RSA.String(): crypto.SHA256, oidSHA384RSA.String(): crypto.SHA384,
				oidSHA512RSA.String(): crypto.SHA512}[alg.Algorithm.String()]
			k, ok := pub.(*rsa.PublicKey)
			if !ok {
				return fail("RSA signature but the certificate has a %T key", pub)
			}
			if rsa.VerifyPKCS1v15(k, h, digest(h, octets), sig) != nil {
				return fail("RSA signature does not verify")
			}
			return nil
		case alg.Algorithm.Equal(oidRSAPSS):
			var p pssParams
			if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) > 0 {
				return fail("RSASSA-PSS parameters unreadable")
			}
			h := hashOfOID(p.Hash.Algorithm)
			if h == 0 || p.SaltLength < 0 || p.SaltLength > 512 {
				return fail("RSASSA-PSS with an unsupported hash or salt")
			}
			k, ok := pub.(*rsa.PublicKey)
			if !ok {
				return fail("RSA signature but the certificate has a %T key", pub)
			}
			if rsa.VerifyPSS(k, h, digest(h, octets), sig, &rsa.PSSOptions{SaltLength: p.SaltLength, Hash: h}) != nil {
				return fail("RSASSA-PSS signature does not verify")
			}
			return nil
		case alg.Algorithm.Equal(oidECDSASHA256), alg.Algorithm.Equal(oidECDSASHA384), alg.Algorithm.Equal(oidECDSASHA512):
			h := map[string]crypto.Hash{oidECDSASHA256.String(): crypto.SHA256, oidECDSASHA384.String(): crypto.SHA384,
				oidECDSASHA512.String(): crypto.SHA512}[alg.Algorithm.String()]
			k, ok := pub.(*ecdsa.PublicKey)
			if !ok {
				return fail("ECDSA signature but the certificate has a %T key", pub)
			}
			if !ecdsa.VerifyASN1(k, digest(h, octets), sig) {
				return fail("ECDSA signature does not verify")
			}
			return nil
		}
		return fail("signature algorithm %s not supported", alg.Algorithm)
	}
	return fail("authentication method %s not supported", method)
}

// checkPSK compares a peer's PSK AUTH in constant time.
func checkPSK(k *Keys, psk, octets, got []byte) error {
	if len(psk) == 0 {
		return fmt.Errorf("%w: no pre-shared key for the peer", ike.ErrAuth)
	}
	want := pskAuth(k, psk, octets)
	if subtle.ConstantTimeCompare(want, got) != 1 {
		return fmt.Errorf("%w: pre-shared key AUTH does not match", ike.ErrAuth)
	}
	return nil
}
