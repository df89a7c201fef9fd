package gikev2

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/isakmp"
)

// rekeySALabel seeds the keying material of the G-IKEv2 Rekey SA a GCKS
// derives from the group's KEK (docs/gikev2.md): the group has one KEK,
// owned by ks; its GDOI form keys GROUPKEY-PUSH, and
//
//	KEYMAT = prf+(HMAC-SHA-256, KEK key, "groupvpn G-IKEv2 Rekey SA" | SPI)
//
// keys the G-IKEv2 Rekey SA of the same SPI (GSK_e | GSK_a | GSK_w). How a
// GCKS makes its keys is its own choice (RFC 9838 §3); the GMs receive the
// keying material wrapped, never derive it.
const rekeySALabel = "groupvpn G-IKEv2 Rekey SA"

// RekeySuiteFor is the Rekey SA protection groupvpn offers for a KEK of
// keyBits: AES-GCM-16 of that key length, KW_5649_256.
func RekeySuiteFor(keyBits int) RekeySuite {
	if keyBits == 0 {
		keyBits = 128
	}
	return RekeySuite{Encr: wire.EncrAESGCM16, KeyBits: keyBits, Integ: wire.IntegNone, KWA: DefaultKWA}
}

// FromKS returns the G-IKEv2 values of ks group name: its TEKs (the same
// keys GDOI members get: one key set, one owner), its Rekey SA keyed from
// the KEK, its rekey signing key, ATD/DTD (ks.RekeyATD, ks.RekeyDTD) and
// Sender-ID bits (ks.Server.SIDBits). It reads ks.Server.KeysState (the
// keys without the members), when ks's keys change (keysOf).
func FromKS(srv *ks.Server, name string, now time.Time) (*Group, error) {
	snap, ok := snapshotOf(srv.SnapshotOf(now, false), func(s *ks.GroupSnapshot) bool { return s.Name == name })
	if !ok {
		return nil, fmt.Errorf("gikev2: group %s: no such ks group", name)
	}
	g, err := fromKS(srv, snap, now)
	if err != nil {
		return nil, err
	}
	return g.at(now), nil
}

// snapshotOf is the snapshot match picks.
func snapshotOf(snaps []ks.GroupSnapshot, match func(*ks.GroupSnapshot) bool) (*ks.GroupSnapshot, bool) {
	for i := range snaps {
		if match(&snaps[i]) {
			return &snaps[i], true
		}
	}
	return nil, false
}

// fromKS builds group snap.Name from ks's keys (State) and snap's TEK
// policies, with the TEKs not expired at now.
func fromKS(srv *ks.Server, snap *ks.GroupSnapshot, now time.Time) (*Group, error) {
	name := snap.Name
	st, err := srv.KeysState(name, now)
	if err != nil {
		return nil, fmt.Errorf("gikev2: group %s: %w", name, err)
	}
	replay := map[uint32]uint16{}
	for _, t := range snap.TEKs {
		replay[t.SPI] = t.Replay
	}
	g := &Group{ID: st.ID, ATD: ks.RekeyATD, DTD: ks.RekeyDTD, SIDBits: srv.SIDBits(name)}
	if len(st.SigningKey) > 0 {
		k, err := x509.ParsePKCS8PrivateKey(st.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("gikev2: group %s rekey key: %w", name, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("gikev2: group %s rekey key of type %T", name, k)
		}
		if _, err := sigAlgOf(s.Public()); err != nil {
			return nil, err
		}
		g.Signer = s
	}
	if len(st.KEK.Key) > 0 {
		suite := RekeySuiteFor(st.KEK.KeyBits)
		keymat, err := ikev2.PRFPlus(sha256.New, st.KEK.Key, append([]byte(rekeySALabel), st.KEK.SPI[:]...), suite.KeymatLen())
		if err != nil {
			return nil, err
		}
		// Rekeys come from the group's KS address, UDP 848, and go to the
		// multicast group (or to each GM: any address).
		src := wire.PrefixTS(netip.MustParsePrefix("0.0.0.0/0"))
		if a := srv.Address(name); a.IsValid() {
			src = wire.PrefixTS(netip.PrefixFrom(a, a.BitLen()))
		}
		src.IPProtocol, src.StartPort, src.EndPort = 17, 848, 848
		dst := wire.PrefixTS(netip.MustParsePrefix("0.0.0.0/0"))
		if mc := srv.RekeyPolicy(name).Multicast; mc.IsValid() {
			dst = wire.PrefixTS(netip.PrefixFrom(mc.Addr(), mc.Addr().BitLen()))
			dst.StartPort, dst.EndPort = mc.Port(), mc.Port()
		}
		dst.IPProtocol = 17
		g.KEK = &KEK{SPI: st.KEK.SPI, Suite: suite, Keymat: keymat, Src: src, Dst: dst, Expires: st.KEK.Expires}
	}
	for _, t := range st.TEKs {
		if !t.Expires.After(now) {
			continue
		}
		encr, err := encrOf(isakmp.ESPTransform(t.Transform))
		if err != nil {
			return nil, err
		}
		integ, err := integOf(t.AuthAlg)
		if err != nil {
			return nil, err
		}
		sn := wire.SN32BitUnspecified
		if replay[t.SPI] == isakmp.ReplayCounter {
			sn = wire.SN32Bit
		}
		g.TEKs = append(g.TEKs, TEK{SPI: t.SPI, Encr: encr, KeyBits: t.KeyBits, Integ: integ, SN: sn,
			Selector: ks.Selector{Proto: t.Proto, Src: t.Src, Dst: t.Dst, SrcPort: t.SrcPort, DstPort: t.DstPort},
			Keymat:   append(append([]byte(nil), t.EncKey...), t.AuthKey...), Expires: t.Expires, Lifetime: t.Lifetime})
	}
	return g, nil
}

// at is g with the TEKs not expired at now (g itself when none is).
func (g *Group) at(now time.Time) *Group {
	for i := range g.TEKs {
		if !g.TEKs[i].Expires.After(now) {
			c := *g
			c.TEKs = nil
			for _, t := range g.TEKs {
				if t.Expires.After(now) {
					c.TEKs = append(c.TEKs, t)
				}
			}
			return &c
		}
	}
	return g
}

// keysVersion is what a Group is built from, as a members-free ks
// snapshot shows it: ks makes new keys (rekey, policy replace, GM removal,
// COOP adoption, restore) with a new KEK SPI, new TEK SPIs or a new
// sequence number, and a new rekey key with a new KEK; the KS address and
// rekey destination are configuration, read in O(1).
type keysVersion struct {
	id, seq uint32
	kekSPI  [isakmp.KEKSPILen]byte
	kekExp  int64
	kekBits int
	sigAlg  isakmp.SigAlg
	src     netip.Addr
	dst     netip.AddrPort
	teks    string // per TEK: SPI, expiry, transform, key length, integrity, replay
}

func versionOf(srv *ks.Server, s *ks.GroupSnapshot) keysVersion {
	v := keysVersion{id: s.ID, seq: s.Seq, kekSPI: s.KEKSPI, kekExp: s.KEKExpire.UnixNano(), kekBits: s.KEKBits, sigAlg: s.SigAlg,
		src: srv.Address(s.Name), dst: srv.RekeyPolicy(s.Name).Multicast}
	var b []byte
	for _, t := range s.TEKs {
		b = binary.BigEndian.AppendUint32(b, t.SPI)
		b = binary.BigEndian.AppendUint64(b, uint64(t.Expires.UnixNano()))
		b = binary.BigEndian.AppendUint64(b, uint64(t.Lifetime))
		b = append(b, byte(t.Transform))
		b = binary.BigEndian.AppendUint32(b, uint32(t.KeyBits))
		b = binary.BigEndian.AppendUint16(b, t.AuthAlg)
		b = binary.BigEndian.AppendUint16(b, t.Replay)
	}
	v.teks = string(b)
	return v
}

// cachedGroup is a Group built from ks's keys and the version it was
// built from.
type cachedGroup struct {
	version keysVersion
	group   *Group
}

// GCKS is the G-IKEv2 key server over a ks.Server: registration decisions
// (authorization, member records, Sender-IDs) are ks's, as for GDOI
// members; the payloads and the GSA_REKEY messages are this package's. One
// Rekeyer per group carries the Message IDs of its Rekey SA. Sans-IO, owned
// by the node's loop like the ks.Server.
type GCKS struct {
	srv      *ks.Server
	rekeyers map[string]*Rekeyer
	// groups are the Groups built from ks's keys, by ks group name: a
	// registration reads a members-free ks snapshot (O(groups)), and the
	// ks.Server.KeysState only when the keys changed (issue
	// 18: a State per registration made each one cost O(members)).
	groups map[string]*cachedGroup
	rand   io.Reader
}

// NewGCKS returns the G-IKEv2 side of srv.
func NewGCKS(srv *ks.Server, r io.Reader) *GCKS {
	if r == nil {
		r = rand.Reader
	}
	return &GCKS{srv: srv, rekeyers: map[string]*Rekeyer{}, groups: map[string]*cachedGroup{}, rand: r}
}

// groupByID finds the ks group of an IDg number (a members-free
// snapshot: O(groups)).
func (k *GCKS) groupByID(id uint32, now time.Time) (string, bool) {
	s, ok := snapshotOf(k.srv.SnapshotOf(now, false), func(s *ks.GroupSnapshot) bool { return s.ID == id })
	if !ok {
		return "", false
	}
	return s.Name, true
}

// group is the Group of ks group name at now: the one built before while
// ks's keys are the same (keysVersion), built again from ks.Server.KeysState
// otherwise.
func (k *GCKS) group(name string, now time.Time) (*Group, error) {
	snap, ok := snapshotOf(k.srv.SnapshotOf(now, false), func(s *ks.GroupSnapshot) bool { return s.Name == name })
	if !ok {
		delete(k.groups, name)
		return nil, fmt.Errorf("gikev2: group %s: no such ks group", name)
	}
	v := versionOf(k.srv, snap)
	if c := k.groups[name]; c != nil && c.version == v {
		return c.group.at(now), nil
	}
	g, err := fromKS(k.srv, snap, now)
	if err != nil {
		delete(k.groups, name)
		return nil, err
	}
	k.groups[name] = &cachedGroup{version: v, group: g}
	return g, nil
}

// Rekeyer returns the Rekeyer of group name for its current KEK (a new one,
// from Message ID 0, when ks's KEK is not the one it had).
func (k *GCKS) Rekeyer(name string, now time.Time) (*Rekeyer, error) {
	return k.rekeyerFrom(name, 0, now)
}

// Resume restarts group name's Rekeyer at Message ID next under ks's
// current KEK, after a restart: the owner saved NextMessageID (write before
// send) with the group, and GMs drop Message IDs they already accepted.
func (k *GCKS) Resume(name string, next uint32, now time.Time) error {
	delete(k.rekeyers, name)
	_, err := k.rekeyerFrom(name, next, now)
	return err
}

// NextMessageIDs are the next GSA_REKEY Message IDs of the groups with a
// Rekey SA in use, for the owner to persist.
func (k *GCKS) NextMessageIDs() map[string]uint32 {
	out := map[string]uint32{}
	for name, r := range k.rekeyers {
		if !r.retired {
			out[name] = r.next
		}
	}
	return out
}

func (k *GCKS) rekeyerFrom(name string, next uint32, now time.Time) (*Rekeyer, error) {
	g, err := k.group(name, now)
	if err != nil {
		return nil, err
	}
	if r := k.rekeyers[name]; r != nil && !r.retired && g.KEK != nil && r.group.KEK != nil && r.group.KEK.SPI == g.KEK.SPI {
		return r, nil
	}
	r, err := NewRekeyer(g, next, k.rand)
	if err != nil {
		return nil, err
	}
	k.rekeyers[name] = r
	return r, nil
}

// Register answers one registration (the payloads of a GSA_AUTH or
// GSA_REGISTRATION response) of peer, authenticated by the unicast IKE SA
// whose default KWK is kwk. A refusal is a *RefusedError naming the
// notification to send (Refusal(err) is its payload chain):
// INVALID_GROUP_ID for a group this GCKS does not serve,
// AUTHORIZATION_FAILED for a peer `authorization` refuses,
// REGISTRATION_FAILED otherwise.
func (k *GCKS) Register(peer ks.Peer, req Request, kwk KWK, now time.Time) ([]wire.Payload, error) {
	name, ok := k.groupByID(req.Group, now)
	if !ok {
		return nil, refuse(wire.NotifyInvalidGroupID, "no group with identity number %d", req.Group)
	}
	if req.Leave != 0 {
		// §2.3.2: answered HDR, SK{}; ks has no single-member removal
		// yet (docs/gikev2.md), the member leaves its rekey list when
		// it misses rekeys.
		return nil, nil
	}
	id := isakmp.GroupID(req.Group)
	if _, err := k.srv.Join(peer, id, now); err != nil {
		var rf *gdoi.Refusal
		if errors.As(err, &rf) && rf.Notify == isakmp.NotifyAuthenticationFailed {
			return nil, &RefusedError{Notify: wire.NotifyAuthorizationFailed, Err: err}
		}
		return nil, &RefusedError{Notify: wire.NotifyRegistrationFailed, Err: err}
	}
	_, kd, err := k.srv.Keys(peer, id, uint16(max(req.SenderIDs, 1)), now)
	if err != nil {
		return nil, &RefusedError{Notify: wire.NotifyRegistrationFailed, Err: err}
	}
	var sids []uint32
	bits := 0
	if p := kd.Packet(isakmp.KDSID, nil); p != nil && req.Sender {
		for _, a := range p.Attributes {
			switch a.Type {
			case isakmp.SIDValue:
				if v, err := a.Uint(); err == nil {
					sids = append(sids, uint32(v))
				}
			case isakmp.SIDNumberOfBits:
				if v, err := a.Uint(); err == nil {
					bits = int(v)
				}
			}
		}
	}
	r, err := k.Rekeyer(name, now)
	if err != nil {
		return nil, err
	}
	// The answer is built from ks's keys as they are now, not from the
	// Rekeyer's group (what the last rekey pushed): Join may just have
	// replaced a TEK near its end (ks's refresh), and a new key may start
	// a wider generation of Sender-IDs. The width told is the one ks
	// allocated these IDs at (its SID key packet): a member told a
	// narrower one than its IDs were allocated at puts a prefix of another
	// member's IV in its own (identical GCM nonces).
	g, err := k.group(name, now)
	if err != nil {
		return nil, err
	}
	if bits != 0 && bits != g.SIDBits {
		c := *g
		c.SIDBits = bits
		g = &c
	}
	if err := g.CheckSAg(req.SAg); err != nil {
		return nil, err
	}
	return g.Response(Registration{Request: req, KWK: kwk, SenderIDs: sids, NextMessageID: r.NextMessageID()}, now)
}

// Rekey builds the GSA_REKEY of group name after ks advanced its keys
// (ks.Server.Rekey): the new TEKs and, when ks made a new KEK, the new
// Rekey SA, under the current one.
func (k *GCKS) Rekey(name string, now time.Time) (*Push, error) {
	r, next, err := k.current(name, now)
	if err != nil {
		return nil, err
	}
	return r.Rekey(next, RekeyOptions{}, now)
}

// Replace builds the policy-replace GSA_REKEY (SPEC P2-P4) after
// ks.Server.ReplaceRekey: the new policy with its new KEK, and a Delete of
// every old TEK the GMs hold. replaceNow: the GMs delete the old TEKs (and,
// the KEK being new, the old Rekey SA) at once (DTD 0, P4); otherwise after
// GWP_DTD = TEK_SLT, the shortest of gm.ShortenedLifetime over the old TEKs
// (P3: GMs keep the old SAs that long).
func (k *GCKS) Replace(name string, replaceNow bool, now time.Time) (*Push, error) {
	r, next, err := k.current(name, now)
	if err != nil {
		return nil, err
	}
	o := RekeyOptions{DTD: -1}
	var spis [][]byte
	for _, t := range r.group.TEKs {
		spis = append(spis, u32(t.SPI))
		if !replaceNow {
			slt := gm.ShortenedLifetime(t.Expires.Sub(now), t.Lifetime)
			if o.DTD < 0 || slt < o.DTD {
				o.DTD = slt
			}
		}
	}
	if o.DTD == 0 {
		o.DTD = -1
	}
	if len(spis) > 0 {
		o.Deletes = []*wire.Delete{{Protocol: wire.ProtoESP, SPISize: 4, SPIs: spis}}
	}
	return r.Rekey(next, o, now)
}

// Remove builds the GM-removal GSA_REKEY (SPEC R1, R4) under the Rekey SA
// the members hold; call it before ks.Server.Remove makes the new keys
// (or keep the Rekeyer from before). The next registration starts a new
// Rekey SA.
func (k *GCKS) Remove(name string, now bool) (*Push, error) {
	r := k.rekeyers[name]
	if r == nil {
		return nil, fmt.Errorf("gikev2: group %s has no Rekey SA with members", name)
	}
	p, err := r.Remove(now)
	delete(k.rekeyers, name)
	return p, err
}

func (k *GCKS) current(name string, now time.Time) (*Rekeyer, *Group, error) {
	r := k.rekeyers[name]
	if r == nil {
		return nil, nil, fmt.Errorf("gikev2: group %s has no Rekey SA with members", name)
	}
	next, err := k.group(name, now)
	if err != nil {
		return nil, nil, err
	}
	return r, next, nil
}
