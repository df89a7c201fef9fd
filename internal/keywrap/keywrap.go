// Package keywrap implements the AES key wrap algorithms G-IKEv2 wraps its
// keys with (RFC 9838 §4.4.2.1.2, §4.5.4): AES Key Wrap with Padding
// (RFC 5649), which the Key Wrap Algorithm transform IDs KW_5649_128,
// KW_5649_192 and KW_5649_256 name, and the RFC 3394 AES Key Wrap it is
// built on.
//
// Unwrapping checks the integrity register and, for RFC 5649, the message
// length indicator and the zero padding in constant time, and says only
// ErrIntegrity whatever failed: a wrapped key that does not check is never
// returned, not even in part. Inputs are bounded (MaxKeyLen).
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// MaxKeyLen bounds the key material Wrap takes and Unwrap returns. RFC 9838
// §4.4.2.1.2 requires key wrap algorithms to wrap "key material of size up
// to 256 bytes"; four times that leaves room and bounds the work an
// attacker's wrapped key costs (6 AES operations per 8 octets).
const MaxKeyLen = 1024

// ErrIntegrity is returned by Unwrap and Unwrap3394 for a wrapped key that
// does not check under the key encryption key.
var ErrIntegrity = errors.New("keywrap: wrapped key fails its integrity check")

// defaultIV is RFC 3394 §2.2.3.1's initial value.
var defaultIV = [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// aivPrefix is the constant half of RFC 5649 §3's Alternative Initial
// Value: AIV = A65959A6 | MLI (the 32-bit length of the key in octets).
var aivPrefix = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// KeyLen is the key encryption key length, in octets, of a G-IKEv2 Key
// Wrap Algorithm transform ID (RFC 9838 §4.4.2.1.2): 16, 24 or 32 for
// KW_5649_128/192/256. KW_ARX and unknown IDs are refused.
func KeyLen(kwa uint16) (int, error) {
	switch kwa {
	case wire.KWA5649AES128:
		return 16, nil
	case wire.KWA5649AES192:
		return 24, nil
	case wire.KWA5649AES256:
		return 32, nil
	}
	return 0, fmt.Errorf("keywrap: key wrap algorithm %d not supported (KW_5649_128/192/256 are)", kwa)
}

func newBlock(kek []byte) (cipher.Block, error) {
	switch len(kek) {
	case 16, 24, 32:
		return aes.NewCipher(kek)
	}
	return nil, fmt.Errorf("keywrap: key encryption key of %d octets (16, 24 or 32)", len(kek))
}

// Wrap wraps key (1 to MaxKeyLen octets) under kek with AES Key Wrap with
// Padding (RFC 5649 §4.1). The result is the key padded with zeros to a
// multiple of 8 octets, plus 8.
func Wrap(kek, key []byte) ([]byte, error) {
	b, err := newBlock(kek)
	if err != nil {
		return nil, err
	}
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, fmt.Errorf("keywrap: key of %d octets (1 to %d)", len(key), MaxKeyLen)
	}
	padded := (len(key) + 7) &^ 7
	var aiv [8]byte
	copy(aiv[:], aivPrefix[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(key)))
	if padded == 8 {
		// §4.1 step 2: a single 64-bit block is encrypted with AES in
		// ECB mode together with the AIV.
		out := make([]byte, 16)
		copy(out, aiv[:])
		copy(out[8:], key)
		b.Encrypt(out, out)
		return out, nil
	}
	p := make([]byte, padded)
	copy(p, key)
	return wrap(b, aiv, p), nil
}

// Unwrap recovers the key wrapped by Wrap (RFC 5649 §4.2). Any failure of
// the integrity check (AIV prefix, length indicator, padding) is
// ErrIntegrity, decided in constant time.
func Unwrap(kek, wrapped []byte) ([]byte, error) {
	b, err := newBlock(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 || len(wrapped) > MaxKeyLen+16 {
		return nil, fmt.Errorf("%w: %d octets (a multiple of 8, 16 to %d)", ErrIntegrity, len(wrapped), MaxKeyLen+16)
	}
	var a [8]byte
	var p []byte
	if len(wrapped) == 16 {
		var blk [16]byte
		b.Decrypt(blk[:], wrapped)
		copy(a[:], blk[:8])
		p = append([]byte(nil), blk[8:]...)
	} else {
		a, p = unwrap(b, wrapped)
	}
	// §3: the AIV prefix, 8*(n-1) < MLI <= 8*n, and zero padding, checked
	// without branching on secret-derived values.
	ok := subtle.ConstantTimeCompare(a[:4], aivPrefix[:])
	mli := uint64(binary.BigEndian.Uint32(a[4:]))
	n := uint64(len(p))
	ok &= lessEq(n-7, mli) // MLI > 8*(n-1), n counted in octets here
	ok &= lessEq(mli, n)
	ok &= lessEq(1, mli)
	var pad byte
	for i := range p {
		// octets at or past MLI must be zero
		past := lessEq(mli, uint64(i))
		pad |= p[i] & byte(-past)
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(p)
		return nil, ErrIntegrity
	}
	return p[:mli], nil
}

// lessEq is 1 if x <= y, else 0, without a branch; x and y below 2^62.
func lessEq(x, y uint64) int { return int(1 - (y-x)>>63) }

// Wrap3394 wraps key, a multiple of 8 octets and at least 16, with the AES
// Key Wrap of RFC 3394 §2.2.1 and its default initial value.
func Wrap3394(kek, key []byte) ([]byte, error) {
	b, err := newBlock(kek)
	if err != nil {
		return nil, err
	}
	if len(key) < 16 || len(key)%8 != 0 || len(key) > MaxKeyLen {
		return nil, fmt.Errorf("keywrap: key of %d octets (a multiple of 8, 16 to %d)", len(key), MaxKeyLen)
	}
	return wrap(b, defaultIV, append([]byte(nil), key...)), nil
}

// Unwrap3394 recovers a key wrapped by Wrap3394 (RFC 3394 §2.2.2), checking
// the initial value in constant time.
func Unwrap3394(kek, wrapped []byte) ([]byte, error) {
	b, err := newBlock(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 24 || len(wrapped)%8 != 0 || len(wrapped) > MaxKeyLen+8 {
		return nil, fmt.Errorf("%w: %d octets (a multiple of 8, 24 to %d)", ErrIntegrity, len(wrapped), MaxKeyLen+8)
	}
	a, p := unwrap(b, wrapped)
	if subtle.ConstantTimeCompare(a[:], defaultIV[:]) != 1 {
		clear(p)
		return nil, ErrIntegrity
	}
	return p, nil
}

// wrap is RFC 3394 §2.2.1 (index based): p is n >= 2 64-bit blocks, taken
// over as the output's R registers.
func wrap(b cipher.Block, iv [8]byte, p []byte) []byte {
	n := len(p) / 8
	out := make([]byte, 8+len(p))
	copy(out[8:], p)
	clear(p)
	var blk [16]byte
	a := iv
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(blk[:8], a[:])
			copy(blk[8:], r)
			b.Encrypt(blk[:], blk[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(blk[:8])^t)
			copy(r, blk[8:])
		}
	}
	copy(out, a[:])
	clear(blk[:])
	return out
}

// unwrap is RFC 3394 §2.2.2 (index based): it returns the recovered
// integrity register A and the n key blocks, unchecked.
func unwrap(b cipher.Block, c []byte) ([8]byte, []byte) {
	n := len(c)/8 - 1
	var a [8]byte
	copy(a[:], c[:8])
	p := append([]byte(nil), c[8:]...)
	var blk [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := p[8*(i-1) : 8*i]
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(blk[:8], binary.BigEndian.Uint64(a[:])^t)
			copy(blk[8:], r)
			b.Decrypt(blk[:], blk[:])
			copy(a[:], blk[:8])
			copy(r, blk[8:])
		}
	}
	clear(blk[:])
	return a, p
}
