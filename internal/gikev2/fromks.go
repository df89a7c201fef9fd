package gikev2

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
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
// Sender-ID bits (ks.SIDBits).
func FromKS(srv *ks.Server, name string, now time.Time) (*Group, error) {
	st, err := srv.State(name, now)
	if err != nil {
		return nil, fmt.Errorf("gikev2: group %s: %w", name, err)
	}
	replay := map[uint32]uint16{}
	for _, s := range srv.Snapshot(now) {
		if s.Name == name {
			for _, t := range s.TEKs {
				replay[t.SPI] = t.Replay
			}
		}
	}
	g := &Group{ID: st.ID, ATD: ks.RekeyATD, DTD: ks.RekeyDTD, SIDBits: ks.SIDBits}
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

// GCKS is the G-IKEv2 key server over a ks.Server: registration decisions
// (authorization, member records, Sender-IDs) are ks's, as for GDOI
// members; the payloads and the GSA_REKEY messages are this package's. One
// Rekeyer per group carries the Message IDs of its Rekey SA. Sans-IO, owned
// by the node's loop like the ks.Server.
type GCKS struct {
	srv      *ks.Server
	rekeyers map[string]*Rekeyer
	rand     io.Reader
}

// NewGCKS returns the G-IKEv2 side of srv.
func NewGCKS(srv *ks.Server, r io.Reader) *GCKS {
	if r == nil {
		r = rand.Reader
	}
	return &GCKS{srv: srv, rekeyers: map[string]*Rekeyer{}, rand: r}
}

// groupByID finds the ks group of an IDg number.
func (k *GCKS) groupByID(id uint32, now time.Time) (string, bool) {
	for _, name := range k.srv.Groups() {
		if st, err := k.srv.State(name, now); err == nil && st.ID == id {
			return name, true
		}
	}
	return "", false
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
	g, err := FromKS(k.srv, name, now)
	if err != nil {
		return nil, err
	}
	if r := k.rekeyers[name]; r != nil && !r.retired && g.KEK != nil && r.group.KEK.SPI == g.KEK.SPI {
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
	if p := kd.Packet(isakmp.KDSID, nil); p != nil && req.Sender {
		for _, a := range p.Attributes {
			if a.Type == isakmp.SIDValue {
				if v, err := a.Uint(); err == nil {
					sids = append(sids, uint32(v))
				}
			}
		}
	}
	r, err := k.Rekeyer(name, now)
	if err != nil {
		return nil, err
	}
	if err := r.group.CheckSAg(req.SAg); err != nil {
		return nil, err
	}
	return r.group.Response(Registration{Request: req, KWK: kwk, SenderIDs: sids, NextMessageID: r.NextMessageID()}, now)
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
	next, err := FromKS(k.srv, name, now)
	if err != nil {
		return nil, nil, err
	}
	return r, next, nil
}
