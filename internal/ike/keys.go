package ike

import (
	"bytes"
	"crypto/subtle"
	"github.com/groupvpn/groupvpn/isakmp"

	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// prf is HMAC with the negotiated hash (RFC 2409 §5), computed in s.
func prf(s *scratch, h HashAlg, key []byte, data ...[]byte) []byte {
	return s.appendHMAC(nil, h, key, data...)
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
	var mk mainKeys
	km, err := deriveKeys(new(scratch), s, psk, ni, nr, gxy, gxi, gxr, icky[:], rcky[:], &mk)
	if err != nil {
		return nil, err
	}
	return mk.keys(s, km), nil
}

// mainKeys is what main mode alone uses of the key derivation: SKEYID
// and the phase-1 IV, in the handshake's state (mmState) rather than
// arrays of their own; cleared when main mode's state is released.
type mainKeys struct {
	skeyid [maxSize]byte // its first Hash.size() octets
	iv     [aes.BlockSize]byte
	set    bool
}

// keys returns the Keys of km and mk, in arrays of their own.
func (mk *mainKeys) keys(s Suite, km keyMaterial) *Keys {
	h := s.Hash
	k := &Keys{SKEYIDd: km.skeyidD(h), SKEYIDa: km.skeyidA(h), SKEYIDe: km.skeyidE(h), Ka: km.ka(s)}
	if mk != nil && mk.set {
		k.SKEYID = bytes.Clone(mk.skeyid[:h.size()])
		k.IV = bytes.Clone(mk.iv[:])
	}
	return k
}

// deriveKeys is DeriveKeys, computed in scr. The values an SA keeps for
// its lifetime, SKEYID_d | SKEYID_a | SKEYID_e (| Ka when longer than
// SKEYID_e), are one array of their own; SKEYID and the IV, main mode's
// alone, go to mk (issue 18 F3). The cookies are slices (of the SA's
// arrays): arrays passed by value would escape to the heap through the
// hash.
func deriveKeys(scr *scratch, s Suite, psk, ni, nr, gxy, gxi, gxr, icky, rcky []byte, mk *mainKeys) (keyMaterial, error) {
	if s.Hash.new() == nil {
		return nil, fmt.Errorf("ike: hash %s not supported", s.Hash)
	}
	if s.Auth == AuthPSK && len(psk) == 0 {
		return nil, errors.New("ike: empty pre-shared key")
	}
	hl := s.Hash.size()
	ka := s.KeyBits / 8
	if s.Auth == AuthPSK {
		scr.appendHMAC(mk.skeyid[:0], s.Hash, psk, ni, nr)
	} else {
		scr.appendHMAC(mk.skeyid[:0], s.Hash, append(append([]byte{}, ni...), nr...), gxy)
	}
	skeyid := mk.skeyid[:hl:hl]
	n := 3 * hl
	if ka > hl {
		n += ka
	}
	buf := make([]byte, 0, n)
	// prev | g^xy | CKY-I | CKY-R | 0, then 1, then 2.
	last := scr.word[:1]
	mac := func(prev []byte, b byte) []byte {
		last[0] = b
		start := len(buf)
		buf = scr.appendHMAC(buf, s.Hash, skeyid, prev, gxy, icky, rcky, last)
		return buf[start:len(buf):len(buf)]
	}
	d := mac(nil, 0)
	a := mac(d, 1)
	e := mac(a, 2)
	if ka > hl {
		buf = append(buf, extendKey(scr, s.Hash, e, ka)...)
	}
	copy(mk.iv[:], scr.appendDigest(scr.sum[:0], s.Hash, gxi, gxr))
	mk.set = true
	return keyMaterial(buf), nil
}

// keyMaterial is what an SA keeps of its keys: SKEYID_d | SKEYID_a |
// SKEYID_e (| Ka when longer than SKEYID_e), the array deriveKeys filled
// for them.
type keyMaterial []byte

func (km keyMaterial) skeyidD(h HashAlg) []byte { hl := h.size(); return km[:hl:hl] }
func (km keyMaterial) skeyidA(h HashAlg) []byte { hl := h.size(); return km[hl : 2*hl : 2*hl] }
func (km keyMaterial) skeyidE(h HashAlg) []byte { hl := h.size(); return km[2*hl : 3*hl : 3*hl] }

func (km keyMaterial) ka(s Suite) []byte {
	hl, ka := s.Hash.size(), s.KeyBits/8
	if ka <= hl {
		return km[2*hl : 2*hl+ka : 2*hl+ka]
	}
	return km[3*hl : 3*hl+ka : 3*hl+ka]
}

// extendKey returns n octets of encryption key from SKEYID_e: its prefix
// when long enough, else K1 | K2 | ... with K1 = prf(SKEYID_e, 0) and
// Ki = prf(SKEYID_e, Ki-1) (RFC 2409 Appendix B).
func extendKey(scr *scratch, h HashAlg, skeyidE []byte, n int) []byte {
	if len(skeyidE) >= n {
		return append([]byte{}, skeyidE[:n]...)
	}
	var out []byte
	k := prf(scr, h, skeyidE, []byte{0})
	for {
		out = append(out, k...)
		if len(out) >= n {
			return out[:n]
		}
		k = prf(scr, h, skeyidE, k)
	}
}

// phase2IV is the first IV of an exchange with message ID mid after phase 1:
// hash(last phase-1 CBC block | M-ID) truncated (RFC 2409 Appendix B).
func phase2IV(scr *scratch, h HashAlg, lastBlock []byte, mid uint32) (iv [aes.BlockSize]byte) {
	m := scr.word[:4]
	binary.BigEndian.PutUint32(m, mid)
	copy(iv[:], scr.appendDigest(scr.sum[:0], h, lastBlock, m))
	return iv
}

// encrypt pads plain with zeros to the block size and encrypts it with
// AES-CBC. It returns the ciphertext; its last block is the next IV.
func encrypt(key, iv, plain []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	return encryptWith(b, iv, plain), nil
}

func encryptWith(b cipher.Block, iv, plain []byte) []byte {
	n := len(plain)
	if pad := n % aes.BlockSize; pad != 0 {
		n += aes.BlockSize - pad
	}
	out := make([]byte, n)
	copy(out, plain)
	cbcEncrypt(b, iv, out)
	return out
}

// sealMessage builds an encrypted message in one allocation, the
// datagram: header hdr (its Length set here), then the payload chain ps
// zero-padded to the block size and encrypted with AES-CBC from iv in
// place. The last block of the datagram is the next IV.
func sealMessage(hdr isakmp.Header, b cipher.Block, iv []byte, ps []isakmp.Payload) ([]byte, error) {
	msg, total, err := startSealed(hdr, isakmp.PayloadsLen(ps))
	if err != nil {
		return nil, err
	}
	if msg, err = isakmp.AppendPayloads(msg, ps); err != nil {
		return nil, err
	}
	return endSealed(msg, total, b, iv)
}

// sealChain is sealMessage for a payload chain already encoded.
func sealChain(hdr isakmp.Header, b cipher.Block, iv []byte, chain []byte) ([]byte, error) {
	msg, total, err := startSealed(hdr, len(chain))
	if err != nil {
		return nil, err
	}
	return endSealed(append(msg, chain...), total, b, iv)
}

// startSealed allocates the datagram of an encrypted message whose
// plaintext is n octets before padding, and writes its header.
func startSealed(hdr isakmp.Header, n int) (msg []byte, total int, err error) {
	if pad := n % aes.BlockSize; pad != 0 {
		n += aes.BlockSize - pad
	}
	total = isakmp.HeaderLen + n
	if n == 0 || uint64(total) > 0xffffffff {
		return nil, 0, fmt.Errorf("ike: encrypted body of %d octets", n)
	}
	hdr.Length = uint32(total)
	return hdr.Append(make([]byte, 0, total)), total, nil
}

// endSealed pads the plaintext after the header with zeros and encrypts it
// in place.
func endSealed(msg []byte, total int, b cipher.Block, iv []byte) ([]byte, error) {
	if len(msg) > total || cap(msg) != total {
		return nil, fmt.Errorf("ike: plaintext of %d octets, %d announced", len(msg)-isakmp.HeaderLen, total-isakmp.HeaderLen)
	}
	msg = msg[:total] // the padding: zeros, as make left them
	body := msg[isakmp.HeaderLen:]
	cbcEncrypt(b, iv, body)
	return msg, nil
}

// decrypt decrypts an AES-CBC body; the caller keeps the last ciphertext
// block as the next IV.
func decrypt(key, iv, ct []byte) ([]byte, error) {
	if err := wholeBlocks(ct); err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ike: %w", err)
	}
	return decryptWith(b, iv, ct), nil
}

func wholeBlocks(ct []byte) error {
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return fmt.Errorf("ike: encrypted body of %d octets is not a whole number of blocks", len(ct))
	}
	return nil
}

// decryptWith decrypts ct, whole blocks (wholeBlocks).
func decryptWith(b cipher.Block, iv, ct []byte) []byte {
	out := make([]byte, len(ct))
	cbcDecrypt(b, iv, out, ct)
	return out
}

func lastBlock(ct []byte) []byte { return append([]byte{}, ct[len(ct)-aes.BlockSize:]...) }

// cbcEncrypt encrypts buf, whole blocks, in place with AES-CBC from iv;
// cbcDecrypt decrypts ct into out (of the same length, not overlapping
// it). Block by block: crypto/cipher's CBC modes copy the whole AES key
// schedule into an object of their own (about 500 octets) per message,
// a quarter of what a key server allocated per registration (issue 18).
func cbcEncrypt(b cipher.Block, iv, buf []byte) {
	prev := iv[:aes.BlockSize]
	for i := 0; i+aes.BlockSize <= len(buf); i += aes.BlockSize {
		blk := buf[i : i+aes.BlockSize]
		subtle.XORBytes(blk, blk, prev)
		b.Encrypt(blk, blk)
		prev = blk
	}
}

func cbcDecrypt(b cipher.Block, iv, out, ct []byte) {
	prev := iv[:aes.BlockSize]
	for i := 0; i+aes.BlockSize <= len(ct); i += aes.BlockSize {
		c, p := ct[i:i+aes.BlockSize], out[i:i+aes.BlockSize]
		b.Decrypt(p, c)
		subtle.XORBytes(p, p, prev)
		prev = c
	}
}
