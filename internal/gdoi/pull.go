// Package gdoi implements the GDOI registration exchange, GROUPKEY-PULL
// (RFC 6407 §3), as sans-IO steps inside an established IKEv1 phase-1 SA:
//
//	GM                                  KS
//	HDR*, HASH(1), Ni, ID         -->
//	                              <--   HDR*, HASH(2), Nr, SA
//	HDR*, HASH(3) [, GAP]         -->
//	                              <--   HDR*, HASH(4), [SEQ,] KD
//
//	HASH(1) = prf(SKEYID_a, M-ID | Ni | ID)
//	HASH(2) = prf(SKEYID_a, M-ID | Ni_b | Nr | SA)
//	HASH(3) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [ | GAP ])
//	HASH(4) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [ | SEQ ] | KD)
//
// Ni, Nr, ID, SA, GAP, SEQ and KD are whole payloads with their generic
// headers, "the entire message that follows the hash ... excluding any
// padding"; Ni_b and Nr_b are nonce bodies (§3.2). Every message is
// encrypted with the phase-1 SA's keys and its own IV chain per message ID.
package gdoi

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// NonceLen is the length of our GROUPKEY-PULL nonces (RFC 6407 §5.8: 8 to
// 128 octets).
const NonceLen = 32

// Refusal is a registration the KS declines; Notify is sent to the GM in a
// protected Informational (RFC 6407 §3.2 leaves errors to RFC 2408 §5).
type Refusal struct {
	Notify isakmp.NotifyType
	Reason string
}

func (r *Refusal) Error() string { return fmt.Sprintf("%s: %s", r.Notify, r.Reason) }

// ErrHash reports a HASH(n) that does not verify.
var ErrHash = errors.New("gdoi: HASH does not verify")

// ErrUnauthenticated wraps every failure of a message before its HASH
// verified (it did not decrypt, parse or verify): nothing says the peer
// sent it, so the exchange it names goes on as if it never arrived, and
// its owner drops and counts it rather than give up (SPEC S2). A failure
// after the HASH verified is the peer's and ends the exchange.
var ErrUnauthenticated = errors.New("message not authenticated")

// Protector is what a GROUPKEY-PULL needs of the phase-1 SA it runs
// over: its SKEYID_a prf for the HASHes, and the protection of phase-2
// messages (encryption with an IV chain per message ID). *ike.SA is one;
// an IKEv2 SA can be another.
type Protector interface {
	PRFa(data ...[]byte) []byte
	// AppendPRFa is PRFa appending to dst (an exchange's scratch: issue
	// 18, the KS computes four HASHes per registration).
	AppendPRFa(dst []byte, data ...[]byte) []byte
	EncryptPhase2(exch isakmp.ExchangeType, mid uint32, ps []isakmp.Payload) ([]byte, error)
	// EncryptPhase2Chain is EncryptPhase2 for a payload chain already
	// encoded, its first payload of type first.
	EncryptPhase2Chain(exch isakmp.ExchangeType, mid uint32, first isakmp.PayloadType, chain []byte) ([]byte, error)
	// EncryptPhase2ChainAfter is EncryptPhase2Chain for the answer to the
	// peer's message whose encrypted body is prev, leaving the chains
	// alone: a lost answer built again.
	EncryptPhase2ChainAfter(exch isakmp.ExchangeType, mid uint32, first isakmp.PayloadType, chain, prev []byte) ([]byte, error)
	OpenPhase2(m *isakmp.Message, check func([]isakmp.Payload) error) ([]isakmp.Payload, error)
}

var _ Protector = (*ike.SA)(nil)

// hash computes HASH(n) = prf(SKEYID_a, M-ID | prefix | payloads after the
// HASH payload).
func hash(sa Protector, mid uint32, prefix []byte, rest []isakmp.Payload) ([]byte, error) {
	h, buf, err := hashIn(sa, mid, prefix, rest, nil)
	clear(buf[:cap(buf)]) // h is PRFa's own without a scratch
	return h, err
}

// scratch is an exchange's working memory for the messages it seals and
// checks: the room for a plaintext or a HASH input, cleared after each
// use (a message 4's plaintext holds the group's keys), and the PRF's
// arguments (a variadic call through the Protector interface allocates
// its array each time). Issue 18: a KS seals two messages and checks two
// per registration.
type scratch struct {
	buf []byte
	arg [3][]byte
	// A served exchange's nonces (Ni_b, at most 128 octets, then Nr_b),
	// its Nr payload, the SA and KD payloads a LaidOutPolicy answers, and
	// room for its messages when a group's fit: in the same allocation.
	nonces [128 + NonceLen]byte
	nonce  isakmp.Nonce
	policy PolicyAt
	keys   KeysWith
	space  [scratchRoom]byte
}

// scratchRoom is the room in a scratch for the messages of an exchange
// served: a group of a few TEKs' and an ECDSA rekey key's (~360 octets
// each for messages 2 and 4 with two TEKs and P-256); a longer one is
// given a buffer of its own.
const scratchRoom = 512

// room is sc's buffer emptied, or a new one if it holds fewer than n
// octets (sc nil: a new one, not kept).
func (sc *scratch) room(n int) []byte {
	if sc == nil || cap(sc.buf) < n {
		b := make([]byte, 0, n)
		if sc != nil {
			sc.buf = b
		}
		return b
	}
	return sc.buf[:0]
}

// prf is sa.PRFa(parts...) (at most 3), its arguments in sc and its
// output appended to dst, room in sc's buffer (issue 18: four HASHes per
// registration on a KS); sc nil: PRFa's own output, dst unused.
func (sc *scratch) prf(sa Protector, dst []byte, parts ...[]byte) []byte {
	if sc == nil {
		// parts copied, so that they do not escape for a caller with a
		// scratch (an interface's variadic call escapes its arguments).
		a := new([3][]byte)
		return sa.PRFa(a[:copy(a[:], parts)]...)
	}
	n := copy(sc.arg[:], parts)
	h := sa.AppendPRFa(dst, sc.arg[:n]...)
	clear(sc.arg[:])
	return h
}

// prfRoom is the room for a PRF's output in front of what it covers
// (hashIn, sealInto): SHA-512's.
const prfRoom = 64

// hashIn computes prf(SKEYID_a, M-ID | prefix | rest) with sc as its
// working memory (nil: none): one buffer, buf, for the PRF's output (in
// its first prfRoom octets, with a scratch) and its input after it. The
// caller clears buf[:cap(buf)] once done with h, which lies in it with a
// scratch (issue 18: the KS hashes two messages per registration).
func hashIn(sa Protector, mid uint32, prefix []byte, rest []isakmp.Payload, sc *scratch) (h, buf []byte, err error) {
	buf = sc.room(prfRoom + 4 + len(prefix) + isakmp.PayloadsLen(rest))
	in := binary.BigEndian.AppendUint32(buf[prfRoom:prfRoom], mid)
	in, err = isakmp.AppendPayloads(append(in, prefix...), rest)
	if err != nil {
		return nil, buf, err
	}
	return sc.prf(sa, buf[:0:prfRoom], in), buf, nil
}

// seal builds an encrypted GROUPKEY-PULL message: HASH(n) then rest.
func seal(sa Protector, mid uint32, prefix []byte, rest []isakmp.Payload) ([]byte, error) {
	return sealIn(sa, isakmp.ExchangePull, mid, prefix, rest)
}

// hashRoom is the room left for the HASH payload in front of the payloads
// it covers: its generic header and the longest PRF output (SHA-512's).
const hashRoom = isakmp.GenericHeaderLen + prfRoom

// sealIn builds an encrypted message of exchange exch: HASH = prf(SKEYID_a,
// M-ID | prefix | rest) then rest. The payloads of rest are encoded once,
// behind room for the HASH payload, and the HASH covers them as encoded
// and sent (issue 18: they were encoded twice, for the HASH and for the
// message, the key download and the group policy included).
func sealIn(sa Protector, exch isakmp.ExchangeType, mid uint32, prefix []byte, rest []isakmp.Payload) ([]byte, error) {
	return sealInto(sa, exch, mid, prefix, rest, nil)
}

// sealInto is sealIn with sc as its working memory (nil: none).
func sealInto(sa Protector, exch isakmp.ExchangeType, mid uint32, prefix []byte, rest []isakmp.Payload, sc *scratch) ([]byte, error) {
	return sealAfter(sa, exch, mid, prefix, rest, sc, nil)
}

// sealAfter is sealInto for the answer to the peer's message whose
// encrypted body is prev (nil: the exchange's chain goes on, as
// sealInto): EncryptPhase2ChainAfter.
func sealAfter(sa Protector, exch isakmp.ExchangeType, mid uint32, prefix []byte, rest []isakmp.Payload, sc *scratch, prev []byte) ([]byte, error) {
	b := sc.room(hashRoom + isakmp.PayloadsLen(rest))[:hashRoom]
	defer clear(b[:cap(b)])
	b, err := isakmp.AppendPayloads(b, rest)
	if err != nil {
		return nil, err
	}
	// The M-ID in the room before the payloads, where the HASH payload
	// goes once computed: not an allocation of its own.
	// The HASH computed into the room's first octets (with a scratch),
	// then moved behind its payload header, over the M-ID.
	binary.BigEndian.PutUint32(b[hashRoom-4:], mid)
	h := sc.prf(sa, b[:0:hashRoom-4], b[hashRoom-4:hashRoom], prefix, b[hashRoom:])
	next := isakmp.PayloadNone
	if len(rest) > 0 {
		next = rest[0].Type()
	}
	start := hashRoom - isakmp.GenericHeaderLen - len(h)
	if start < 0 {
		return nil, fmt.Errorf("gdoi: HASH of %d octets", len(h))
	}
	copy(b[start+isakmp.GenericHeaderLen:hashRoom], h) // h may lie where it goes: copy moves
	b[start], b[start+1] = byte(next), 0
	binary.BigEndian.PutUint16(b[start+2:], uint16(isakmp.GenericHeaderLen+len(h)))
	if prev != nil {
		return sa.EncryptPhase2ChainAfter(exch, mid, isakmp.PayloadHash, b[start:], prev)
	}
	return sa.EncryptPhase2Chain(exch, mid, isakmp.PayloadHash, b[start:])
}

// open decrypts a GROUPKEY-PULL message and checks its HASH.
func open(sa Protector, m *isakmp.Message, prefix []byte) ([]isakmp.Payload, error) {
	return openWith(sa, m, hashChecker(sa, m.Header.MessageID, prefix))
}

// openWith decrypts a GROUPKEY-PULL message and runs check (a
// hashChecker's) on it.
func openWith(sa Protector, m *isakmp.Message, check func([]isakmp.Payload) error) ([]isakmp.Payload, error) {
	if m.Header.Exchange != isakmp.ExchangePull {
		return nil, fmt.Errorf("gdoi: exchange %s is not GROUPKEY-PULL", m.Header.Exchange)
	}
	// The IV chain of the Message ID advances only once the HASH
	// verified: a forged message cannot desynchronise the exchange.
	ps, err := sa.OpenPhase2(m, check)
	if err != nil {
		return nil, fmt.Errorf("gdoi: %w: %w", ErrUnauthenticated, err)
	}
	return ps[1:], nil
}

// hashChecker is the check OpenPhase2 runs on a decrypted GDOI message
// before the IV chain of its Message ID advances: the first payload is a
// HASH, and it is prf(SKEYID_a, M-ID | prefix | the payloads after it).
func hashChecker(sa Protector, mid uint32, prefix []byte) func([]isakmp.Payload) error {
	return func(ps []isakmp.Payload) error { return checkHash(sa, mid, prefix, ps, nil) }
}

// checkHash is hashChecker's check with sc as its working memory (nil:
// none).
func checkHash(sa Protector, mid uint32, prefix []byte, ps []isakmp.Payload, sc *scratch) error {
	if len(ps) == 0 {
		return errors.New("empty message")
	}
	h, ok := ps[0].(*isakmp.Hash)
	if !ok {
		return fmt.Errorf("first payload is %s, not HASH", ps[0].Type())
	}
	want, buf, err := hashIn(sa, mid, prefix, ps[1:], sc)
	defer clear(buf[:cap(buf)])
	if err != nil {
		return err
	}
	if !hmac.Equal(h.Data, want) {
		return ErrHash
	}
	return nil
}

func find[T isakmp.Payload](ps []isakmp.Payload) T {
	var zero T
	for _, p := range ps {
		if t, ok := p.(T); ok {
			return t
		}
	}
	return zero
}

func randBytes(r io.Reader, n int) ([]byte, error) { return appendRand(nil, r, n) }

// appendRand appends n random octets to b.
func appendRand(b []byte, r io.Reader, n int) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	if cap(b)-len(b) < n {
		b = append(make([]byte, 0, len(b)+n), b...)
	}
	if _, err := io.ReadFull(r, b[len(b):len(b)+n]); err != nil {
		return nil, fmt.Errorf("gdoi: random: %w", err)
	}
	return b[:len(b)+n], nil
}

// Result is what a completed GROUPKEY-PULL delivers to the GM.
type Result struct {
	Policy *isakmp.GroupSA // KEK policy, GAP, TEK policies
	Seq    uint32          // the KS's current GROUPKEY-PUSH sequence number (0: none sent)
	KD     *isakmp.KD      // keys: TEKs, KEK, sender IDs
}

// Pull is the GM side of one GROUPKEY-PULL exchange.
type Pull struct {
	sa     Protector
	mid    uint32
	group  *isakmp.ID
	sids   uint16
	nr     int // octets of Nr_b, after Ni_b in sc.nonces
	policy *isakmp.GroupSA
	step   int    // 1: message 1 sent, 3: message 3 sent, 4: done
	last   []byte // last message sent, for retransmission
	// check is the HASH check of the KS's next message (checkNext), made
	// once for the exchange: a func value handed to the Protector
	// escapes, one allocation each.
	check func([]isakmp.Payload) error
	// sc is the exchange's working memory, in the Pull's allocation: its
	// nonces hold Ni_b then Nr_b (the prefix of HASH(3) and HASH(4)), its
	// nonce payload and msg1 message 1's payloads, its buffer the HASH
	// inputs (issue 18: the load generator's CPU per registration).
	sc   scratch
	msg1 [2]isakmp.Payload
}

// NewPull starts registration to group over sa, asking for sids sender
// IDs (0 when no counter-mode TEK is expected). It returns message 1.
func NewPull(sa Protector, group *isakmp.ID, sids uint16, r io.Reader) (*Pull, []byte, error) {
	p := &Pull{sa: sa, group: group, sids: sids}
	p.sc.buf = p.sc.space[:0]
	// The message ID read where Ni_b goes next: the first 4 octets.
	midb, err := appendRand(p.sc.nonces[:0], r, 4)
	if err != nil {
		return nil, nil, err
	}
	p.mid = binary.BigEndian.Uint32(midb) | 1
	ni, err := appendRand(p.sc.nonces[:0], r, NonceLen)
	if err != nil {
		return nil, nil, err
	}
	p.sc.nonce.Data = ni
	p.msg1 = [2]isakmp.Payload{&p.sc.nonce, group}
	msg, err := sealInto(sa, isakmp.ExchangePull, p.mid, nil, p.msg1[:], &p.sc)
	p.msg1, p.sc.nonce.Data = [2]isakmp.Payload{}, nil
	if err != nil {
		return nil, nil, err
	}
	p.check = p.checkNext
	p.step, p.last = 1, msg
	return p, msg, nil
}

// ni is Ni_b; prefix is Ni_b | Nr_b once message 2 gave Nr_b.
func (p *Pull) ni() []byte     { return p.sc.nonces[:NonceLen:NonceLen] }
func (p *Pull) prefix() []byte { return p.sc.nonces[: NonceLen+p.nr : NonceLen+p.nr] }

// checkNext is the HASH check of the KS's message the exchange awaits:
// HASH(2) covers Ni_b, HASH(4) Ni_b | Nr_b.
func (p *Pull) checkNext(ps []isakmp.Payload) error {
	prefix := p.ni()
	if p.step == 3 {
		prefix = p.prefix()
	}
	return checkHash(p.sa, p.mid, prefix, ps, &p.sc)
}

// MessageID identifies the exchange on its phase-1 SA.
func (p *Pull) MessageID() uint32 { return p.mid }

// Last is the last message sent, for retransmission.
func (p *Pull) Last() []byte { return p.last }

// Handle processes the KS's message 2 or 4. After message 2 it returns
// message 3; after message 4 it returns the Result.
func (p *Pull) Handle(m *isakmp.Message) (reply []byte, res *Result, err error) {
	if m.Header.MessageID != p.mid {
		// The HASH is checked over the exchange's message ID: another's
		// message is not this exchange's, whatever routed it here.
		return nil, nil, ErrUnauthenticated
	}
	switch p.step {
	case 1:
		// HASH(2) covers Ni_b, then Nr and SA as sent.
		ps, err := openWith(p.sa, m, p.check)
		if err != nil {
			return nil, nil, err
		}
		nr := find[*isakmp.Nonce](ps)
		sa := find[*isakmp.GroupSA](ps)
		if nr == nil || sa == nil {
			return nil, nil, errors.New("gdoi: message 2 lacks the nonce or the SA")
		}
		if len(nr.Data) < 8 || len(nr.Data) > 128 {
			return nil, nil, fmt.Errorf("gdoi: responder nonce of %d octets", len(nr.Data))
		}
		p.nr, p.policy = copy(p.sc.nonces[NonceLen:], nr.Data), sa
		var rest []isakmp.Payload
		if p.sids > 0 {
			rest = []isakmp.Payload{&isakmp.GAP{Attributes: isakmp.Attributes{isakmp.BasicAttr(isakmp.GAPSenderIDRequest, p.sids)}}}
		}
		msg, err := p.seal3(rest)
		if err != nil {
			return nil, nil, err
		}
		p.step, p.last = 3, msg
		return msg, nil, nil
	case 3:
		ps, err := openWith(p.sa, m, p.check)
		if err != nil {
			return nil, nil, err
		}
		kd := find[*isakmp.KD](ps)
		if kd == nil {
			return nil, nil, errors.New("gdoi: message 4 lacks the KD payload")
		}
		res := &Result{Policy: p.policy, KD: kd}
		if seq := find[*isakmp.SEQ](ps); seq != nil {
			res.Seq = seq.Number
		}
		p.step = 4
		return nil, res, nil
	}
	return nil, nil, errors.New("gdoi: GROUPKEY-PULL already complete")
}

// seal3 builds message 3; its HASH(3) prefix is Ni_b | Nr_b.
func (p *Pull) seal3(rest []isakmp.Payload) ([]byte, error) {
	// With nothing after HASH(3) the chain is the HASH alone.
	return sealInto(p.sa, isakmp.ExchangePull, p.mid, p.prefix(), rest, &p.sc)
}
