package gikev2

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/keywrap"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Errors of a GM's receive paths (wrapped; Member.Stats counts each).
var (
	ErrMalformed = errors.New("gikev2: malformed")
	ErrUnknownSA = errors.New("gikev2: GSA_REKEY for no Rekey SA this member holds")
	ErrReplay    = errors.New("gikev2: GSA_REKEY Message ID replayed or stale")
	ErrResent    = errors.New("gikev2: GSA_REKEY retransmission of the last one accepted")
	ErrPolicy    = errors.New("gikev2: policy refused")
	ErrKeyWrap   = errors.New("gikev2: wrapped key does not unwrap")
)

// Stats counts what a Member dropped, by reason, and what it accepted
// (SPEC S5: every drop is visible).
type Stats struct {
	Accepted   uint64 // registrations and rekeys applied
	Malformed  uint64 // not a G-IKEv2 message or payload chain we accept
	UnknownSA  uint64 // GSA_REKEY under no Rekey SA we hold
	Integrity  uint64 // SK payload not verifying under the Rekey SA
	Replayed   uint64 // Message ID at or below the last accepted
	Resent     uint64 // the last accepted GSA_REKEY again (harmless)
	Signature  uint64 // AUTH missing, of another algorithm, or not verifying
	KeyWrap    uint64 // a wrapped key failing its integrity check
	Policy     uint64 // a policy or key download we refuse
	Refused    uint64 // registrations the GCKS refused (its notification)
	WrongGroup uint64 // refusals naming INVALID_GROUP_ID
}

// Counters lists the member's counters by stable snake_case names with
// what each counts (show crypto ikev2 statistics).
func (s Stats) Counters() []ikev2.Counter {
	return []ikev2.Counter{
		{Name: "accepted", Help: "registrations and rekeys applied", Value: s.Accepted},
		{Name: "malformed", Help: "not a G-IKEv2 message or payload chain we accept", Value: s.Malformed},
		{Name: "unknown_sa", Help: "GSA_REKEY under no Rekey SA we hold", Value: s.UnknownSA},
		{Name: "integrity", Help: "SK payload not verifying under the Rekey SA", Value: s.Integrity},
		{Name: "replayed", Help: "Message ID at or below the last accepted", Value: s.Replayed},
		{Name: "resent", Help: "the last accepted GSA_REKEY again (harmless)", Value: s.Resent},
		{Name: "signature", Help: "AUTH missing, of another algorithm, or not verifying", Value: s.Signature},
		{Name: "key_wrap", Help: "a wrapped key failing its integrity check", Value: s.KeyWrap},
		{Name: "policy", Help: "a policy or key download we refuse", Value: s.Policy},
		{Name: "refused", Help: "registrations the GCKS refused", Value: s.Refused},
		{Name: "wrong_group", Help: "refusals naming INVALID_GROUP_ID", Value: s.WrongGroup},
	}
}

// MaxRekeyLen bounds a GSA_REKEY datagram a member looks at.
const MaxRekeyLen = wire.MaxMessageLen

// MemberConfig is one group a GM registers to over G-IKEv2.
type MemberConfig struct {
	Name string // the group's name (sadb values)
	ID   uint32 // IDg
	// Sender asks for SenderIDs Sender-IDs; a non-sender installs the
	// TEKs receive-only.
	Sender    bool
	SenderIDs uint32
	// RekeyKey, if set, is the GCKS's rekey public key as configured: a
	// registration whose AUTH_KEY differs is refused.
	RekeyKey crypto.PublicKey
	// SAg sends SupportedSAg in the registration requests (RFC 9838
	// RECOMMENDS it; internal/ikev2 answers an SA payload in GSA_AUTH
	// with NO_PROPOSAL_CHOSEN as if it asked for a CHILD SA, so groupvpn
	// sends it in GSA_REGISTRATION: docs/gikev2.md).
	SAg bool
}

// rekeySA is a Rekey SA a member holds.
type rekeySA struct {
	spi     [16]byte
	suite   RekeySuite
	c       *ikev2.SKCipher
	kwk     KWK
	expires time.Time
}

// Member is the G-IKEv2 group member of one group, sans-IO: it builds its
// registration request and turns the GCKS's answers, GSA_INBAND_REKEY
// requests and GSA_REKEY datagrams into Updates, values for the SA
// database (sadb.TEK, sadb.PolicyEntry). Nothing unauthenticated changes it:
// a GSA_REKEY must verify under the Rekey SA, pass the Message ID filter
// (gm.SeqFilter) and verify its signature before anything is applied.
type Member struct {
	cfg MemberConfig
	// The group controller's authentication, fixed at registration
	// (§4.4.2.1.1: it "MUST NOT change as a result of rekey operations").
	gcauth uint16
	alg    sigAlg
	pub    crypto.PublicKey
	rekey  *rekeySA
	filter gm.SeqFilter
	sids   []uint32
	bits   int
	Stats  Stats
}

// NewMember returns the member of one group, not registered.
func NewMember(cfg MemberConfig) *Member { return &Member{cfg: cfg} }

// AuthRequest is the member's request in GSA_AUTH: IDg and N(GROUP_SENDER),
// no SAg (see MemberConfig.SAg).
func (m *Member) AuthRequest() Request {
	return Request{Group: m.cfg.ID, Sender: m.cfg.Sender, SenderIDs: m.cfg.SenderIDs}
}

// Request is the member's GSA_REGISTRATION request: AuthRequest's and, with
// MemberConfig.SAg, the SAg payload.
func (m *Member) Request() Request {
	r := Request{Group: m.cfg.ID, Sender: m.cfg.Sender, SenderIDs: m.cfg.SenderIDs}
	if m.cfg.SAg {
		r.SAg = SupportedSAg()
	}
	return r
}

// Leave is the GSA_REGISTRATION request of a GM leaving the group (§2.3.2:
// IDg and REGISTRATION_FAILED); the member forgets its Rekey SA.
func (m *Member) Leave() []wire.Payload {
	m.rekey = nil
	return Request{Group: m.cfg.ID, Leave: wire.NotifyRegistrationFailed}.Payloads()
}

// RekeySPI is the SPI of the Rekey SA the member holds (false: none).
func (m *Member) RekeySPI() ([16]byte, bool) {
	if m.rekey == nil {
		return [16]byte{}, false
	}
	return m.rekey.spi, true
}

// SenderIDs are the Sender-IDs of the last registration and their bits.
func (m *Member) SenderIDs() ([]uint32, int) { return m.sids, m.bits }

// Update is what one accepted registration, GSA_INBAND_REKEY or GSA_REKEY
// asks the GM to install and delete.
type Update struct {
	// TEKs to install (sadb values, the GDOI member's), and the group's
	// policy in GSA order (one Protect entry per TEK) when TEKs came.
	TEKs   []sadb.TEK
	Policy []sadb.PolicyEntry
	// NewKEK: a Rekey SA was installed (its SPI); rekeys now arrive under it.
	NewKEK    bool
	KEKSPI    [16]byte
	KEKExpiry time.Time
	// DeleteTEKs are SPIs to delete, DeleteAllTEKs every TEK of the group
	// (Delete with SPI 0), at Deactivate (now + GWP_DTD; now when 0).
	DeleteTEKs    []uint32
	DeleteAllTEKs bool
	Deactivate    time.Time
	// Excluded: the GCKS deleted the Rekey SA (GIKE_UPDATE, SPI 0 or its
	// SPI): the member is out of the group and registers again after a
	// random delay (§2.4.3).
	Excluded bool
	// RekeyDst is the new Rekey SA's multicast destination (the KEK
	// policy's Dst: one IPv4 multicast address and port): the member joins
	// it to receive multicast GSA_REKEYs. Invalid for unicast rekeys.
	RekeyDst netip.AddrPort
	// MessageID of the GSA_REKEY applied.
	MessageID uint32
	// Registration: from GSA_AUTH or GSA_REGISTRATION (it replaces what a
	// previous registration gave, §2.3.3), not a rekey.
	Registration bool
}

// Registered takes the GCKS's answer to a registration: the inner payloads
// of a GSA_AUTH response (after the SA layer verified IDr and AUTH) or of a
// GSA_REGISTRATION response, and the unicast IKE SA's default KWK
// (UnicastKWK). A refusal is a *RefusedError with the GCKS's notification.
// It replaces whatever a previous registration installed (§2.3.3).
func (m *Member) Registered(ps []wire.Payload, kwk KWK, now time.Time) (*Update, error) {
	u, err := m.apply(ps, kwk, true, now)
	m.count(err)
	return u, err
}

// Inband takes a GSA_INBAND_REKEY request (HDR, SK{GSA, KD, [N]} or SK{D,
// [N]}, §2.4.2) received over the unicast IKE SA; the member answers it
// with an empty response (SA.Respond(nil)).
func (m *Member) Inband(ps []wire.Payload, kwk KWK, now time.Time) (*Update, error) {
	u, err := m.apply(ps, kwk, false, now)
	m.count(err)
	return u, err
}

func (m *Member) count(err error) {
	var re *RefusedError
	switch {
	case err == nil:
		m.Stats.Accepted++
	case errors.Is(err, ErrResent):
		m.Stats.Resent++
	case errors.Is(err, ErrReplay):
		m.Stats.Replayed++
	case errors.Is(err, ErrUnknownSA):
		m.Stats.UnknownSA++
	case errors.Is(err, ErrIntegrity):
		m.Stats.Integrity++
	case errors.Is(err, ErrSignature):
		m.Stats.Signature++
	case errors.Is(err, ErrKeyWrap):
		m.Stats.KeyWrap++
	case errors.Is(err, ErrMalformed):
		m.Stats.Malformed++
	case errors.As(err, &re) && re.Notify == wire.NotifyInvalidGroupID:
		m.Stats.WrongGroup++
	case errors.As(err, &re):
		m.Stats.Refused++
	default:
		m.Stats.Policy++
	}
}

// Rekey takes a GSA_REKEY datagram (RFC 9838 §2.4.1): it must name the
// Rekey SA the member holds, verify under its keys, carry a Message ID
// above the last accepted (from GSA_INITIAL_MESSAGE_ID, gm.SeqFilter's
// rule), and a signature by the group's rekey key when GCAUTH is Digital
// Signature; only then are its policy and keys applied. Every refusal is
// counted in Stats and installs nothing.
func (m *Member) Rekey(pkt []byte, now time.Time) (*Update, error) {
	u, err := m.rekeyMsg(pkt, now)
	m.count(err)
	return u, err
}

func (m *Member) rekeyMsg(pkt []byte, now time.Time) (*Update, error) {
	if len(pkt) > MaxRekeyLen {
		return nil, fmt.Errorf("%w: %d octets", ErrMalformed, len(pkt))
	}
	msg, err := wire.Parse(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	h := msg.Header
	if h.Exchange != wire.ExchangeGSARekey || h.IsResponse() {
		return nil, fmt.Errorf("%w: exchange %s flags %s", ErrMalformed, h.Exchange, h.Flags)
	}
	var spi [16]byte
	copy(spi[:8], h.SPIi[:])
	copy(spi[8:], h.SPIr[:])
	rsa := m.rekey
	if rsa == nil || rsa.spi != spi {
		return nil, ErrUnknownSA
	}
	if !rsa.expires.IsZero() && !now.Before(rsa.expires) {
		return nil, fmt.Errorf("%w: the Rekey SA expired", ErrUnknownSA)
	}
	enc := msg.Encrypted()
	if enc == nil {
		return nil, fmt.Errorf("%w: no SK payload", ErrMalformed)
	}
	at, err := wire.EncryptedDataOffset(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	plain, err := rsa.c.Open(pkt, at)
	if err != nil {
		return nil, ErrIntegrity
	}
	// The Message ID is checked before the signature (as
	// gdoi.OpenPushChecked does): a replay costs a decryption, not a
	// verification. gm.SeqFilter accepts numbers above the last; G-IKEv2's
	// first Message ID of a Rekey SA is 0, so the filter sees ID+1.
	if h.MessageID == ^uint32(0) {
		return nil, fmt.Errorf("%w: Message ID 0xffffffff", ErrReplay)
	}
	digest := sha256.Sum256(pkt)
	switch m.filter.Check(spi, h.MessageID+1, digest) {
	case gm.SeqRetransmit:
		return nil, ErrResent
	case gm.SeqDuplicate, gm.SeqStale:
		return nil, fmt.Errorf("%w: Message ID %d, last accepted %d", ErrReplay, h.MessageID, int64(m.filter.Last(spi))-1)
	}
	inner, err := wire.ParseInner(enc.Inner, plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.checkSignature(h, inner); err != nil {
		return nil, err
	}
	// Authenticated from here on.
	u, err := m.apply(inner, rsa.kwk, false, now)
	if err != nil {
		return nil, err
	}
	m.filter.Accept(spi, h.MessageID+1, digest)
	u.MessageID = h.MessageID
	return u, nil
}

// checkSignature verifies the AUTH payload of a GSA_REKEY (§2.4.1.1) or its
// absence (Implicit).
func (m *Member) checkSignature(h wire.Header, inner []wire.Payload) error {
	var auth *wire.Auth
	n := 0
	for _, p := range inner {
		if a, ok := p.(*wire.Auth); ok {
			auth, n = a, n+1
		}
	}
	if m.gcauth != wire.GCAuthDigitalSignature {
		if n != 0 {
			return fmt.Errorf("%w: AUTH payload with Implicit authentication (RFC 9838 §4.4.2.1.1)", ErrSignature)
		}
		return nil
	}
	if n != 1 || inner[len(inner)-1] != wire.Payload(auth) {
		return fmt.Errorf("%w: %d AUTH payloads, or not the last", ErrSignature, n)
	}
	algID, sig, err := auth.Signature()
	if err != nil || !bytes.Equal(algID, m.alg.der) {
		return fmt.Errorf("%w: AUTH of another algorithm than the group's", ErrSignature)
	}
	zero, err := auth.WithZeroSignature()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	signed := append(append([]wire.Payload(nil), inner[:len(inner)-1]...), zero)
	data, err := wire.RekeySignedData(h, signed)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return m.alg.verify(m.pub, data, sig)
}

// apply checks and turns one GSA/KD/D chain into an Update and takes in its
// Rekey SA, authentication key and Sender-IDs. Nothing changes in m unless
// everything checks.
func (m *Member) apply(ps []wire.Payload, kwk KWK, registration bool, now time.Time) (*Update, error) {
	u := &Update{Registration: registration}
	var atd time.Duration
	var gsa *wire.GSA
	var kd *wire.KD
	for _, p := range ps {
		switch q := p.(type) {
		case *wire.GSA:
			if gsa != nil {
				return nil, fmt.Errorf("%w: two GSA payloads", ErrMalformed)
			}
			gsa = q
		case *wire.KD:
			if kd != nil {
				return nil, fmt.Errorf("%w: two KD payloads", ErrMalformed)
			}
			kd = q
		case *wire.Notify:
			if q.NotifyType.IsError() {
				return nil, &RefusedError{Notify: q.NotifyType, Err: errors.New("the GCKS refused the registration")}
			}
		case *wire.Delete:
			if err := u.delete(q, m.rekey); err != nil {
				return nil, err
			}
		}
	}
	if registration && (gsa == nil || kd == nil) {
		return nil, fmt.Errorf("%w: registration response without GSA and KD", ErrPolicy)
	}
	if (gsa == nil) != (kd == nil) {
		return nil, fmt.Errorf("%w: a GSA without a KD or the reverse", ErrPolicy)
	}
	gcauth, alg, pub := m.gcauth, m.alg, m.pub
	var newRekey *rekeySA
	var initialMID uint32
	var sids []uint32
	bits := m.bits
	if gsa != nil {
		// The member key bag (registration only, §4.5.3).
		if mb := kd.Bag(0, nil); mb != nil {
			if !registration {
				return nil, fmt.Errorf("%w: a member key bag outside registration (RFC 9838 §4.5.3)", ErrPolicy)
			}
			for _, a := range mb.Attributes {
				switch a.Type {
				case wire.KBWrapKey:
					return nil, fmt.Errorf("%w: WRAP_KEY (key hierarchies such as LKH) not supported", ErrPolicy)
				case wire.KBAuthKey:
					k, err := ParseAuthKey(a.Data)
					if err != nil {
						return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
					}
					pub = k
				case wire.KBGMSenderID:
					if len(a.Data) != 4 {
						return nil, fmt.Errorf("%w: GM_SENDER_ID of %d octets (groupvpn sends 4)", ErrPolicy, len(a.Data))
					}
					if len(sids) == MaxSenderIDs {
						return nil, fmt.Errorf("%w: more than %d Sender-IDs", ErrPolicy, MaxSenderIDs)
					}
					sids = append(sids, binary.BigEndian.Uint32(a.Data))
				}
			}
		}
		if gw := gsa.GW(); gw != nil {
			for _, a := range gw.Attributes {
				switch a.Type {
				case wire.GWPATD:
					if !registration {
						atd = time.Duration(a.Value) * time.Second
					}
				case wire.GWPDTD:
					u.Deactivate = now.Add(time.Duration(a.Value) * time.Second)
				case wire.GWPSenderIDBits:
					if !registration {
						return nil, fmt.Errorf("%w: GWP_SENDER_ID_BITS in a rekey", ErrPolicy)
					}
					if a.Value == 0 || a.Value > 32 {
						return nil, fmt.Errorf("%w: GWP_SENDER_ID_BITS %d", ErrPolicy, a.Value)
					}
					bits = int(a.Value)
				}
			}
		}
		if registration {
			if len(sids) > 0 && bits == 0 {
				return nil, fmt.Errorf("%w: GM_SENDER_ID without GWP_SENDER_ID_BITS", ErrPolicy)
			}
			for _, s := range sids {
				if bits < 32 && s >= 1<<bits {
					return nil, fmt.Errorf("%w: Sender-ID %d does not fit %d bits (RFC 9838 §2.5.2)", ErrPolicy, s, bits)
				}
			}
		} else {
			// The Sender-IDs of the registration, laid out at 32 bits
			// (the same IVs): the GCKS may give the new keys' registrants
			// wider IDs than these (ks widens them with the group,
			// docs/wire.md), and the member tells senders apart by the
			// IV's top 32 bits then.
			sids, bits = carriedSIDs(m.sids, m.bits)
		}
		if kek := gsa.KEK(); kek != nil {
			r, a, c, p, initial, err := m.kekFrom(kek, kd, kwk, registration, pub, now)
			if err != nil {
				return nil, err
			}
			newRekey, gcauth, alg, pub, initialMID = r, a, c, p, initial
			u.NewKEK, u.KEKSPI, u.KEKExpiry = true, r.spi, r.expires
			if d := kek.Dst; d.Start.IsValid() && d.Start == d.End && d.Start.IsMulticast() && d.StartPort == d.EndPort && d.StartPort != 0 {
				u.RekeyDst = netip.AddrPortFrom(d.Start, d.StartPort)
			}
		} else if registration {
			return nil, fmt.Errorf("%w: registration without a GSA KEK policy (groupvpn GMs need the Rekey SA)", ErrPolicy)
		}
		for _, p := range gsa.TEKs() {
			t, err := m.tekFrom(p, kd, kwk, sids, bits, now)
			if err != nil {
				return nil, err
			}
			t.SendFrom = now.Add(atd) // §4.4.3.1.1: senders wait ATD; receivers accept at once
			u.TEKs = append(u.TEKs, t)
			u.Policy = append(u.Policy, sadb.PolicyEntry{Action: sadb.Protect, IPProto: t.IPProto, Src: t.Src, Dst: t.Dst, SrcPort: t.SrcPort, DstPort: t.DstPort, SPI: t.SPI})
		}
		if registration && len(u.TEKs) == 0 {
			return nil, fmt.Errorf("%w: no TEK policy", ErrPolicy)
		}
	}
	if u.Deactivate.IsZero() {
		u.Deactivate = now
	}
	if m.cfg.Sender && len(sids) == 0 {
		for i := range u.TEKs {
			if u.TEKs[i].AuthKey == nil {
				// §2.4.1.4: "it MUST NOT install the Data-Security SAs"
				// and re-registers.
				return nil, fmt.Errorf("%w: a counter-mode TEK and no Sender-ID for this sender", ErrPolicy)
			}
		}
	}
	// Everything checked: take it in.
	if registration {
		m.sids, m.bits = sids, bits
	}
	m.gcauth, m.alg, m.pub = gcauth, alg, pub
	if newRekey != nil {
		m.rekey = newRekey
		// Message IDs on the new Rekey SA: from GSA_INITIAL_MESSAGE_ID,
		// or 0 (the filter sees ID+1: Advance(initial) accepts >= initial).
		m.filter.Reset(newRekey.spi)
		if initialMID > 0 {
			m.filter.Advance(newRekey.spi, initialMID)
		}
	}
	if u.Excluded {
		m.rekey = nil
	}
	return u, nil
}

// delete reads one Delete payload of a rekey (§2.4.3).
func (u *Update) delete(d *wire.Delete, cur *rekeySA) error {
	switch d.Protocol {
	case wire.ProtoGIKEUpdate:
		for _, s := range d.SPIs {
			if len(s) != 16 {
				return fmt.Errorf("%w: GIKE_UPDATE Delete SPI of %d octets", ErrMalformed, len(s))
			}
			if bytes.Equal(s, make([]byte, 16)) || (cur != nil && bytes.Equal(s, cur.spi[:])) {
				u.Excluded = true
			}
		}
	case wire.ProtoESP, wire.ProtoAH:
		for _, s := range d.SPIs {
			if len(s) != 4 {
				return fmt.Errorf("%w: ESP Delete SPI of %d octets", ErrMalformed, len(s))
			}
			spi := binary.BigEndian.Uint32(s)
			if spi == 0 {
				u.DeleteAllTEKs = true
			} else if len(u.DeleteTEKs) < 256 {
				u.DeleteTEKs = append(u.DeleteTEKs, spi)
			}
		}
	case 0:
		// "zero protocol indicates deletion of whole Group SA" (§4.6).
		u.DeleteAllTEKs, u.Excluded = true, true
	}
	return nil
}

// saKey unwraps the one SA_KEY of the key bag of (proto, spi).
func saKey(kd *wire.KD, proto wire.ProtocolID, spi []byte, kwk KWK, want int) ([]byte, error) {
	bag := kd.Bag(proto, spi)
	if bag == nil {
		return nil, fmt.Errorf("%w: no key bag for %s SPI %x", ErrPolicy, proto, spi)
	}
	var keys []wire.WrappedKey
	for _, w := range bag.WrappedKeys() {
		if w.KWKID == 0 {
			keys = append(keys, w)
		}
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("%w: %d SA_KEY attributes under the default KWK for %s SPI %x (one)", ErrPolicy, len(keys), proto, spi)
	}
	k, err := kwk.Unwrap(keys[0].Encrypted)
	if err != nil {
		if errors.Is(err, keywrap.ErrIntegrity) {
			return nil, fmt.Errorf("%w: %s SPI %x: %v", ErrKeyWrap, proto, spi, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if len(k) != want {
		clear(k)
		return nil, fmt.Errorf("%w: %s SPI %x keying material of %d octets (want %d)", ErrPolicy, proto, spi, len(k), want)
	}
	return k, nil
}

func lifetimeOf(as wire.Attributes, now time.Time) (time.Time, time.Duration) {
	if a, ok := as.Get(wire.GSAKeyLifetime); ok && len(a.Data) == 4 {
		d := time.Duration(binary.BigEndian.Uint32(a.Data)) * time.Second
		return now.Add(d), d
	}
	return time.Time{}, 0
}

func (m *Member) kekFrom(p *wire.GroupPolicy, kd *wire.KD, kwk KWK, registration bool, pub crypto.PublicKey, now time.Time) (*rekeySA, uint16, sigAlg, crypto.PublicKey, uint32, error) {
	fail := func(format string, args ...any) (*rekeySA, uint16, sigAlg, crypto.PublicKey, uint32, error) {
		return nil, 0, sigAlg{}, nil, 0, fmt.Errorf("%w: GSA KEK policy: %s", ErrPolicy, fmt.Sprintf(format, args...))
	}
	if err := p.Check(registration); err != nil {
		return fail("%v", err)
	}
	enc := p.Transform(wire.TransformENCR)
	s := RekeySuite{Encr: enc.ID, KeyBits: int(enc.KeyLength()), KWA: p.Transform(wire.TransformKWA).ID}
	if i := p.Transform(wire.TransformINTEG); i != nil {
		s.Integ = i.ID
	}
	if err := s.Validate(); err != nil {
		return fail("%v", err)
	}
	gcauth, alg := m.gcauth, m.alg
	if registration {
		gc := p.Transform(wire.TransformGCAUTH)
		gcauth = gc.ID
		switch gc.ID {
		case wire.GCAuthImplicit:
			pub = nil
		case wire.GCAuthDigitalSignature:
			der, _ := gc.SignatureAlgorithm()
			a, ok := sigAlgByDER(der)
			if !ok {
				return fail("signature algorithm %x not supported", der)
			}
			if pub == nil {
				return fail("Digital Signature without AUTH_KEY (RFC 9838 §4.5.3.2)")
			}
			if k, err := sigAlgOf(pub); err != nil || !bytes.Equal(k.der, a.der) {
				return fail("AUTH_KEY does not match the Signature Algorithm Identifier")
			}
			if m.cfg.RekeyKey != nil {
				if eq, ok := m.cfg.RekeyKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
					return fail("AUTH_KEY is not the configured rekey key")
				}
			}
			alg = a
		default:
			return fail("GCAUTH %d not supported", gc.ID)
		}
	}
	var spi [16]byte
	copy(spi[:], p.SPI)
	keymat, err := saKey(kd, wire.ProtoGIKEUpdate, p.SPI, kwk, s.KeymatLen())
	if err != nil {
		return nil, 0, sigAlg{}, nil, 0, err
	}
	c, rkwk, err := newSKCipher(s, keymat)
	clear(keymat)
	if err != nil {
		return fail("%v", err)
	}
	exp, _ := lifetimeOf(p.Attributes, now)
	var initial uint32
	if a, ok := p.Attributes.Get(wire.GSAInitialMessageID); ok && len(a.Data) == 4 {
		initial = binary.BigEndian.Uint32(a.Data)
	}
	// §2.3.3: an initial Message ID below what this member already
	// accepted under the same Rekey SA is stale (two registrations racing).
	if m.rekey != nil && m.rekey.spi == spi && initial < m.filter.Last(spi) {
		initial = m.filter.Last(spi)
	}
	return &rekeySA{spi: spi, suite: s, c: c, kwk: rkwk, expires: exp}, gcauth, alg, pub, initial, nil
}

// prefixOf is the prefix a range selector covers exactly.
func prefixOf(ts wire.TrafficSelector) (netip.Prefix, error) {
	if !ts.Start.IsValid() {
		return netip.Prefix{}, fmt.Errorf("selector type %d", ts.TSType)
	}
	for bits := 0; bits <= ts.Start.BitLen(); bits++ {
		p := netip.PrefixFrom(ts.Start, bits).Masked()
		if p.Addr() == ts.Start && wire.PrefixTS(p).End == ts.End {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("range %s-%s is not a prefix", ts.Start, ts.End)
}

func portOf(ts wire.TrafficSelector) (uint16, error) {
	switch {
	case ts.StartPort == 0 && ts.EndPort == 0xffff:
		return 0, nil
	case ts.StartPort == ts.EndPort:
		return ts.StartPort, nil
	}
	return 0, fmt.Errorf("port range %d-%d", ts.StartPort, ts.EndPort)
}

// carriedSIDs lays out Sender-IDs of bits bits at 32 bits with the same IV
// octets (ID << (32 - bits)); gm.carriedSIDs does the same for GDOI.
func carriedSIDs(sids []uint32, bits int) ([]uint32, int) {
	if bits < 1 || bits >= 32 || len(sids) == 0 {
		return sids, bits
	}
	out := make([]uint32, len(sids))
	for i, id := range sids {
		out[i] = id << (32 - bits)
	}
	return out, 32
}

func (m *Member) tekFrom(p *wire.GroupPolicy, kd *wire.KD, kwk KWK, sids []uint32, bits int, now time.Time) (sadb.TEK, error) {
	t := sadb.TEK{Group: m.cfg.Name, GroupID: m.cfg.ID, Protocol: isakmp.TEKProtoESP, Installed: now, SendFrom: now}
	fail := func(format string, args ...any) (sadb.TEK, error) {
		return t, fmt.Errorf("%w: TEK %x: %s", ErrPolicy, p.SPI, fmt.Sprintf(format, args...))
	}
	if p.Protocol != wire.ProtoESP {
		return fail("protocol %s (ESP only)", p.Protocol)
	}
	if err := p.Check(false); err != nil {
		return fail("%v", err)
	}
	t.SPI = binary.BigEndian.Uint32(p.SPI)
	enc := p.Transform(wire.TransformENCR)
	esp, ok := espOf(enc.ID)
	if !ok {
		return fail("encryption %s not supported", wire.TransformIDName(wire.TransformENCR, enc.ID))
	}
	t.Transform, t.KeyBits = uint8(esp), int(enc.KeyLength())
	integ := wire.IntegNone
	if i := p.Transform(wire.TransformINTEG); i != nil {
		integ = i.ID
	}
	auth, ok := authOf(integ)
	if !ok || (esp == isakmp.ESPAESCBC) != (integ != wire.IntegNone) {
		return fail("integrity %s with %s not supported", wire.TransformIDName(wire.TransformINTEG, integ), esp)
	}
	t.AuthAlg = auth
	switch p.Transform(wire.TransformSN).ID {
	case wire.SN32Bit:
		t.ReplayMethod, t.ReplayWindow = isakmp.ReplayCounter, 64
	case wire.SN32BitUnspecified:
		t.ReplayMethod = isakmp.ReplayNone
	default:
		return fail("sequence numbers %d (RFC 9838 §4.4.2.1.3: not 64-bit for multicast)", p.Transform(wire.TransformSN).ID)
	}
	if p.Src.IPProtocol != p.Dst.IPProtocol {
		return fail("source and destination protocols differ")
	}
	t.IPProto = p.Src.IPProtocol
	var err error
	if t.Src, err = prefixOf(p.Src); err != nil {
		return fail("source: %v", err)
	}
	if t.Dst, err = prefixOf(p.Dst); err != nil {
		return fail("destination: %v", err)
	}
	if t.SrcPort, err = portOf(p.Src); err != nil {
		return fail("source: %v", err)
	}
	if t.DstPort, err = portOf(p.Dst); err != nil {
		return fail("destination: %v", err)
	}
	t.Expires, t.Lifetime = lifetimeOf(p.Attributes, now)
	if t.Expires.IsZero() {
		t.Lifetime = 3600 * time.Second // §4.4.2.2.1: absent with inband rekey; groupvpn's default
		t.Expires = now.Add(t.Lifetime)
	}
	t.Configured = t.Lifetime
	n := tekKeymatLen(enc.ID, t.KeyBits, integ)
	if n < 0 {
		return fail("keys of %s/%d", esp, t.KeyBits)
	}
	keymat, err := saKey(kd, wire.ProtoESP, p.SPI, kwk, n)
	if err != nil {
		return t, err
	}
	e := t.KeyBits / 8
	if esp != isakmp.ESPAESCBC {
		e += 4
	}
	t.EncKey = keymat[:e]
	if e < len(keymat) {
		t.AuthKey = keymat[e:]
	}
	if t.AuthKey == nil && m.cfg.Sender {
		t.SenderIDs, t.SIDBits = sids, bits
	}
	t.ReceiveOnly = !m.cfg.Sender
	return t, nil
}
