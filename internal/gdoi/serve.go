package gdoi

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Policy is what the KS decides during registration. Both methods may
// return a *Refusal to decline with a notification.
type Policy interface {
	// Join returns the group's SA payload for a GM that asked for group
	// over the phase-1 SA described by peer.
	Join(peer ike.Info, group *isakmp.ID) (*isakmp.GroupSA, error)
	// Keys returns the current sequence number and the key download for
	// that GM, allocating sids sender IDs if it asked for them.
	Keys(peer ike.Info, group *isakmp.ID, sids uint16) (seq uint32, kd *isakmp.KD, err error)
}

// LaidOutPolicy is a Policy that also answers with payloads laid out
// (GroupPolicy.At, KeyDownload.With), which Serve then asks rather than
// Join and Keys: a key server lays out what is the same for every member
// once (issue 18). The payloads say what Join's and Keys' answers would.
type LaidOutPolicy interface {
	Policy
	// JoinPayload is Join's SA payload.
	JoinPayload(peer ike.Info, group *isakmp.ID) (PolicyAt, error)
	// KeysPayload is Keys' sequence number and KD payload. What the
	// payload refers to (the KeyDownload, the sender IDs' slice) must not
	// change after it is returned, but by KeyDownload.Clear: a done Serve
	// builds message 4 again from it for as long as it lingers.
	KeysPayload(peer ike.Info, group *isakmp.ID, sids uint16) (seq uint32, kd KeysWith, err error)
}

// Serve is the KS side of one GROUPKEY-PULL exchange. Its fields are
// ordered to fit 192 octets (issue 18: a done Serve lingers for each
// registration of the last 30 s).
type Serve struct {
	sa     *ike.SA
	policy Policy
	group  *isakmp.ID
	// nonces is Ni_b then Nr_b (niLen octets, then NonceLen), the prefix of
	// HASH(3) and HASH(4), in sc: copied from message 1 rather than
	// holding its plaintext (once done with a LaidOutPolicy: in an
	// allocation of their own; otherwise dropped).
	nonces []byte
	// sc is the exchange's working memory for the messages it seals and
	// checks (scratch), dropped once done; check is checkMsg, made once
	// for both messages it opens (issue 18: four buffers, four PRF
	// argument arrays and two checks per registration before).
	sc       *scratch
	check    func([]isakmp.Payload) error
	last     []byte   // our last message, for the GM's retransmissions (nil once done with a LaidOutPolicy: keys)
	lastRecv [32]byte // digest of the GM's last message
	// A done exchange of a LaidOutPolicy keeps what its message 4 is
	// made of rather than its octets (issue 18: message 4 is ~370 octets
	// for a group of two TEKs and a KEK, and a done exchange lingers for
	// each registration of the last 30 s: a done exchange holds ~250
	// octets instead of ~520 with message 4, a third of what a member adds to the heap while a
	// registration storm lasts, TestDoneServeHoldsLessThanMessage4): the KD payload sent
	// (the group's key packets laid out once and shared, the member's
	// sender IDs) and the sequence number, with nonces, HASH(4)'s prefix,
	// in an allocation of their own. A retransmitted message 3 gets
	// message 4 built again from them (again): the same octets, and
	// nothing is asked of the policy (no second registration or log line,
	// no second set of sender IDs). Once the key packets are cleared (the
	// group's keys changed) it is not built: ErrAnswerGone.
	keys    KeysWith
	seq     uint32
	mid     uint32
	step    uint8 // 0: message 1 being checked, 2: message 2 sent, 4: message 4 sent
	niLen   uint8 // at most 128
	resends uint8 // message 4 sent again (at most maxResends)
}

// ErrAnswerGone is Handle's error for the GM's message 3 received again
// that is not answered: the key packets its message 4 handed out were
// cleared (a rekey, a removal, a refresh replaced the group's keys, or the
// hand-out of replaced TEKs it carried ended), or it was sent again
// maxResends times already. The GM's retransmissions end
// (3 tries, 15 s) and it registers again, with the group's keys of then.
var ErrAnswerGone = errors.New("gdoi: message 4 not sent again")

// maxResends is how many times a done exchange answers the GM's message 3
// received again: a GM of this project sends it 3 times in all, and a
// replay of it costs the KS a message 4 built again (issue 18).
const maxResends = 4

// checkMsg is the HASH check of the GM's message 1 (before message 2 is
// sent) or 3.
func (s *Serve) checkMsg(ps []isakmp.Payload) error {
	var prefix []byte
	if s.step == 2 {
		prefix = s.nonces
	}
	return checkHash(s.sa, s.mid, prefix, ps, s.sc)
}

// Serve handles message 1 of a new exchange and returns message 2.
func NewServe(sa *ike.SA, m *isakmp.Message, raw []byte, p Policy, r io.Reader) (*Serve, []byte, error) {
	s := &Serve{sa: sa, policy: p, mid: m.Header.MessageID, sc: &scratch{}}
	s.sc.buf = s.sc.space[:0]
	s.check = s.checkMsg
	ps, err := openWith(sa, m, s.check)
	if err != nil {
		return nil, nil, err
	}
	ni := find[*isakmp.Nonce](ps)
	id := find[*isakmp.ID](ps)
	if ni == nil || id == nil {
		return nil, nil, &Refusal{Notify: isakmp.NotifyPayloadMalformed, Reason: "message 1 lacks the nonce or the group ID"}
	}
	if len(ni.Data) < 8 || len(ni.Data) > 128 {
		return nil, nil, &Refusal{Notify: isakmp.NotifyPayloadMalformed, Reason: fmt.Sprintf("nonce of %d octets", len(ni.Data))}
	}
	s.group, s.niLen = id, uint8(len(ni.Data))
	var groupSA isakmp.Payload
	if lp, ok := p.(LaidOutPolicy); ok {
		s.sc.policy, err = lp.JoinPayload(sa.Info(), id)
		groupSA = &s.sc.policy
	} else {
		groupSA, err = p.Join(sa.Info(), id)
	}
	if err != nil {
		return nil, nil, err
	}
	s.nonces = append(s.sc.nonces[:0], ni.Data...)
	if s.nonces, err = appendRand(s.nonces, r, NonceLen); err != nil {
		return nil, nil, err
	}
	s.sc.nonce.Data = s.nonces[s.niLen:]
	ps2 := []isakmp.Payload{&s.sc.nonce, groupSA}
	if n := hashRoom + isakmp.PayloadsLen(ps2); n > len(s.sc.space) {
		// With room for message 4 too, which is about as long (SEQ and
		// KD); sealInto grows it if short.
		s.sc.buf = make([]byte, 0, n+256)
	}
	msg, err := sealInto(sa, isakmp.ExchangePull, s.mid, s.nonces[:s.niLen], ps2, s.sc)
	if err != nil {
		return nil, nil, err
	}
	s.step, s.last, s.lastRecv = 2, msg, sha256.Sum256(raw)
	return s, msg, nil
}

// Group is the group ID the GM asked for (nil once message 4 is sent).
func (s *Serve) Group() *isakmp.ID { return s.group }

// Done reports whether message 4 was sent. A done Serve keeps only what
// answers a retransmitted message 3: its digest and message 4, or what
// message 4 is made of (a LaidOutPolicy's).
func (s *Serve) Done() bool { return s.step == 4 }

// Handle processes message 3 and returns message 4 (done is then true). A
// retransmitted message 1 is answered with message 2 again; a
// retransmitted message 3 with message 4 again (built again from what a
// LaidOutPolicy's done Serve keeps), at most maxResends times, or not at
// all once its keys were cleared: ErrAnswerGone.
func (s *Serve) Handle(m *isakmp.Message, raw []byte) (reply []byte, done bool, err error) {
	if sha256.Sum256(raw) == s.lastRecv {
		if s.step != 4 {
			return s.last, false, nil // message 1 again: message 2 again
		}
		if s.resends >= maxResends {
			return nil, true, fmt.Errorf("%w: sent again %d times already", ErrAnswerGone, s.resends)
		}
		s.resends++
		if s.last != nil {
			return s.last, true, nil
		}
		reply, err := s.again(m)
		return reply, true, err
	}
	if s.step != 2 {
		return nil, true, errors.New("gdoi: GROUPKEY-PULL already complete")
	}
	ps, err := openWith(s.sa, m, s.check)
	if err != nil {
		return nil, false, err
	}
	var sids uint16
	if gap := find[*isakmp.GAP](ps); gap != nil {
		if a, ok := gap.Attributes.Find(uint16(isakmp.GAPSenderIDRequest)); ok {
			v, _ := a.Uint()
			sids = uint16(min(v, 0xffff))
		}
	}
	var seq uint32
	var kd isakmp.Payload
	lp, laidOut := s.policy.(LaidOutPolicy)
	if laidOut {
		seq, s.sc.keys, err = lp.KeysPayload(s.sa.Info(), s.group, sids)
		kd = &s.sc.keys
	} else {
		seq, kd, err = s.policy.Keys(s.sa.Info(), s.group, sids)
	}
	if err != nil {
		return nil, false, err
	}
	msg, err := sealInto(s.sa, isakmp.ExchangePull, s.mid, s.nonces, []isakmp.Payload{&isakmp.SEQ{Number: seq}, kd}, s.sc)
	if err != nil {
		return nil, false, err
	}
	// Done: what answers a retransmitted message 3 only (issue 18: a KS
	// keeps each served exchange a while after it ends).
	s.step, s.lastRecv = 4, sha256.Sum256(raw)
	if laidOut {
		// The nonces out of the scratch, which goes.
		s.seq, s.keys, s.nonces, s.last = seq, s.sc.keys, slices.Clone(s.nonces), nil
	} else {
		s.last, s.nonces = msg, nil
	}
	s.policy, s.group, s.sc, s.check = nil, nil, nil, nil
	return msg, true, nil
}

// again is message 4 built again for the GM's message 3 m, received again
// (its digest checked): sealed as first, with the IV message 3's last
// ciphertext block gave it (the exchange's chain is forgotten once done).
// Any failure is ErrAnswerGone's: the GM registers again.
func (s *Serve) again(m *isakmp.Message) ([]byte, error) {
	if s.keys.gone() {
		return nil, fmt.Errorf("%w: the keys it handed out are no longer the group's", ErrAnswerGone)
	}
	msg, err := sealAfter(s.sa, isakmp.ExchangePull, s.mid, s.nonces, []isakmp.Payload{&isakmp.SEQ{Number: s.seq}, &s.keys}, nil, m.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnswerGone, err)
	}
	return msg, nil
}
