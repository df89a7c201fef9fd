package gikev2

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/keywrap"
)

// ErrIntegrity is a GSA_REKEY whose SK payload does not verify under the
// Rekey SA's keys (dropped, RFC 7296 §2.21.2).
var ErrIntegrity = errors.New("gikev2: SK payload does not verify under the Rekey SA")

// RekeySuite is the protection of a Rekey SA (the GSA KEK policy's
// transforms, RFC 9838 §4.4.2.1): an encryption algorithm with its key
// length, an integrity algorithm (none with AES-GCM), the key wrap
// algorithm of its GSK_w.
type RekeySuite struct {
	Encr    uint16 // ENCR_AES_CBC or ENCR_AES_GCM_16
	KeyBits int    // 128, 192, 256
	Integ   uint16 // AUTH_HMAC_SHA2_*; IntegNone with AES-GCM
	KWA     uint16 // KW_5649_*
}

// integParams is the key and ICV length and hash of an integrity transform.
func integParams(id uint16) (keyLen, icvLen int, h func() hash.Hash) {
	switch id {
	case wire.IntegHMACSHA2256128:
		return 32, 16, sha256.New
	case wire.IntegHMACSHA2384192:
		return 48, 24, sha512.New384
	case wire.IntegHMACSHA2512256:
		return 64, 32, sha512.New
	}
	return 0, 0, nil
}

// Validate says what is wrong with the suite, if anything.
func (s RekeySuite) Validate() error {
	if s.KeyBits != 128 && s.KeyBits != 192 && s.KeyBits != 256 {
		return fmt.Errorf("gikev2: Rekey SA key length %d", s.KeyBits)
	}
	switch s.Encr {
	case wire.EncrAESGCM16:
		if s.Integ != wire.IntegNone {
			return fmt.Errorf("gikev2: AES-GCM Rekey SA with integrity %d (RFC 9838 §4.4.2.1: INTEG only without AEAD)", s.Integ)
		}
	case wire.EncrAESCBC:
		if n, _, _ := integParams(s.Integ); n == 0 {
			return fmt.Errorf("gikev2: AES-CBC Rekey SA with integrity %d (AUTH_HMAC_SHA2_256_128/384_192/512_256 are supported)", s.Integ)
		}
	default:
		return fmt.Errorf("gikev2: Rekey SA encryption %d (ENCR_AES_CBC and ENCR_AES_GCM_16 are supported)", s.Encr)
	}
	_, err := keywrap.KeyLen(s.KWA)
	return err
}

// lens are the lengths of GSK_e, GSK_a and GSK_w.
func (s RekeySuite) lens() (e, a, w int) {
	e = s.KeyBits / 8
	if s.Encr == wire.EncrAESGCM16 {
		e += 4 // salt (RFC 5282 §7.1)
	}
	a, _, _ = integParams(s.Integ)
	w, _ = keywrap.KeyLen(s.KWA)
	return e, a, w
}

// KeymatLen is the size of a Rekey SA's keying material, GSK_e | GSK_a |
// GSK_w (RFC 9838 §3.4).
func (s RekeySuite) KeymatLen() int {
	e, a, w := s.lens()
	return e + a + w
}

// newSKCipher splits a Rekey SA's keying material (GSK_e | GSK_a |
// GSK_w, RFC 9838 §3.4) into internal/ikev2's SK cipher (RFC 7296 §3.14
// under GSK_e and GSK_a) and the KWK.
func newSKCipher(s RekeySuite, keymat []byte) (*ikev2.SKCipher, KWK, error) {
	if err := s.Validate(); err != nil {
		return nil, KWK{}, err
	}
	e, a, w := s.lens()
	if len(keymat) != e+a+w {
		return nil, KWK{}, fmt.Errorf("gikev2: Rekey SA keying material of %d octets (want %d)", len(keymat), e+a+w)
	}
	c, err := ikev2.NewSKCipher(ikev2.Suite{Encr: s.Encr, KeyBits: s.KeyBits, Integ: s.Integ}, keymat[:e], keymat[e:e+a])
	if err != nil {
		return nil, KWK{}, fmt.Errorf("gikev2: Rekey SA: %w", err)
	}
	return c, KWK{Alg: s.KWA, Key: append([]byte(nil), keymat[e+a:]...)}, nil
}
