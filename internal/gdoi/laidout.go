package gdoi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// A key server answers every registration with the group's policy and
// keys, which are the same for every member between the group's changes
// (rekeys, a configuration change, a TEK or KEK replaced as it ages): the
// types below lay them out once, and each registration writes only what
// is its own into the message (issue 18: built and encoded again for
// every member, SA and KD took ~20 allocations and ~2 KB of a
// registration). What they lay out is what KEKPolicy.SAK, TEKPolicy.SAT,
// TEKKeyPacket, KEKKeyPacket and SIDKeyPacket say, octet for octet
// (TestLaidOutIsWhatThePayloadsSay).

// GroupPolicy is a group's SA payload (SAK, then one SAT per TEK: message
// 2 of GROUPKEY-PULL) laid out once. What time changes, the lifetimes
// left and the pseudotime, is written at each registration (At).
type GroupPolicy struct {
	body  []byte      // the SA payload's body
	lives []lifeField // the 4-octet lifetimes left (the KEK's, each TEK's)
	pts   []int       // the offsets of the TEKs' 8-octet pseudotimes
}

type lifeField struct {
	off     int
	expires time.Time
}

// NewGroupPolicy lays out the SA payload of kek (nil: none) and teks, the
// KEK ending at kekExpires and teks[i] at expires[i]. Their Remaining and
// Pseudotime are not laid out: At writes them.
func NewGroupPolicy(kek *KEKPolicy, kekExpires time.Time, teks []TEKPolicy, expires []time.Time) (*GroupPolicy, error) {
	if len(expires) != len(teks) {
		return nil, fmt.Errorf("gdoi: %d TEKs, %d expiry times", len(teks), len(expires))
	}
	sa := &isakmp.GroupSA{}
	if kek != nil {
		sa.KEK = kek.SAK()
	}
	for _, t := range teks {
		sa.TEKs = append(sa.TEKs, t.SAT())
	}
	p := &GroupPolicy{body: sa.AppendBody(make([]byte, 0, sa.BodyLen()))}
	// Where each attribute's value lies: the SA payload's 12 octets, then
	// each SA attribute payload's generic header and body, whose
	// attributes are last.
	at := 12
	field := func(pl isakmp.Payload, attrs isakmp.Attributes, typ uint16, size int) (int, error) {
		off := at + isakmp.PayloadLen(pl) - attrs.Len()
		for _, a := range attrs {
			if a.Type == typ && !a.Basic {
				off += 4
				if len(a.Data) != size || binary.BigEndian.Uint16(p.body[off-4:]) != typ || int(binary.BigEndian.Uint16(p.body[off-2:])) != size {
					return 0, fmt.Errorf("gdoi: %s attribute %d not laid out where expected", pl.Type(), typ)
				}
				return off, nil
			}
			off += a.Len()
		}
		return 0, fmt.Errorf("gdoi: %s has no attribute %d", pl.Type(), typ)
	}
	if sa.KEK != nil {
		off, err := field(sa.KEK, sa.KEK.Attributes, uint16(isakmp.KEKKeyLifetime), 4)
		if err != nil {
			return nil, err
		}
		p.lives = append(p.lives, lifeField{off, kekExpires})
		at += isakmp.PayloadLen(sa.KEK)
	}
	for i, sat := range sa.TEKs {
		off, err := field(sat, sat.Attributes, uint16(isakmp.IPsecSALifeDuration), 4)
		if err != nil {
			return nil, err
		}
		p.lives = append(p.lives, lifeField{off, expires[i]})
		if teks[i].Replay == isakmp.ReplayTime {
			off, err := field(sat, sat.Attributes, uint16(isakmp.IPsecPseudotime), 8)
			if err != nil {
				return nil, err
			}
			p.pts = append(p.pts, off)
		}
		at += isakmp.PayloadLen(sat)
	}
	return p, nil
}

// At is the SA payload at now, with pseudotime as the TEKs' pseudotime
// (a value: the payload is *PolicyAt, which a caller may keep where it
// has room rather than allocate; issue 18).
func (p *GroupPolicy) At(now time.Time, pseudotime time.Duration) PolicyAt {
	return PolicyAt{p: p, now: now, pt: pseudotime}
}

// PolicyAt is a GroupPolicy at a time: *PolicyAt is the SA payload.
type PolicyAt struct {
	p   *GroupPolicy
	now time.Time
	pt  time.Duration
}

func (*PolicyAt) Type() isakmp.PayloadType { return isakmp.PayloadSA }
func (a *PolicyAt) BodyLen() int           { return len(a.p.body) }

func (a *PolicyAt) AppendBody(b []byte) []byte {
	start := len(b)
	b = append(b, a.p.body...)
	body := b[start:]
	for _, f := range a.p.lives {
		binary.BigEndian.PutUint32(body[f.off:], seconds(f.expires.Sub(a.now)))
	}
	for _, off := range a.p.pts {
		binary.BigEndian.PutUint64(body[off:], uint64(a.pt/time.Millisecond))
	}
	return b
}

// KeyDownload is a group's key packets (message 4's KD payload but the
// member's sender IDs) laid out once. It holds the group's keys: Clear it
// once they are no longer the group's.
type KeyDownload struct {
	packets []byte // the key packets, encoded
	n       int
	cleared bool // Clear ran: packets no longer hold keys
}

// NewKeyDownload lays out packets.
func NewKeyDownload(packets []*isakmp.KeyPacket) *KeyDownload {
	kd := &isakmp.KD{Packets: packets}
	b := kd.AppendBody(make([]byte, 0, kd.BodyLen()))
	return &KeyDownload{packets: b[4:], n: len(packets)}
}

// With is the KD payload: the key packets, then the SID key packet of
// sids at bits bits (SIDKeyPacket) if sids is not empty. sids is read
// when the payload is encoded, again each time a done Serve builds its
// message 4 again: neither it nor k may change after (but by k's Clear).
// A value, as At's.
func (k *KeyDownload) With(bits int, sids []uint32) KeysWith {
	return KeysWith{k: k, bits: bits, sids: sids}
}

// Clear overwrites the keys k holds.
func (k *KeyDownload) Clear() {
	clear(k.packets)
	k.cleared = true
}

// Equal reports whether k and o lay out the same key packets, neither
// cleared: a layout made again for another reason (a replaced TEK's
// window over, the KEK's policy changed) keeps the one before, which the
// answers of the last exchanges are built again from.
func (k *KeyDownload) Equal(o *KeyDownload) bool {
	return !k.cleared && !o.cleared && k.n == o.n && bytes.Equal(k.packets, o.packets)
}

// gone reports whether the key packets were cleared (KeyDownload.Clear):
// the payload would hand out zeros for keys.
func (d *KeysWith) gone() bool { return d.k.cleared }

// KeysWith is a KeyDownload with a member's sender IDs: *KeysWith is the
// KD payload.
type KeysWith struct {
	k    *KeyDownload
	bits int
	sids []uint32
}

func (*KeysWith) Type() isakmp.PayloadType { return isakmp.PayloadKD }

// sidLen is the SID key packet's length: type, RESERVED, length, SPI
// size (no SPI), NUMBER_OF_SID_BITS, a SID_VALUE per ID.
func (d *KeysWith) sidLen() int {
	if len(d.sids) == 0 {
		return 0
	}
	return 5 + 4 + 8*len(d.sids)
}

func (d *KeysWith) BodyLen() int { return 4 + len(d.k.packets) + d.sidLen() }

func (d *KeysWith) AppendBody(b []byte) []byte {
	n := d.k.n
	if len(d.sids) > 0 {
		n++
	}
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, 0, 0)
	b = append(b, d.k.packets...)
	if len(d.sids) == 0 {
		return b
	}
	b = append(b, byte(isakmp.KDSID), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(d.sidLen()))
	b = append(b, 0) // SPI size
	b = isakmp.BasicAttr(isakmp.SIDNumberOfBits, uint16(d.bits)).Append(b)
	for _, sid := range d.sids {
		b = binary.BigEndian.AppendUint16(b, isakmp.SIDValue)
		b = binary.BigEndian.AppendUint16(b, 4)
		b = binary.BigEndian.AppendUint32(b, sid)
	}
	return b
}
