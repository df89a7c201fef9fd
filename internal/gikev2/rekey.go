package gikev2

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
)

// Push is one GSA_REKEY message ready to send: to the multicast group, or
// to each member for unicast rekeys. Its retransmissions are Data again,
// bitwise identical (RFC 9838 §2.4.1.3).
type Push struct {
	SPI       [16]byte // the Rekey SA it travels over
	MessageID uint32
	Data      []byte
}

// ErrRetired is a Rekeyer whose Rekey SA a removal deleted.
var ErrRetired = errors.New("gikev2: the Rekey SA was deleted (the group's members were excluded)")

// Rekeyer is the GCKS side of one group's Rekey SA: it builds, signs and
// encrypts GSA_REKEY messages (RFC 9838 §2.4.1) with Message IDs from the
// Rekey SA's first (0, or what GSA_INITIAL_MESSAGE_ID announced) upward.
// A rekey that installs a new KEK moves it to the new Rekey SA, whose first
// message is Message ID 0. It is sans-IO: the owner persists NextMessageID
// (with the group's keys) before sending what it returns.
type Rekeyer struct {
	group   *Group
	c       *ikev2.SKCipher
	kwk     KWK
	next    uint32
	retired bool
	rand    io.Reader
}

// NewRekeyer returns the Rekeyer of g's Rekey SA whose next Message ID is
// next (0 for a new Rekey SA; a restarted GCKS goes on from what it saved).
func NewRekeyer(g *Group, next uint32, r io.Reader) (*Rekeyer, error) {
	if g.KEK == nil {
		return nil, fmt.Errorf("gikev2: group %d has no Rekey SA", g.ID)
	}
	c, kwk, err := newSKCipher(g.KEK.Suite, g.KEK.Keymat)
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = rand.Reader
	}
	return &Rekeyer{group: g, c: c, kwk: kwk, next: next, rand: r}, nil
}

// Group is the group the Rekeyer's current Rekey SA belongs to.
func (k *Rekeyer) Group() *Group { return k.group }

// NextMessageID is the Message ID of the next GSA_REKEY: what a GM
// registering now is told in GSA_INITIAL_MESSAGE_ID.
func (k *Rekeyer) NextMessageID() uint32 { return k.next }

// RekeyOptions say what a GSA_REKEY carries besides the new policy.
type RekeyOptions struct {
	// Deletes are Delete payloads (§2.4.3): old TEKs by SPI, every TEK
	// (SPI 0), the Rekey SA (GIKE_UPDATE, SPI 0: the members are excluded
	// and register again).
	Deletes []*wire.Delete
	// DTD overrides the group's GWP_DTD in this rekey (the delay before
	// the GMs delete what Deletes name); negative: 0, delete at once.
	DTD time.Duration
}

// Rekey builds the GSA_REKEY that installs next's TEKs and, when its KEK is
// another Rekey SA, next's KEK (wrapped under the current GSK_w):
//
//	HDR(Rekey SA, GSA_REKEY, Message ID), SK{GSA, KD, [D,] [AUTH]}
//
// The AUTH payload (Digital Signature) covers RFC 9838 §2.4.1.1's A | P.
// Once built, the next Message ID is taken; with a new KEK the Rekeyer
// moves to it and its Message IDs start at 0 (§2.4.1.2).
func (k *Rekeyer) Rekey(next *Group, o RekeyOptions, now time.Time) (*Push, error) {
	if k.retired {
		return nil, ErrRetired
	}
	newKEK := next.KEK != nil && next.KEK.SPI != k.group.KEK.SPI
	dtd := next.DTD
	if o.DTD != 0 {
		dtd = max(o.DTD, 0)
	}
	gsa, err := next.gsa(now, false, newKEK, false, 0, next.ATD, dtd)
	if err != nil {
		return nil, err
	}
	bags, err := next.keyBags(k.kwk, newKEK)
	if err != nil {
		return nil, err
	}
	inner := []wire.Payload{gsa, &wire.KD{Bags: bags}}
	for _, d := range o.Deletes {
		inner = append(inner, d)
	}
	p, err := k.seal(inner)
	if err != nil {
		return nil, err
	}
	if newKEK {
		c, kwk, err := newSKCipher(next.KEK.Suite, next.KEK.Keymat)
		if err != nil {
			return nil, err
		}
		k.c, k.kwk, k.next = c, kwk, 0
	}
	k.group = next
	return p, nil
}

// Remove builds the GM-removal GSA_REKEY (SPEC R1, R4 as RFC 9838 §2.4.3
// offers them): a Delete of the Rekey SA with SPI 0 (GIKE_UPDATE), which
// excludes every GM from the group so that each registers again and only
// those whose credentials pass now get the group's new keys; with now, a
// Delete of every TEK (ESP, SPI 0) first, "the Rekey SA and all the
// Data-Security SAs". The Rekeyer is retired: the next registrations get a
// new Rekey SA (a new Rekeyer from 0).
func (k *Rekeyer) Remove(now bool) (*Push, error) {
	if k.retired {
		return nil, ErrRetired
	}
	var inner []wire.Payload
	if now {
		inner = append(inner, &wire.Delete{Protocol: wire.ProtoESP, SPISize: 4, SPIs: [][]byte{u32(0)}})
	}
	inner = append(inner, &wire.Delete{Protocol: wire.ProtoGIKEUpdate, SPISize: 16, SPIs: [][]byte{make([]byte, 16)}})
	p, err := k.seal(inner)
	if err != nil {
		return nil, err
	}
	k.retired = true
	return p, nil
}

// seal signs (when the group has a rekey key) and encrypts one GSA_REKEY
// under the current Rekey SA and takes its Message ID.
func (k *Rekeyer) seal(inner []wire.Payload) (*Push, error) {
	if k.next == math.MaxUint32 {
		return nil, fmt.Errorf("gikev2: Message IDs of the Rekey SA exhausted (a new KEK is due)")
	}
	spi := k.group.KEK.SPI
	h := wire.Header{Exchange: wire.ExchangeGSARekey, Flags: wire.FlagInitiator, MessageID: k.next}
	copy(h.SPIi[:], spi[:8])
	copy(h.SPIr[:], spi[8:])
	if g := k.group; g.Signer != nil {
		alg, err := sigAlgOf(g.Signer.Public())
		if err != nil {
			return nil, err
		}
		// §2.4.1.1: the AUTH payload is formed with a zeroed signature
		// of the right length before signing. A DER ECDSA signature
		// varies in length by an octet or two: the target is its most
		// likely length (sigLen, half the signatures), and signing
		// repeats with a fresh random nonce until a signature has it.
		size := sigLen(g.Signer.Public())
		for try := 0; try < 64; try++ {
			auth := wire.NewSignatureAuth(alg.der, make([]byte, size))
			data, err := wire.RekeySignedData(h, append(append([]wire.Payload(nil), inner...), auth))
			if err != nil {
				return nil, err
			}
			sig, err := alg.sign(k.rand, g.Signer, data)
			if err != nil {
				return nil, err
			}
			if len(sig) == size {
				inner = append(inner, wire.NewSignatureAuth(alg.der, sig))
				break
			}
		}
		if _, ok := wire.Find(inner, wire.PayloadAUTH).(*wire.Auth); !ok {
			return nil, fmt.Errorf("gikev2: GSA_REKEY signature of unstable length")
		}
	}
	plain, err := wire.AppendPayloads(nil, inner)
	if err != nil {
		return nil, err
	}
	total := wire.HeaderLen + wire.GenericHeaderLen + k.c.SealedLen(len(plain))
	if total > wire.MaxMessageLen {
		return nil, fmt.Errorf("gikev2: GSA_REKEY of %d octets exceeds %d", total, wire.MaxMessageLen)
	}
	h.NextPayload, h.Length = wire.PayloadSK, uint32(total)
	prefix := h.Append(nil)
	prefix = append(prefix, byte(inner[0].Type()), 0, byte((total-wire.HeaderLen)>>8), byte(total-wire.HeaderLen))
	data, err := k.c.Seal(prefix, plain, k.rand)
	if err != nil {
		return nil, err
	}
	p := &Push{SPI: spi, MessageID: k.next, Data: data}
	k.next++
	return p, nil
}
