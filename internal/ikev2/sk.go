package ikev2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// ErrIntegrity is returned for an SK payload whose ICV does not verify or
// whose plaintext is malformed: the message is dropped (RFC 7296 §2.21.2),
// never answered.
var ErrIntegrity = errors.New("ikev2: SK payload does not verify")

// SKCipher protects the SK payloads of one direction (RFC 7296 §3.14):
// AES-CBC with HMAC-SHA2 (RFC 4868), or AES-GCM with a 16-octet ICV
// (RFC 5282). The IKE SA's are built from its SK_e and SK_a; G-IKEv2's
// Rekey SA builds one from its GSK_e and GSK_a (internal/gikev2).
type SKCipher struct {
	aead    cipher.AEAD // AES-GCM-16
	salt    []byte      // AES-GCM: the last 4 octets of SK_e
	block   cipher.Block
	integ   func() hash.Hash
	integK  []byte
	icvLen  int
	ivLen   int
	blockSz int
}

// NewSKCipher builds the cipher of one direction from its encryption key
// (SK_e: the AES key, then the 4-octet salt with AES-GCM) and integrity key
// (SK_a; none with AES-GCM). Only s's Encr, KeyBits and Integ are used.
func NewSKCipher(s Suite, ske, ska []byte) (*SKCipher, error) {
	keyLen := s.KeyBits / 8
	if len(ske) != s.encrKeyLen() {
		return nil, fmt.Errorf("ikev2: SK_e of %d octets, want %d", len(ske), s.encrKeyLen())
	}
	b, err := aes.NewCipher(ske[:keyLen])
	if err != nil {
		return nil, fmt.Errorf("ikev2: %w", err)
	}
	switch s.Encr {
	case wire.EncrAESGCM16:
		g, err := cipher.NewGCMWithNonceSize(b, 12)
		if err != nil {
			return nil, fmt.Errorf("ikev2: %w", err)
		}
		return &SKCipher{aead: g, salt: append([]byte{}, ske[keyLen:]...), icvLen: 16, ivLen: 8, blockSz: 1}, nil
	case wire.EncrAESCBC:
		kl, icv := integLen(s.Integ)
		if len(ska) != kl || kl == 0 {
			return nil, fmt.Errorf("ikev2: SK_a of %d octets, want %d", len(ska), kl)
		}
		return &SKCipher{block: b, integ: integHash(s.Integ), integK: append([]byte{}, ska...),
			icvLen: icv, ivLen: aes.BlockSize, blockSz: aes.BlockSize}, nil
	}
	return nil, fmt.Errorf("ikev2: encryption %d not supported", s.Encr)
}

// SealedLen is the length of the SK payload's body (IV, ciphertext with
// padding and pad length, ICV) for plain octets of inner payloads.
func (c *SKCipher) SealedLen(plain int) int {
	n := plain + 1 // pad length octet
	if r := n % c.blockSz; r != 0 {
		n += c.blockSz - r
	}
	return c.ivLen + n + c.icvLen
}

// Seal appends the SK payload's body for plain to prefix, which is the
// message up to and including the SK payload's generic header, with the
// lengths of the header and of the SK payload already counting the body
// (SealedLen). It returns the whole message. The IV comes from rand: random
// for CBC (§3.14), and for GCM unique per key as RFC 5282 §3.1 requires,
// which 64 random bits are for the few messages of an IKE SA.
func (c *SKCipher) Seal(prefix, plain []byte, rand io.Reader) ([]byte, error) {
	padded := len(plain) + 1
	if r := padded % c.blockSz; r != 0 {
		padded += c.blockSz - r
	}
	body := make([]byte, padded)
	copy(body, plain)
	body[padded-1] = byte(padded - 1 - len(plain)) // zero padding octets, then their count
	out := make([]byte, len(prefix), len(prefix)+c.SealedLen(len(plain)))
	copy(out, prefix)
	iv := make([]byte, c.ivLen)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("ikev2: IV: %w", err)
	}
	out = append(out, iv...)
	if c.aead != nil {
		nonce := append(append([]byte{}, c.salt...), iv...)
		// AAD: the IKE header and the SK payload's generic header
		// (RFC 5282 §5.1).
		return c.aead.Seal(out, nonce, body, prefix), nil
	}
	ct := make([]byte, padded)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(ct, body)
	out = append(out, ct...)
	m := hmac.New(c.integ, c.integK)
	m.Write(out)
	return m.Sum(out)[:len(out)+c.icvLen], nil
}

// Open verifies and decrypts the SK payload that ends msg; bodyAt is the
// offset of its body (just after its generic header). It returns the
// inner payloads' octets without padding; ErrIntegrity (wrapped) when it
// does not verify.
func (c *SKCipher) Open(msg []byte, bodyAt int) ([]byte, error) {
	if bodyAt < 0 || bodyAt > len(msg) {
		return nil, ErrIntegrity
	}
	body := msg[bodyAt:]
	if len(body) < c.ivLen+c.icvLen+c.blockSz {
		return nil, fmt.Errorf("%w: %d octets are too short", ErrIntegrity, len(body))
	}
	iv := body[:c.ivLen]
	var plain []byte
	if c.aead != nil {
		nonce := append(append([]byte{}, c.salt...), iv...)
		p, err := c.aead.Open(nil, nonce, body[c.ivLen:], msg[:bodyAt])
		if err != nil {
			return nil, ErrIntegrity
		}
		plain = p
	} else {
		ctEnd := len(msg) - c.icvLen
		m := hmac.New(c.integ, c.integK)
		m.Write(msg[:ctEnd])
		if subtle.ConstantTimeCompare(m.Sum(nil)[:c.icvLen], msg[ctEnd:]) != 1 {
			return nil, ErrIntegrity
		}
		ct := body[c.ivLen : len(body)-c.icvLen]
		if len(ct)%c.blockSz != 0 {
			return nil, fmt.Errorf("%w: ciphertext of %d octets is not whole blocks", ErrIntegrity, len(ct))
		}
		plain = make([]byte, len(ct))
		cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(plain, ct)
	}
	if len(plain) == 0 {
		return nil, ErrIntegrity
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, fmt.Errorf("%w: pad length %d exceeds the plaintext", ErrIntegrity, pad)
	}
	return plain[:len(plain)-1-pad], nil
}
