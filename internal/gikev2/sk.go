package gikev2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"

	wire "github.com/groupvpn/groupvpn/ikev2"
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

// skCipher protects GSA_REKEY messages under one Rekey SA (RFC 7296 §3.14
// with the Rekey SA's GSK_e and GSK_a). It repeats internal/ikev2's
// unexported SK cipher, which has no entry point taking other keys
// (docs/gikev2.md "What is left").
type skCipher struct {
	aead    cipher.AEAD
	salt    []byte
	block   cipher.Block
	integ   func() hash.Hash
	integK  []byte
	icvLen  int
	ivLen   int
	blockSz int
}

func newSKCipher(s RekeySuite, keymat []byte) (*skCipher, KWK, error) {
	if err := s.Validate(); err != nil {
		return nil, KWK{}, err
	}
	e, a, w := s.lens()
	if len(keymat) != e+a+w {
		return nil, KWK{}, fmt.Errorf("gikev2: Rekey SA keying material of %d octets (want %d)", len(keymat), e+a+w)
	}
	ske, ska := keymat[:e], keymat[e:e+a]
	kwk := KWK{Alg: s.KWA, Key: append([]byte(nil), keymat[e+a:]...)}
	b, err := aes.NewCipher(ske[:s.KeyBits/8])
	if err != nil {
		return nil, KWK{}, fmt.Errorf("gikev2: %w", err)
	}
	if s.Encr == wire.EncrAESGCM16 {
		g, err := cipher.NewGCMWithNonceSize(b, 12)
		if err != nil {
			return nil, KWK{}, fmt.Errorf("gikev2: %w", err)
		}
		return &skCipher{aead: g, salt: append([]byte(nil), ske[s.KeyBits/8:]...), icvLen: 16, ivLen: 8, blockSz: 1}, kwk, nil
	}
	_, icv, h := integParams(s.Integ)
	return &skCipher{block: b, integ: h, integK: append([]byte(nil), ska...), icvLen: icv, ivLen: aes.BlockSize, blockSz: aes.BlockSize}, kwk, nil
}

func (c *skCipher) sealedLen(plain int) int {
	n := plain + 1
	if r := n % c.blockSz; r != 0 {
		n += c.blockSz - r
	}
	return c.ivLen + n + c.icvLen
}

// seal returns prefix (the header and SK generic header, lengths final)
// followed by the SK body protecting plain.
func (c *skCipher) seal(prefix, plain []byte, rand io.Reader) ([]byte, error) {
	padded := len(plain) + 1
	if r := padded % c.blockSz; r != 0 {
		padded += c.blockSz - r
	}
	body := make([]byte, padded)
	copy(body, plain)
	body[padded-1] = byte(padded - 1 - len(plain))
	out := make([]byte, len(prefix), len(prefix)+c.sealedLen(len(plain)))
	copy(out, prefix)
	iv := make([]byte, c.ivLen)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("gikev2: IV: %w", err)
	}
	out = append(out, iv...)
	if c.aead != nil {
		nonce := append(append([]byte(nil), c.salt...), iv...)
		return c.aead.Seal(out, nonce, body, prefix), nil
	}
	ct := make([]byte, padded)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, body)
	out = append(out, ct...)
	m := hmac.New(c.integ, c.integK)
	m.Write(out)
	return m.Sum(out)[:len(out)+c.icvLen], nil
}

// open verifies and decrypts the SK payload ending msg whose body starts at
// bodyAt, returning the inner payloads' octets.
func (c *skCipher) open(msg []byte, bodyAt int) ([]byte, error) {
	if bodyAt < 0 || bodyAt > len(msg) {
		return nil, ErrIntegrity
	}
	body := msg[bodyAt:]
	if len(body) < c.ivLen+c.icvLen+c.blockSz {
		return nil, ErrIntegrity
	}
	iv := body[:c.ivLen]
	var plain []byte
	if c.aead != nil {
		nonce := append(append([]byte(nil), c.salt...), iv...)
		p, err := c.aead.Open(nil, nonce, body[c.ivLen:], msg[:bodyAt])
		if err != nil {
			return nil, ErrIntegrity
		}
		plain = p
	} else {
		end := len(msg) - c.icvLen
		m := hmac.New(c.integ, c.integK)
		m.Write(msg[:end])
		if subtle.ConstantTimeCompare(m.Sum(nil)[:c.icvLen], msg[end:]) != 1 {
			return nil, ErrIntegrity
		}
		ct := body[c.ivLen : len(body)-c.icvLen]
		if len(ct)%c.blockSz != 0 {
			return nil, ErrIntegrity
		}
		plain = make([]byte, len(ct))
		cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(plain, ct)
	}
	if len(plain) == 0 {
		return nil, ErrIntegrity
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, ErrIntegrity
	}
	return plain[:len(plain)-1-pad], nil
}
