package gdoi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// The GROUPKEY-PULL fuzz targets run over one phase-1 SA pair established
// in memory (as TestPull does); each input uses a Message ID of its own,
// whose IV chains are forgotten afterwards.
var (
	fuzzOnce   sync.Once
	fuzzGM     *ike.SA
	fuzzKS     *ike.SA
	fuzzMID    uint32
	fuzzChains [4][]byte             // the payloads after HASH of a real exchange's messages 1-4
	fuzzFirst  [4]isakmp.PayloadType // and their first payload types
)

func fuzzSetup(tb testing.TB) {
	fuzzOnce.Do(func() {
		fuzzGM, fuzzKS = phase1(tb)
		// A real exchange: its messages' payloads (after HASH) seed the
		// corpus.
		pull, m1, err := NewPull(fuzzGM, isakmp.GroupID(1234), 2, nil)
		if err != nil {
			tb.Fatal(err)
		}
		serve, m2, err := NewServe(fuzzKS, parse(tb, m1), m1, &fakePolicy{}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		m3, _, err := pull.Handle(parse(tb, m2))
		if err != nil {
			tb.Fatal(err)
		}
		m4, _, err := serve.Handle(parse(tb, m3), m3)
		if err != nil {
			tb.Fatal(err)
		}
		// Decrypt the four messages again, in order, on one side (both
		// hold the same keys; the IV chain of a Message ID starts from
		// the phase-1 IV and follows the messages).
		mid := pull.MessageID()
		fuzzKS.ForgetMessageID(mid)
		for i, msg := range [][]byte{m1, m2, m3, m4} {
			ps, err := fuzzKS.DecryptPhase2(parse(tb, msg))
			if err != nil {
				tb.Fatalf("message %d: %v", i+1, err)
			}
			if len(ps) > 1 {
				fuzzChains[i], _ = isakmp.AppendPayloads(nil, ps[1:])
				fuzzFirst[i] = ps[1].Type()
			}
		}
		fuzzGM.ForgetMessageID(mid)
		fuzzKS.ForgetMessageID(mid)
	})
	if fuzzGM == nil {
		tb.Fatal("phase 1 setup failed")
	}
}

// nextMID returns a Message ID no other input of this process used.
func nextMID() uint32 {
	fuzzMID += 2
	return fuzzMID | 1
}

// rawPayload is a payload of any type with any body, for chains the
// isakmp parser would not produce.
type rawPayload struct {
	t    isakmp.PayloadType
	body []byte
}

func (r rawPayload) Type() isakmp.PayloadType   { return r.t }
func (r rawPayload) BodyLen() int               { return len(r.body) }
func (r rawPayload) AppendBody(b []byte) []byte { return append(b, r.body...) }

// chain turns fuzz input into the payloads a sender puts after HASH: none
// for no octets, the parsed chain when the octets are one, else one
// payload of type first carrying them (which the receiver's parser then
// judges).
func chain(exch isakmp.ExchangeType, first uint8, b []byte) []isakmp.Payload {
	if len(b) == 0 {
		return nil
	}
	if len(b) > 8000 {
		b = b[:8000]
	}
	if ps, err := isakmp.ParsePayloadsIn(exch, isakmp.PayloadType(first), b); err == nil && len(ps) > 0 {
		return ps
	}
	return []isakmp.Payload{rawPayload{isakmp.PayloadType(first), b}}
}

// authentic seals rest as a GROUPKEY-PULL message of the exchange mid from
// sa, with a valid HASH(n) for prefix: what a peer holding the phase-1 SA
// can send. ok is false when rest cannot be encoded.
func authentic(sa *ike.SA, mid uint32, prefix []byte, rest []isakmp.Payload) ([]byte, bool) {
	msg, err := seal(sa, mid, prefix, rest)
	return msg, err == nil
}

// FuzzServe is the KS side of GROUPKEY-PULL: message 1 and message 3 with
// arbitrary payloads, sealed with valid encryption and HASH by a GM that
// holds the phase-1 SA (or, in raw mode, arbitrary datagrams).
//
// proves: S4 (issue 11: GROUPKEY-PULL KS side: no panic; a refusal names a
// notification; what the KS sends verifies at the GM; a retransmitted
// message 3 is answered with the same message 4)
func FuzzServe(f *testing.F) {
	fuzzSetup(f)
	f.Add(false, uint8(fuzzFirst[0]), fuzzChains[0], uint8(fuzzFirst[2]), fuzzChains[2])
	f.Add(false, uint8(fuzzFirst[0]), fuzzChains[0], uint8(0), []byte{})
	f.Add(false, uint8(isakmp.PayloadNonce), fuzzChains[0][:12], uint8(isakmp.PayloadGAP), []byte{0, 0, 0, 8, 0x80, 3, 0xff, 0xff})
	f.Add(true, uint8(0), fuzzChains[1], uint8(0), fuzzChains[3])
	f.Fuzz(func(t *testing.T, raw bool, np1 uint8, b1 []byte, np3 uint8, b3 []byte) {
		gm, ks := fuzzGM, fuzzKS
		mid := nextMID()
		defer gm.ForgetMessageID(mid)
		defer ks.ForgetMessageID(mid)
		var msg1 []byte
		if raw {
			msg1 = b1
		} else {
			var ok bool
			if msg1, ok = authentic(gm, mid, nil, chain(isakmp.ExchangePull, np1, b1)); !ok {
				return
			}
		}
		m1, err := isakmp.ParseMessage(msg1)
		if err != nil {
			return
		}
		pol := &fakePolicy{}
		serve, msg2, err := NewServe(ks, m1, msg1, pol, nil)
		if err != nil {
			var r *Refusal
			if errors.As(err, &r) && r.Notify == 0 {
				t.Fatalf("refusal without a notification: %v", err)
			}
			return
		}
		if serve == nil || msg2 == nil {
			t.Fatal("NewServe: no error and no message 2")
		}
		if raw {
			t.Fatal("an unauthenticated datagram started an exchange")
		}
		// message 2 verifies at the GM
		ni := serve.nonces[:serve.niLen]
		ps2, err := open(gm, parse(t, msg2), ni)
		if err != nil {
			t.Fatalf("message 2 does not verify at the GM: %v", err)
		}
		nr := find[*isakmp.Nonce](ps2)
		if nr == nil || !bytes.Equal(nr.Data, serve.nonces[serve.niLen:]) {
			t.Fatal("message 2 lacks the KS nonce")
		}
		prefix := append(append([]byte{}, ni...), nr.Data...)
		msg3, ok := authentic(gm, mid, prefix, chain(isakmp.ExchangePull, np3, b3))
		if !ok {
			return
		}
		m3, err := isakmp.ParseMessage(msg3)
		if err != nil {
			return
		}
		msg4, done, err := serve.Handle(m3, msg3)
		if err != nil {
			return
		}
		if !done || msg4 == nil {
			t.Fatalf("message 3 accepted without message 4 (done %v)", done)
		}
		if pol.sids > 0xffff {
			t.Fatalf("sender IDs %d", pol.sids)
		}
		if _, err := open(gm, parse(t, msg4), prefix); err != nil {
			t.Fatalf("message 4 does not verify at the GM: %v", err)
		}
		again, done, err := serve.Handle(m3, msg3)
		if err != nil || !done || !bytes.Equal(again, msg4) {
			t.Fatalf("retransmitted message 3: %v %v", done, err)
		}
	})
}

// FuzzPull is the GM side of GROUPKEY-PULL: message 2 and message 4 with
// arbitrary payloads, sealed with valid encryption and HASH by a KS that
// holds the phase-1 SA (or, in raw mode, arbitrary datagrams).
//
// proves: S4 (issue 11: GROUPKEY-PULL GM side: no panic; message 3
// verifies at the KS; a result always carries the policy and the KD)
func FuzzPull(f *testing.F) {
	fuzzSetup(f)
	f.Add(false, uint8(fuzzFirst[1]), fuzzChains[1], uint8(fuzzFirst[3]), fuzzChains[3])
	f.Add(false, uint8(fuzzFirst[1]), fuzzChains[1], uint8(isakmp.PayloadSEQ), []byte{0, 0, 0, 8, 0, 0, 0, 1})
	f.Add(false, uint8(isakmp.PayloadSA), fuzzChains[1], uint8(isakmp.PayloadKD), fuzzChains[3])
	f.Add(true, uint8(0), fuzzChains[0], uint8(0), fuzzChains[2])
	f.Fuzz(func(t *testing.T, raw bool, np2 uint8, b2 []byte, np4 uint8, b4 []byte) {
		gm, ks := fuzzGM, fuzzKS
		pull, msg1, err := NewPull(gm, isakmp.GroupID(1234), 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		mid := pull.MessageID()
		defer gm.ForgetMessageID(mid)
		defer ks.ForgetMessageID(mid)
		// the KS reads message 1 (its IV chain follows the GM's)
		ps1, err := open(ks, parse(t, msg1), nil)
		if err != nil {
			t.Fatal(err)
		}
		ni := find[*isakmp.Nonce](ps1).Data
		var msg2 []byte
		if raw {
			msg2 = b2
		} else {
			var ok bool
			if msg2, ok = authentic(ks, mid, ni, chain(isakmp.ExchangePull, np2, b2)); !ok {
				return
			}
		}
		m2, err := isakmp.ParseMessage(msg2)
		if err != nil {
			return
		}
		msg3, res, err := pull.Handle(m2)
		if err != nil {
			return
		}
		if res != nil || msg3 == nil {
			t.Fatal("message 2 completed the exchange")
		}
		if raw {
			t.Fatal("an unauthenticated datagram was taken for message 2")
		}
		prefix := pull.prefix()
		ps3, err := open(ks, parse(t, msg3), prefix)
		if err != nil {
			t.Fatalf("message 3 does not verify at the KS: %v", err)
		}
		if gap := find[*isakmp.GAP](ps3); gap == nil {
			t.Fatal("message 3 lacks the SENDER_ID_REQUEST asked for")
		}
		msg4, ok := authentic(ks, mid, prefix, chain(isakmp.ExchangePull, np4, b4))
		if !ok {
			return
		}
		m4, err := isakmp.ParseMessage(msg4)
		if err != nil {
			return
		}
		_, res, err = pull.Handle(m4)
		if err != nil {
			return
		}
		if res == nil || res.KD == nil || res.Policy == nil {
			t.Fatalf("result %+v", res)
		}
		if _, _, err := pull.Handle(m4); err == nil {
			t.Fatal("a completed exchange accepted another message")
		}
	})
}

// FuzzOpenAck is the KS's GROUPKEY-PUSH ACK (RFC 8263) handling: arbitrary
// payloads after a HASH computed with the right ack key (what a GM holding
// the KEK can send), or arbitrary datagrams.
//
// proves: S4 (issue 11: the ACK parser: no panic; an accepted ACK is
// exactly HASH, SEQ and an address ID, and one a GM would build)
func FuzzOpenAck(f *testing.F) {
	kek := KEK{Key: bytes.Repeat([]byte{0x5a}, 32)}
	copy(kek.SPI[:], "0123456789abcdef")
	good, err := Ack(kek, 9, netip.MustParseAddr("192.0.2.7"))
	if err != nil {
		f.Fatal(err)
	}
	good6, _ := Ack(kek, 0xffffffff, netip.MustParseAddr("2001:db8::7"))
	f.Add(true, good)
	f.Add(true, good6)
	f.Add(false, good[isakmp.HeaderLen+4+32:]) // SEQ, ID after the HASH
	f.Add(false, []byte{})
	f.Fuzz(func(t *testing.T, raw bool, b []byte) {
		pkt := b
		if !raw {
			// an authentic HASH over whatever payloads follow
			ps := chain(isakmp.ExchangePushAck, uint8(isakmp.PayloadSEQ), b)
			h, err := ackHash(kek, ps)
			if err != nil {
				return
			}
			hdr := isakmp.Header{Exchange: isakmp.ExchangePushAck}
			copy(hdr.InitiatorCookie[:], kek.SPI[:8])
			copy(hdr.ResponderCookie[:], kek.SPI[8:])
			if pkt, err = (&isakmp.Message{Header: hdr, Payloads: append([]isakmp.Payload{&isakmp.Hash{Data: h}}, ps...)}).Marshal(); err != nil {
				return
			}
		}
		m, err := isakmp.ParseMessage(pkt)
		if err != nil {
			return
		}
		seq, gm, err := OpenAck(m, kek)
		if err != nil {
			return
		}
		if !gm.IsValid() {
			t.Fatal("accepted ACK without an address")
		}
		again, err := Ack(kek, seq, gm)
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := isakmp.ParseMessage(again)
		if s2, g2, err := OpenAck(m2, kek); err != nil || s2 != seq || g2 != gm {
			t.Fatalf("the ACK a GM would build for %d %s: %d %s %v", seq, gm, s2, g2, err)
		}
	})
}

// FuzzOpenPush is the GM's GROUPKEY-PUSH receive path: arbitrary payloads
// between SEQ and SIG, signed by the KS's key and encrypted with the KEK
// (what the KS, or a holder of its key, can send), or arbitrary datagrams
// under the KEK's cookies.
//
// proves: S4 (issue 11: the push receive path: no panic; the stale check
// runs before the signature; an accepted push re-seals and opens to the
// same content)
func FuzzOpenPush(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alg := isakmp.SigAlgECDSA256
	kek := KEK{Key: bytes.Repeat([]byte{0x3c}, 48)} // IV then AES-256 key
	copy(kek.SPI[:], "fedcba9876543210")
	good, err := SealPush(sampleRekey(5), kek, key, alg, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	mid, _ := isakmp.AppendPayloads(nil, sampleRekey(5).payloads()[1:])
	f.Add(true, uint32(0), good)
	f.Add(false, uint32(5), mid) // Delete, SA, KD
	f.Add(false, uint32(6), []byte{})
	f.Fuzz(func(t *testing.T, raw bool, seq uint32, b []byte) {
		pkt := b
		if raw {
			// arbitrary octets under the KEK's cookies
			if len(pkt) >= isakmp.HeaderLen {
				pkt = append([]byte{}, pkt...)
				copy(pkt, kek.SPI[:])
			}
		} else {
			var ok bool
			if pkt, ok = sealRaw(t, kek, key, alg, seq, chain(isakmp.ExchangePush, uint8(isakmp.PayloadDelete), b)); !ok {
				return
			}
		}
		stale := errors.New("stale")
		if _, err := OpenPushChecked(pkt, kek, key.Public(), alg, func(uint32) error { return stale }); err == nil {
			t.Fatal("accepted although the sequence check refused it")
		} else if errors.Is(err, ErrPushSignature) {
			t.Fatal("the signature was verified before the sequence check")
		}
		r, err := OpenPush(pkt, kek, key.Public(), alg)
		if err != nil {
			return
		}
		if !raw && r.Seq != seq {
			t.Fatalf("SEQ %d, sealed %d", r.Seq, seq)
		}
		again, err := SealPush(r, kek, key, alg, rand.Reader)
		if err != nil {
			return // content the KS would not build (e.g. too long)
		}
		r2, err := OpenPush(again, kek, key.Public(), alg)
		if err != nil || r2.Seq != r.Seq || len(r2.Deletes) != len(r.Deletes) || len(r2.Notifies) != len(r.Notifies) ||
			(r2.SA == nil) != (r.SA == nil) || (r2.KD == nil) != (r.KD == nil) {
			t.Fatalf("re-sealed push: %+v, %v", r2, err)
		}
	})
}

// sealRaw is SealPush for any payloads between SEQ and SIG.
func sealRaw(t *testing.T, kek KEK, key *ecdsa.PrivateKey, alg isakmp.SigAlg, seq uint32, mid []isakmp.Payload) ([]byte, bool) {
	iv, k, err := kek.split()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := sigHashFor(alg)
	n, _ := sigSize(alg, key.Public())
	body, err := bodyBeforeSig(append([]isakmp.Payload{&isakmp.SEQ{Number: seq}}, mid...))
	if err != nil {
		return nil, false
	}
	padded := (len(body) + isakmp.GenericHeaderLen + n + aes.BlockSize - 1) / aes.BlockSize * aes.BlockSize
	hdr := isakmp.Header{NextPayload: isakmp.PayloadSEQ, Exchange: isakmp.ExchangePush, Flags: isakmp.FlagEncryption,
		Length: uint32(isakmp.HeaderLen + padded)}
	copy(hdr.InitiatorCookie[:], kek.SPI[:8])
	copy(hdr.ResponderCookie[:], kek.SPI[8:])
	d := newHash(h)
	d.Write(signedOctets(hdr, body))
	sig, err := signDigest(rand.Reader, key, alg, h, d.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := isakmp.AppendPayload(body, &isakmp.Sig{Data: sig}, isakmp.PayloadNone)
	if err != nil {
		return nil, false
	}
	plain = append(plain, make([]byte, padded-len(plain))...)
	blk, _ := aes.NewCipher(k)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(plain, plain)
	return append(hdr.Append(nil), plain...), true
}
