package gdoi

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	gohash "hash"
	"io"
	"math/big"
	"net/netip"

	"github.com/groupvpn/groupvpn/isakmp"
)

// GROUPKEY-PUSH (RFC 6407 §4): HDR*, SEQ, [D,] SA, KD, SIG, encrypted
// after the header with the current KEK and signed before encryption.
//
//   - HDR: cookies = KEK SPI, exchange 33, Flags exactly E, Message ID 0,
//     Length the on-wire length (§4.2).
//   - SIG: over "rekey" (5 octets, no NUL) | HDR | every payload before SIG
//     as plaintext (§4). The RFCs leave open which Length the signed HDR
//     carries; groupvpn signs the header exactly as sent (the final length
//     is known in advance because the signature size is fixed) and, when
//     verifying, also accepts the unpadded length one public
//     implementation signs. docs/wire.md records this.
//   - Hash: SIG_HASH_ALGORITHM (SHA-256) for RSA, signed EMSA-PKCS1-v1_5
//     with DigestInfo (§5.3.6.1); ECDSA hashes with its curve's SHA-2 and
//     writes r|s (RFC 4754 §7).
//   - Cipher: AES-CBC with the explicit IV of KEK_ALGORITHM_KEY
//     (§5.6.2.1), zero padding to the block size.

// Rekey is a GROUPKEY-PUSH's content.
type Rekey struct {
	Seq      uint32
	Notifies []*isakmp.Notify // groupvpn's removal / policy-replace signals
	Deletes  []*isakmp.Delete
	SA       *isakmp.GroupSA // nil in a delete-only push
	KD       *isakmp.KD      // nil in a delete-only push
}

// KEK is the rekey SA both sides hold: its SPI (the push's cookies) and
// KEK_ALGORITHM_KEY (16 octets of IV, then the AES key).
type KEK struct {
	SPI [isakmp.KEKSPILen]byte
	Key []byte
}

func (k KEK) split() (iv, key []byte, err error) {
	if len(k.Key) != 16+16 && len(k.Key) != 16+24 && len(k.Key) != 16+32 {
		return nil, nil, fmt.Errorf("gdoi: KEK key of %d octets is not IV plus an AES key", len(k.Key))
	}
	return k.Key[:16], k.Key[16:], nil
}

func sigHashFor(alg isakmp.SigAlg) (crypto.Hash, int, error) {
	switch alg {
	case isakmp.SigAlgRSA:
		return crypto.SHA256, 0, nil
	case isakmp.SigAlgECDSA256:
		return crypto.SHA256, 32, nil
	case isakmp.SigAlgECDSA384:
		return crypto.SHA384, 48, nil
	case isakmp.SigAlgECDSA521:
		return crypto.SHA512, 66, nil
	}
	return 0, 0, fmt.Errorf("gdoi: signature algorithm %s not supported", alg)
}

func newHash(h crypto.Hash) gohash.Hash {
	switch h {
	case crypto.SHA384:
		return sha512.New384()
	case crypto.SHA512:
		return sha512.New()
	}
	return sha256.New()
}

// sigSize is the length of a signature by key under alg.
func sigSize(alg isakmp.SigAlg, pub crypto.PublicKey) (int, error) {
	_, n, err := sigHashFor(alg)
	if err != nil {
		return 0, err
	}
	if alg == isakmp.SigAlgRSA {
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return 0, errors.New("gdoi: SIG_ALG_RSA with a non-RSA key")
		}
		return k.Size(), nil
	}
	return 2 * n, nil
}

func (r *Rekey) payloads() []isakmp.Payload {
	ps := []isakmp.Payload{&isakmp.SEQ{Number: r.Seq}}
	for _, n := range r.Notifies {
		ps = append(ps, n)
	}
	for _, d := range r.Deletes {
		ps = append(ps, d)
	}
	if r.SA != nil {
		ps = append(ps, r.SA)
	}
	if r.KD != nil {
		ps = append(ps, r.KD)
	}
	return ps
}

// signedOctets is "rekey" | HDR | payloads before SIG (whose last Next
// Payload names SIG).
func signedOctets(h isakmp.Header, body []byte) []byte {
	out := append([]byte("rekey"), h.Append(nil)...)
	return append(out, body...)
}

// bodyBeforeSig encodes the payloads with the last one pointing at SIG.
func bodyBeforeSig(ps []isakmp.Payload) ([]byte, error) {
	var b []byte
	var err error
	for i, p := range ps {
		next := isakmp.PayloadSig
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		if b, err = isakmp.AppendPayload(b, p, next); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// SealPush builds a GROUPKEY-PUSH datagram: signed with signer under alg,
// encrypted with kek.
func SealPush(r *Rekey, kek KEK, signer crypto.Signer, alg isakmp.SigAlg, rand io.Reader) ([]byte, error) {
	iv, key, err := kek.split()
	if err != nil {
		return nil, err
	}
	h, _, err := sigHashFor(alg)
	if err != nil {
		return nil, err
	}
	n, err := sigSize(alg, signer.Public())
	if err != nil {
		return nil, err
	}
	body, err := bodyBeforeSig(r.payloads())
	if err != nil {
		return nil, err
	}
	plainLen := len(body) + isakmp.GenericHeaderLen + n
	padded := (plainLen + aes.BlockSize - 1) / aes.BlockSize * aes.BlockSize
	hdr := isakmp.Header{NextPayload: isakmp.PayloadSEQ, Exchange: isakmp.ExchangePush, Flags: isakmp.FlagEncryption,
		Length: uint32(isakmp.HeaderLen + padded)}
	copy(hdr.InitiatorCookie[:], kek.SPI[:8])
	copy(hdr.ResponderCookie[:], kek.SPI[8:])
	d := newHash(h)
	d.Write(signedOctets(hdr, body))
	sig, err := signDigest(rand, signer, alg, h, d.Sum(nil))
	if err != nil {
		return nil, err
	}
	if len(sig) != n {
		return nil, fmt.Errorf("gdoi: signature of %d octets, expected %d", len(sig), n)
	}
	plain, err := isakmp.AppendPayload(body, &isakmp.Sig{Data: sig}, isakmp.PayloadNone)
	if err != nil {
		return nil, err
	}
	plain = append(plain, make([]byte, padded-len(plain))...)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(plain, plain)
	return append(hdr.Append(nil), plain...), nil
}

func signDigest(rand io.Reader, signer crypto.Signer, alg isakmp.SigAlg, h crypto.Hash, digest []byte) ([]byte, error) {
	if alg == isakmp.SigAlgRSA {
		return signer.Sign(rand, digest, h) // EMSA-PKCS1-v1_5 with DigestInfo
	}
	der, err := signer.Sign(rand, digest, h)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		return nil, err
	}
	_, size, _ := sigHashFor(alg)
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// Errors OpenPush reports, for the GM's counters.
var (
	ErrPushMalformed = errors.New("gdoi: malformed GROUPKEY-PUSH")
	ErrPushSignature = errors.New("gdoi: GROUPKEY-PUSH signature does not verify")
	// ErrPushStale: the push's SEQ is not above the last one accepted (a
	// replay), found before its signature was verified.
	ErrPushStale = errors.New("gdoi: GROUPKEY-PUSH sequence number not above the last accepted")
)

// OpenPush decrypts and verifies a GROUPKEY-PUSH with the rekey SA the GM
// holds: the header must name kek, the SEQ come first, the signature verify
// with the KS's public key. Sequence checking is the caller's.
func OpenPush(pkt []byte, kek KEK, pub crypto.PublicKey, alg isakmp.SigAlg) (*Rekey, error) {
	return OpenPushChecked(pkt, kek, pub, alg, nil)
}

// OpenPushChecked is OpenPush with a check of the SEQ before the signature
// is verified: seq is the push's sequence number, still unauthenticated;
// a non-nil error from it (ErrPushStale, or its own) is returned at once,
// so that a replayed push costs a decryption, not a signature verification
// (RFC 6407 §4: the SEQ is inside the encrypted body, the replay check may
// come first as long as no state changes before the signature verifies).
func OpenPushChecked(pkt []byte, kek KEK, pub crypto.PublicKey, alg isakmp.SigAlg, seqCheck func(seq uint32) error) (*Rekey, error) {
	m, err := isakmp.ParseMessage(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPushMalformed, err)
	}
	h := m.Header
	if h.Exchange != isakmp.ExchangePush || h.Flags != isakmp.FlagEncryption || h.MessageID != 0 {
		return nil, fmt.Errorf("%w: exchange %s flags %s message ID %d", ErrPushMalformed, h.Exchange, h.Flags, h.MessageID)
	}
	if string(h.InitiatorCookie[:])+string(h.ResponderCookie[:]) != string(kek.SPI[:]) {
		return nil, fmt.Errorf("%w: cookies do not name this KEK", ErrPushMalformed)
	}
	if len(m.Body) == 0 || len(m.Body)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d encrypted octets", ErrPushMalformed, len(m.Body))
	}
	iv, key, err := kek.split()
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(m.Body))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(plain, m.Body)
	ps, _, err := isakmp.SplitPayloadsIn(isakmp.ExchangePush, h.NextPayload, plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (wrong KEK?)", ErrPushMalformed, err)
	}
	if len(ps) < 2 {
		return nil, fmt.Errorf("%w: %d payloads", ErrPushMalformed, len(ps))
	}
	seq, ok := ps[0].(*isakmp.SEQ)
	sig, ok2 := ps[len(ps)-1].(*isakmp.Sig)
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: must start with SEQ and end with SIG", ErrPushMalformed)
	}
	if seqCheck != nil {
		if err := seqCheck(seq.Number); err != nil {
			return nil, err
		}
	}
	body, err := bodyBeforeSig(ps[:len(ps)-1])
	if err != nil {
		return nil, err
	}
	hsh, _, err := sigHashFor(alg)
	if err != nil {
		return nil, err
	}
	verified := false
	for _, length := range []uint32{h.Length, uint32(isakmp.HeaderLen + len(body) + isakmp.GenericHeaderLen + len(sig.Data))} {
		hh := h
		hh.Length = length
		d := newHash(hsh)
		d.Write(signedOctets(hh, body))
		if verifyDigest(pub, alg, hsh, d.Sum(nil), sig.Data) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, ErrPushSignature
	}
	r := &Rekey{Seq: seq.Number}
	for _, p := range ps[1 : len(ps)-1] {
		switch p := p.(type) {
		case *isakmp.Notify:
			r.Notifies = append(r.Notifies, p)
		case *isakmp.Delete:
			r.Deletes = append(r.Deletes, p)
		case *isakmp.GroupSA:
			r.SA = p
		case *isakmp.KD:
			r.KD = p
		default:
			return nil, fmt.Errorf("%w: unexpected %s payload", ErrPushMalformed, p.Type())
		}
	}
	return r, nil
}

func verifyDigest(pub crypto.PublicKey, alg isakmp.SigAlg, h crypto.Hash, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return alg == isakmp.SigAlgRSA && rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		_, size, err := sigHashFor(alg)
		if err != nil || alg == isakmp.SigAlgRSA || len(sig) != 2*size {
			return false
		}
		return ecdsa.Verify(k, digest, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
	}
	return false
}

// GROUPKEY-PUSH acknowledgement (RFC 8263 §3): HDR (cookies of the push,
// exchange 35, no flags, Message ID 0), HASH, SEQ, ID, in the clear;
//
//	HASH    = prf(ack_key, SEQ | ID)          whole payloads
//	ack_key = prf(base_key, "GROUPKEY-PUSH ACK\x00" | SPI | L)
//
// with prf HMAC-SHA-256 and base_key the KEK key without its IV (§2.1).
// L is 512 for SHA-256 as §3.2 states ("i.e., 512 bits for
// PRF-HMAC-SHA-256"); groupvpn offers REKEY_ACK_KEK_SHA256 only.
func ackKey(kek KEK) ([]byte, error) {
	_, key, err := kek.split()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("GROUPKEY-PUSH ACK\x00"))
	m.Write(kek.SPI[:])
	m.Write([]byte{0x02, 0x00})
	return m.Sum(nil), nil
}

func ackHash(kek KEK, rest []isakmp.Payload) ([]byte, error) {
	k, err := ackKey(kek)
	if err != nil {
		return nil, err
	}
	body, err := isakmp.AppendPayloads(nil, rest)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, k)
	m.Write(body)
	return m.Sum(nil), nil
}

// Ack builds the GM's acknowledgement of push seq under kek; gm is the
// address it registered from.
func Ack(kek KEK, seq uint32, gm netip.Addr) ([]byte, error) {
	rest := []isakmp.Payload{&isakmp.SEQ{Number: seq}, isakmp.AddrID(gm)}
	h, err := ackHash(kek, rest)
	if err != nil {
		return nil, err
	}
	hdr := isakmp.Header{Exchange: isakmp.ExchangePushAck}
	copy(hdr.InitiatorCookie[:], kek.SPI[:8])
	copy(hdr.ResponderCookie[:], kek.SPI[8:])
	m := &isakmp.Message{Header: hdr, Payloads: append([]isakmp.Payload{&isakmp.Hash{Data: h}}, rest...)}
	return m.Marshal()
}

// OpenAck verifies an acknowledgement under kek and returns its sequence
// number and the GM address it names.
func OpenAck(m *isakmp.Message, kek KEK) (uint32, netip.Addr, error) {
	if m.Header.Exchange != isakmp.ExchangePushAck || len(m.Payloads) != 3 {
		return 0, netip.Addr{}, errors.New("gdoi: not a GROUPKEY-PUSH ACK")
	}
	h, ok1 := m.Payloads[0].(*isakmp.Hash)
	seq, ok2 := m.Payloads[1].(*isakmp.SEQ)
	id, ok3 := m.Payloads[2].(*isakmp.ID)
	if !ok1 || !ok2 || !ok3 {
		return 0, netip.Addr{}, errors.New("gdoi: ACK must be HASH, SEQ, ID")
	}
	want, err := ackHash(kek, m.Payloads[1:])
	if err != nil {
		return 0, netip.Addr{}, err
	}
	if !hmac.Equal(h.Data, want) {
		return 0, netip.Addr{}, ErrHash
	}
	p, err := id.Prefix()
	if err != nil || !p.IsSingleIP() {
		return 0, netip.Addr{}, fmt.Errorf("gdoi: ACK identity %s is not an address", id)
	}
	return seq.Number, p.Addr(), nil
}
