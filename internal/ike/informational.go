package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Phase-2 protection. Every exchange after phase 1 (Informational,
// GROUPKEY-PULL) is encrypted with an IV chain of its own, seeded from the
// last phase-1 CBC block and the message ID (RFC 2409 Appendix B).

// EncryptPhase2 encrypts payloads for exchange exch with message ID mid,
// continuing that message ID's IV chain, and returns the datagram.
func (sa *SA) EncryptPhase2(exch isakmp.ExchangeType, mid uint32, ps []isakmp.Payload) ([]byte, error) {
	if sa.km == nil || !sa.seeded {
		return nil, errors.New("ike: phase 1 is not established")
	}
	b, err := sa.phase2Block()
	if err != nil {
		return nil, err
	}
	defer sa.dropPhase2Block()
	iv := sa.phase2IV(mid)
	msg, err := sealMessage(sa.header(ps[0].Type(), exch, isakmp.FlagEncryption, mid), b, iv[:], ps)
	if err != nil {
		return nil, err
	}
	sa.setPhase2IV(mid, msg[isakmp.HeaderLen:])
	return msg, nil
}

// EncryptPhase2Chain is EncryptPhase2 for a payload chain already
// encoded, whose first payload is of type first: a GROUPKEY-PULL message's
// HASH covers the payloads after it as encoded, and they are not encoded
// a second time for the message (issue 18: the KS's CPU per registration).
func (sa *SA) EncryptPhase2Chain(exch isakmp.ExchangeType, mid uint32, first isakmp.PayloadType, chain []byte) ([]byte, error) {
	if sa.km == nil || !sa.seeded {
		return nil, errors.New("ike: phase 1 is not established")
	}
	b, err := sa.phase2Block()
	if err != nil {
		return nil, err
	}
	defer sa.dropPhase2Block()
	iv := sa.phase2IV(mid)
	msg, err := sealChain(sa.header(first, exch, isakmp.FlagEncryption, mid), b, iv[:], chain)
	if err != nil {
		return nil, err
	}
	sa.setPhase2IV(mid, msg[isakmp.HeaderLen:])
	return msg, nil
}

// EncryptPhase2ChainAfter is EncryptPhase2Chain for the answer to the
// peer's message of exchange mid whose encrypted body is prev: the IV is
// prev's last block, as the exchange's chain had it when the answer was
// first sent, and no chain is read or advanced. A key server builds a
// lost answer again with it once the exchange's chain is forgotten (issue
// 18: it keeps what message 4 is made of, not its octets); the same
// plaintext gives the same datagram.
func (sa *SA) EncryptPhase2ChainAfter(exch isakmp.ExchangeType, mid uint32, first isakmp.PayloadType, chain, prev []byte) ([]byte, error) {
	if sa.km == nil || !sa.seeded {
		return nil, errors.New("ike: phase 1 is not established")
	}
	if err := wholeBlocks(prev); err != nil {
		return nil, err
	}
	b, err := sa.phase2Block()
	if err != nil {
		return nil, err
	}
	defer sa.dropPhase2Block()
	return sealChain(sa.header(first, exch, isakmp.FlagEncryption, mid), b, prev[len(prev)-aes.BlockSize:], chain)
}

// DecryptPhase2 decrypts a message of an exchange after phase 1 and
// advances its message ID's IV chain. Trailing padding is dropped. The
// chain advances before the exchange's HASH is checked: OpenPhase2 does
// not, and is what a receiver of unauthenticated input should use.
func (sa *SA) DecryptPhase2(m *isakmp.Message) ([]isakmp.Payload, error) {
	return sa.OpenPhase2(m, nil)
}

// OpenPhase2 decrypts a message of an exchange after phase 1 and, only if
// check (the exchange's HASH verification; nil: none) accepts its
// payloads, advances its message ID's IV chain: a forged message with the
// Message ID of an exchange in progress cannot disturb it (SPEC S2).
func (sa *SA) OpenPhase2(m *isakmp.Message, check func([]isakmp.Payload) error) ([]isakmp.Payload, error) {
	if sa.km == nil || !sa.seeded {
		return nil, errors.New("ike: phase 1 is not established")
	}
	if !m.Encrypted() {
		return nil, errors.New("ike: phase-2 message is not encrypted")
	}
	if err := wholeBlocks(m.Body); err != nil {
		return nil, err
	}
	b, err := sa.phase2Block()
	if err != nil {
		return nil, err
	}
	iv := sa.phase2IV(m.Header.MessageID)
	plain := decryptWith(b, iv[:], m.Body)
	ps, _, err := m.SplitBody(plain)
	if err != nil {
		sa.dropPhase2Block()
		return nil, err
	}
	if check != nil {
		if err := check(ps); err != nil {
			sa.dropPhase2Block()
			return nil, err
		}
		// Authenticated: the peer holds our message 6.
		sa.release()
	}
	sa.setPhase2IV(m.Header.MessageID, m.Body)
	return ps, nil
}

// setPhase2IV continues message ID mid's IV chain from ciphertext ct. One
// exchange's chain is kept in the SA itself: a key server's member has one
// GROUPKEY-PULL at a time, and a map of it costs hundreds of octets as long
// as the exchange is remembered (issue 18 F3); more at once go to a map.
func (sa *SA) setPhase2IV(mid uint32, ct []byte) {
	last := ct[len(ct)-aes.BlockSize:]
	if mid != 0 && (sa.p2mid == mid || sa.p2mid == 0) && sa.phase2IVs[mid] == nil {
		sa.p2mid = mid
		copy(sa.p2iv[:], last)
		return
	}
	if sa.phase2IVs == nil {
		sa.phase2IVs = map[uint32][]byte{}
	}
	sa.phase2IVs[mid] = lastBlock(ct)
}

// ForgetMessageID drops the IV chain of a finished exchange; without it the
// chains of years of re-registrations would pile up on a long-lived SA.
// The map goes when its last chain does: a long-lived SA between
// exchanges holds none.
func (sa *SA) ForgetMessageID(mid uint32) {
	if mid != 0 && mid == sa.p2mid {
		sa.p2mid, sa.p2iv = 0, [aes.BlockSize]byte{}
	}
	delete(sa.phase2IVs, mid)
	if len(sa.phase2IVs) == 0 {
		sa.phase2IVs = nil
	}
	sa.dropPhase2Block()
}

// phase2Block is the AES block of the phase-2 key. A responder keeps the
// block of a message it decrypted and accepted for the answer that
// follows it (a GROUPKEY-PULL's messages 1 and 2, 3 and 4 expand the key
// once a pair instead of once a message: aes.NewCipher allocates about
// 500 octets; issue 18, the KS's CPU per registration), and drops it once
// it encrypted (dropPhase2Block): an SA between its messages holds none
// (TestPhase2ExchangeMemory), and a message that was not accepted (a
// forgery) leaves none behind. An initiator keeps main mode's block once
// established and the block through the exchange in progress (p2mid's),
// until ForgetMessageID ends it: a GM's main mode and GROUPKEY-PULL
// expand the key once, not four times (issue 18: the load generator's CPU
// per registration); its SA between exchanges holds none (gm forgets an
// abandoned pull's message ID too), nor does a dead one (remove).
func (sa *SA) phase2Block() (cipher.Block, error) {
	if sa.p2block == nil && sa.hs != nil && sa.hs.block != nil {
		// A responder's first phase-2 message within message 6's window:
		// main mode's block (the same key) serves it.
		sa.p2block, sa.hs.block = sa.hs.block, nil
	}
	if sa.p2block == nil {
		b, err := aes.NewCipher(sa.km.ka(sa.suite))
		if err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
		sa.p2block = b
	}
	return sa.p2block, nil
}

// dropPhase2Block drops the phase-2 block (phase2Block), unless the SA
// is an initiator's with an exchange in progress.
func (sa *SA) dropPhase2Block() {
	if sa.initiator && sa.p2mid != 0 {
		return
	}
	sa.p2block = nil
}

// phase2IV is the IV that continues message ID mid's chain, or starts it.
func (sa *SA) phase2IV(mid uint32) (iv [aes.BlockSize]byte) {
	if mid != 0 && mid == sa.p2mid {
		return sa.p2iv
	}
	if c, ok := sa.phase2IVs[mid]; ok {
		copy(iv[:], c)
		return iv
	}
	return phase2IV(sa.sh.scr(), sa.suite.Hash, sa.lastBlock[:], mid)
}

// PRFa computes prf(SKEYID_a, data...), the integrity check of every
// phase-2 message (RFC 2409 §5.5, §5.7; RFC 6407 §3.2 HASH(1..4)).
func (sa *SA) PRFa(data ...[]byte) []byte {
	return sa.AppendPRFa(nil, data...)
}

// AppendPRFa is PRFa appending its output to dst.
func (sa *SA) AppendPRFa(dst []byte, data ...[]byte) []byte {
	return sa.sh.scr().appendHMAC(dst, sa.suite.Hash, sa.km.skeyidA(sa.suite.Hash), data...)
}

// informationalHash is HASH(1) = prf(SKEYID_a, M-ID | N/D) (RFC 2409 §5.7).
func (sa *SA) informationalHash(mid uint32, ps []isakmp.Payload) ([]byte, error) {
	body, err := isakmp.AppendPayloads(nil, ps)
	if err != nil {
		return nil, err
	}
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mid)
	return sa.PRFa(m[:], body), nil
}

// protected builds an encrypted Informational carrying ps after HASH(1).
func (sa *SA) protected(ps []isakmp.Payload) ([]byte, error) {
	midb, err := sa.randBytes(4)
	if err != nil {
		return nil, err
	}
	mid := binary.BigEndian.Uint32(midb) | 1 // never 0, which is phase 1's
	h, err := sa.informationalHash(mid, ps)
	if err != nil {
		return nil, err
	}
	defer sa.ForgetMessageID(mid) // an Informational is one message
	return sa.EncryptPhase2(isakmp.ExchangeInformational, mid, append([]isakmp.Payload{&isakmp.Hash{Data: h}}, ps...))
}

// Notify returns a protected Informational carrying one notification about
// this SA, e.g. a GROUPKEY-PULL refusal (RFC 2408 §5, RFC 6407 §3).
func (sa *SA) Notify(t isakmp.NotifyType, data []byte) ([]byte, error) {
	if sa.state != StateEstablished {
		return nil, errors.New("ike: notification needs an established SA")
	}
	n := &isakmp.Notify{DOI: sa.phase1DOI(), Protocol: isakmp.ProtoISAKMP, NotifyType: t,
		SPI: append(sa.icky[:], sa.rcky[:]...), Data: data}
	return sa.protected([]isakmp.Payload{n})
}

// notifyMessage builds an Informational carrying one error notification:
// protected once phase-1 keys exist, in the clear before (RFC 2408 §5).
func (sa *SA) notifyMessage(t isakmp.NotifyType, encrypted bool) ([]byte, error) {
	n := &isakmp.Notify{DOI: sa.phase1DOI(), Protocol: isakmp.ProtoISAKMP, NotifyType: t, SPI: append(sa.icky[:], sa.rcky[:]...)}
	if encrypted && sa.km != nil {
		if !sa.seeded {
			sa.seed()
		}
		return sa.protected([]isakmp.Payload{n})
	}
	m := &isakmp.Message{Header: sa.header(0, isakmp.ExchangeInformational, 0, 0), Payloads: []isakmp.Payload{n}}
	return m.Marshal()
}

// Delete ends an established SA and returns the protected Informational
// Delete for the peer (RFC 2408 §3.15: the ISAKMP SPI is the cookie pair).
func (sa *SA) Delete(now time.Time) Result {
	if sa.state != StateEstablished {
		sa.state = StateDead
		return Result{}
	}
	d := &isakmp.Delete{DOI: sa.phase1DOI(), Protocol: isakmp.ProtoISAKMP, SPISize: 16,
		SPIs: [][]byte{append(sa.icky[:], sa.rcky[:]...)}}
	msg, err := sa.protected([]isakmp.Payload{d})
	sa.state = StateDead
	if err != nil {
		return Result{Events: []Event{Failed{Err: err}}}
	}
	return Result{Send: [][]byte{msg}}
}

func (sa *SA) dpdNotify(t isakmp.NotifyType, seq uint32) *isakmp.Notify {
	return &isakmp.Notify{DOI: sa.phase1DOI(), Protocol: isakmp.ProtoISAKMP, NotifyType: t,
		SPI: append(sa.icky[:], sa.rcky[:]...), Data: binary.BigEndian.AppendUint32(nil, seq)}
}

// informational handles an Informational exchange for this SA. Only a
// protected one, whose HASH(1) proves the peer's keys, changes an
// established SA; an unprotected one is at most a hint (SPEC S2).
func (sa *SA) informational(m *isakmp.Message, pkt []byte, now time.Time) Result {
	if !m.Encrypted() {
		n := find[*isakmp.Notify](m.Payloads)
		switch {
		case n == nil || !n.NotifyType.IsError():
		case sa.state == StateEstablished:
			if n.NotifyType == isakmp.NotifyInvalidCookie && n.Protocol == isakmp.ProtoISAKMP &&
				(len(n.SPI) == 0 || string(n.SPI) == string(append(sa.icky[:], sa.rcky[:]...))) {
				r := sa.drop()
				if sa.lastHint == 0 || now.UnixNano()-sa.lastHint >= int64(hintInterval) {
					sa.lastHint = now.UnixNano()
					sa.log(slog.LevelInfo, "peer says it holds no such phase-1 SA (unprotected INVALID-COOKIE): it may have restarted")
					r.Events = []Event{PeerLostState{}}
				}
				return r
			}
		case sa.km == nil:
			// Before keys exist an unprotected error is all a peer can
			// send, and only a reason to give up (RFC 2408 §5).
			return sa.fail(fmt.Errorf("%w: %s sent %s", ErrRefused, sa.peer.Addr(), n.NotifyType))
		}
		return sa.drop()
	}
	if sa.km == nil {
		return sa.drop()
	}
	ps, err := sa.decryptInformational(m)
	if err != nil || len(ps) < 2 {
		sa.logUnauth(slog.LevelDebug, "dropped undecryptable Informational", "err", err)
		return sa.drop()
	}
	h, ok := ps[0].(*isakmp.Hash)
	want, herr := sa.informationalHash(m.Header.MessageID, ps[1:])
	if !ok || herr != nil || string(h.Data) != string(want) {
		sa.logUnauth(slog.LevelWarn, "dropped Informational with a wrong HASH(1)")
		return sa.drop()
	}
	if !sa.initiator && sa.state == StateMM4Sent {
		// Protected under the agreement, not by an authenticated peer:
		// whoever made the agreement with us could send it. Its SA does
		// not end before its time, which would free its place among its
		// address's half-open SAs for the next agreement (S1); it waits
		// for nothing more from the peer.
		sa.hs.peerGaveUp = true
		sa.logUnauth(slog.LevelInfo, "Informational before message 5: the peer gave up main mode; its SA waits out its time")
		return sa.drop()
	}
	// Authenticated: the peer holds our message 6.
	sa.release()
	var r Result
	for _, p := range ps[1:] {
		switch p := p.(type) {
		case *isakmp.Delete:
			if p.Protocol == isakmp.ProtoISAKMP {
				sa.state = StateDead
				sa.log(slog.LevelInfo, "peer deleted the phase-1 SA")
				r.Events = append(r.Events, Deleted{})
			}
		case *isakmp.Notify:
			switch {
			case p.NotifyType == isakmp.NotifyRUThere && len(p.Data) == 4:
				msg, err := sa.protected([]isakmp.Payload{sa.dpdNotify(isakmp.NotifyRUThereAck, binary.BigEndian.Uint32(p.Data))})
				if err == nil {
					r.Send = append(r.Send, msg)
				}
			case p.NotifyType == isakmp.NotifyRUThereAck:
				sa.dpdAck(p, now)
			case p.NotifyType.IsError() && sa.state != StateEstablished:
				return sa.fail(fmt.Errorf("%w: %s sent %s", ErrRefused, sa.peer.Addr(), p.NotifyType))
			default:
				r.Events = append(r.Events, Notified{Notify: p})
			}
		}
	}
	if sa.state != StateDead {
		r.Timer = sa.timer()
	}
	return r
}

// decryptInformational decrypts an Informational, one message with an IV
// of its own (RFC 2409 Appendix B): it reads and changes no IV chain, so
// a forged one cannot disturb an exchange in progress with the same
// Message ID. Between messages 4 and 6 the chain so far seeds it.
func (sa *SA) decryptInformational(m *isakmp.Message) ([]isakmp.Payload, error) {
	base := sa.lastBlock[:]
	if !sa.seeded {
		base = sa.hs.iv[:]
	}
	iv := phase2IV(sa.sh.scr(), sa.suite.Hash, base, m.Header.MessageID)
	plain, err := decrypt(sa.km.ka(sa.suite), iv[:], m.Body)
	if err != nil {
		return nil, err
	}
	ps, _, err := m.SplitBody(plain)
	return ps, err
}
