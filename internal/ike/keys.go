package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// prf is HMAC with the negotiated hash (RFC 2409 §5).
func prf(h HashAlg, key []byte, data ...[]byte) []byte {
	m := hmac.New(h.new(), key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func digest(h HashAlg, data ...[]byte) []byte {
	var d hash.Hash = h.new()()
	for _, b := range data {
		d.Write(b)
	}
	return d.Sum(nil)
}

// Keys is the keying material of one phase-1 SA (RFC 2409 §5).
type Keys struct {
	SKEYID, SKEYIDd, SKEYIDa, SKEYIDe []byte
	Ka                                []byte // AES key, extended per Appendix B when SKEYID_e is short
	IV                                []byte // phase-1 IV: hash(g^xi | g^xr) truncated to the block size
}

// DeriveKeys computes SKEYID and its descendants. For pre-shared keys
// SKEYID = prf(psk, Ni_b | Nr_b); for signatures SKEYID = prf(Ni_b | Nr_b,
// g^xy) (RFC 2409 §5). gxi and gxr are the KE payload data.
func DeriveKeys(s Suite, psk, ni, nr, gxy, gxi, gxr []byte, icky, rcky [8]byte) (*Keys, error) {
	if s.Hash.new() == nil {
		return nil, fmt.Errorf("ike: hash %s not supported", s.Hash)
	}
	if s.Auth == AuthPSK && len(psk) == 0 {
		return nil, errors.New("ike: empty pre-shared key")
	}
	// Every value in one array: an SA keeps them for its lifetime (issue
	// 18 F3). Ka is SKEYID_e's prefix when that is long enough.
	hl := s.Hash.size()
	ka := s.KeyBits / 8
	n := 5 * hl // SKEYID, SKEYID_d/a/e, hash(g^xi | g^xr) for the IV
	if ka > hl {
		n += ka
	}
	buf := make([]byte, 0, n)
	k := &Keys{}
	next := func(key []byte, data ...[]byte) []byte {
		start := len(buf)
		buf = appendPRF(buf, s.Hash, key, data...)
		return buf[start:len(buf):len(buf)]
	}
	if s.Auth == AuthPSK {
		k.SKEYID = next(psk, ni, nr)
	} else {
		k.SKEYID = next(append(append([]byte{}, ni...), nr...), gxy)
	}
	k.SKEYIDd = next(k.SKEYID, gxy, icky[:], rcky[:], []byte{0})
	k.SKEYIDa = next(k.SKEYID, k.SKEYIDd, gxy, icky[:], rcky[:], []byte{1})
	k.SKEYIDe = next(k.SKEYID, k.SKEYIDa, gxy, icky[:], rcky[:], []byte{2})
	if ka <= hl {
		k.Ka = k.SKEYIDe[:ka:ka]
	} else {
		start := len(buf)
		buf = append(buf, extendKey(s.Hash, k.SKEYIDe, ka)...)
		k.Ka = buf[start:len(buf):len(buf)]
	}
	start := len(buf)
	d := s.Hash.new()()
	d.Write(gxi)
	d.Write(gxr)
	buf = d.Sum(buf)
	k.IV = buf[start : start+aes.BlockSize : start+aes.BlockSize]
	return k, nil
}

// appendPRF appends prf(key, data...) to dst.
func appendPRF(dst []byte, h HashAlg, key []byte, data ...[]byte) []byte {
	m := hmac.New(h.new(), key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(dst)
}

// extendKey returns n octets of encryption key from SKEYID_e: its prefix
// when long enough, else K1 | K2 | ... with K1 = prf(SKEYID_e, 0) and
// Ki = prf(SKEYID_e, Ki-1) (RFC 2409 Appendix B).
func extendKey(h HashAlg, skeyidE []byte, n int) []byte {
	if len(skeyidE) >= n {
		return append([]byte{}, skeyidE[:n]...)
	}
	var out []byte
	k := prf(h, skeyidE, []byte{0})
	for {
		out = append(out, k...)
		if len(out) >= n {
			return out[:n]
		}
		k = prf(h, skeyidE, k)
	}
}

// phase2IV is the first IV of an exchange with message ID mid after phase 1:
// hash(last phase-1 CBC block | M-ID) truncated (RFC 2409 Appendix B).
func phase2IV(h HashAlg, lastBlock []byte, mid uint32) []byte {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mid)
	return digest(h, lastBlock, m[:])[:aes.BlockSize]
}

// encrypt pads plain with zeros to the block size and encrypts it with
// AES-CBC. It returns the ciphertext; its last block is the next IV.
func encrypt(key, iv, plain []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	n := len(plain)
	if pad := n % aes.BlockSize; pad != 0 {
		n += aes.BlockSize - pad
	}
	out := make([]byte, n)
	copy(out, plain)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, out)
	return out, nil
}

// decrypt decrypts an AES-CBC body; the caller keeps the last ciphertext
// block as the next IV.
func decrypt(key, iv, ct []byte) ([]byte, error) {
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ike: encrypted body of %d octets is not a whole number of blocks", len(ct))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, ct)
	return out, nil
}

func lastBlock(ct []byte) []byte { return append([]byte{}, ct[len(ct)-aes.BlockSize:]...) }
