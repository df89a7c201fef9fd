package gikev2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/isakmp"
)

// registered returns a ks.Server, its GCKS and a registered sender GM.
func registered(t testing.TB, signer interface{}) (*ks.Server, *GCKS, *Member) {
	t.Helper()
	srv := keyServer(t, signer)
	gcks := NewGCKS(srv, nil)
	m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
	register(t, srv, gcks, m)
	return srv, gcks, m
}

// rekeyAt advances ks's keys (a scheduled rekey) and builds the G-IKEv2
// GSA_REKEY of them.
func rekeyAt(t testing.TB, srv *ks.Server, gcks *GCKS, now time.Time) *Push {
	t.Helper()
	if _, err := srv.Rekey("G", now); err != nil {
		t.Fatal(err)
	}
	p, err := gcks.Rekey("G", now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proves: G2 (issue 17: GSA_REKEY of RFC 9838 §2.4.1, GCKS to GMs
// HDR, SK{GSA, KD, [N,] [AUTH]}: built once from ks's next keys, signed
// (ECDSA and RSA, RFC 7427 over A | P), encrypted under the Rekey SA, the
// first Message ID 0; the GM installs ks's new TEK keys; a retransmission is
// bitwise identical and counted as such, not applied twice; issue 18 F4:
// the member's Sender-IDs go on in the new keys at 32 bits, same IVs)
func TestRekeyStepsRFC9838(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, signer := range map[string]interface{}{"ecdsa-p256": nil, "ecdsa-p384": p384, "rsa": rsaKey} {
		t.Run(name, func(t *testing.T) {
			srv, gcks, m := registered(t, signer)
			now := t0.Add(50 * time.Minute)
			p := rekeyAt(t, srv, gcks, now)
			if p.MessageID != 0 {
				t.Fatalf("first GSA_REKEY Message ID %d", p.MessageID)
			}
			msg, err := wire.Parse(p.Data)
			if err != nil || msg.Header.Exchange != wire.ExchangeGSARekey || msg.Encrypted() == nil {
				t.Fatalf("GSA_REKEY %v: %+v", err, msg)
			}
			u, err := m.Rekey(p.Data, now)
			if err != nil {
				t.Fatal(err)
			}
			want := tekKeys(t, srv)
			got := 0
			for _, tk := range u.TEKs {
				if bytes.Equal(tk.EncKey, want[tk.SPI]) {
					got++
				}
			}
			if got != len(u.TEKs) || got == 0 || u.Deactivate != now.Add(ks.RekeyDTD) {
				t.Fatalf("rekey installs %d of %d TEKs with ks's keys", got, len(u.TEKs))
			}
			// issue 18 F4: the registration's Sender-IDs go on in the new
			// keys laid out at 32 bits, the same IV octets, so that the
			// member tells apart the wider IDs of later registrants.
			sids, bits := m.SenderIDs()
			for _, tk := range u.TEKs {
				if tk.AuthKey != nil {
					continue
				}
				if tk.SIDBits != 32 || len(tk.SenderIDs) != len(sids) {
					t.Fatalf("rekeyed TEK sender IDs %v of %d bits, registered %v of %d", tk.SenderIDs, tk.SIDBits, sids, bits)
				}
				for i, id := range sids {
					if uint64(tk.SenderIDs[i])<<32 != uint64(id)<<(64-bits) {
						t.Fatalf("sender ID %#x of %d bits carried as %#x of 32: another IV", id, bits, tk.SenderIDs[i])
					}
				}
			}
			// §2.4.1.3: retransmissions are bitwise identical.
			if _, err := m.Rekey(p.Data, now.Add(time.Second)); !errors.Is(err, ErrResent) || m.Stats.Resent != 1 {
				t.Fatalf("retransmission: %v %+v", err, m.Stats)
			}
			p2 := rekeyAt(t, srv, gcks, now.Add(50*time.Minute))
			if p2.MessageID != 1 || bytes.Equal(p2.Data, p.Data) {
				t.Fatalf("second Message ID %d", p2.MessageID)
			}
			if _, err := m.Rekey(p2.Data, now.Add(50*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if m.Stats.Accepted != 3 {
				t.Fatalf("stats %+v", m.Stats)
			}
		})
	}
}

// proves: G2 (issue 17: hostile GSA_REKEYs are dropped, counted and never
// installed: a replayed older Message ID, a bad signature (another key),
// another group's Rekey SA, a flipped bit anywhere, every truncation, an
// AUTH payload under Implicit authentication)
func TestRekeyHostile(t *testing.T) {
	srv, gcks, m := registered(t, nil)
	now := t0.Add(50 * time.Minute)
	p1 := rekeyAt(t, srv, gcks, now)
	p2 := rekeyAt(t, srv, gcks, now.Add(time.Minute))
	if _, err := m.Rekey(p2.Data, now); err != nil {
		t.Fatal(err)
	}
	spi, _ := m.RekeySPI()
	// Replay: Message ID 0 after 1.
	if _, err := m.Rekey(p1.Data, now); !errors.Is(err, ErrReplay) || m.Stats.Replayed != 1 {
		t.Fatalf("replay: %v %+v", err, m.Stats)
	}
	// Bad signature: the same Rekey SA keys, another signing key.
	g, err := FromKS(srv, "G", now)
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := *g
	forged.Signer = forger
	fr, err := NewRekeyer(&forged, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fr.Rekey(&forged, RekeyOptions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rekey(fp.Data, now); !errors.Is(err, ErrSignature) || m.Stats.Signature != 1 {
		t.Fatalf("forged signature: %v %+v", err, m.Stats)
	}
	// A forged message does not move the Message ID filter: the GCKS's
	// message 2 still passes afterwards.
	p3 := rekeyAt(t, srv, gcks, now.Add(2*time.Minute))
	if p3.MessageID != 2 {
		t.Fatalf("Message ID %d", p3.MessageID)
	}
	// Implicit authentication with an AUTH payload: refused.
	implicit := *g
	implicit.Signer = nil
	m.gcauth = wire.GCAuthImplicit
	if _, err := m.Rekey(p3.Data, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("AUTH under Implicit: %v", err)
	}
	m.gcauth = wire.GCAuthDigitalSignature
	// Another group's Rekey SA.
	other, ogcks, _ := registered(t, nil)
	op := rekeyAt(t, other, ogcks, now)
	if _, err := m.Rekey(op.Data, now); !errors.Is(err, ErrUnknownSA) || m.Stats.UnknownSA != 1 {
		t.Fatalf("other group: %v %+v", err, m.Stats)
	}
	// Every flipped bit and every truncation of a good one.
	before := m.Stats
	for bit := 0; bit < 8*len(p3.Data); bit += 3 {
		b := append([]byte(nil), p3.Data...)
		b[bit/8] ^= 1 << (bit % 8)
		if _, err := m.Rekey(b, now); err == nil {
			t.Fatalf("bit %d flipped: accepted", bit)
		}
	}
	for n := 0; n < len(p3.Data); n++ {
		if _, err := m.Rekey(p3.Data[:n], now); err == nil {
			t.Fatalf("truncated to %d: accepted", n)
		}
	}
	if m.Stats.Accepted != before.Accepted {
		t.Fatal("a hostile message was applied")
	}
	if s, _ := m.RekeySPI(); s != spi {
		t.Fatal("the Rekey SA changed")
	}
	dropped := m.Stats.Malformed + m.Stats.Integrity + m.Stats.UnknownSA + m.Stats.Signature + m.Stats.Replayed
	if want := before.Malformed + before.Integrity + before.UnknownSA + before.Signature + before.Replayed + uint64((8*len(p3.Data)+2)/3+len(p3.Data)); dropped != want {
		t.Fatalf("%d drops counted, want %d (%+v)", dropped, want, m.Stats)
	}
	// And the real message 2 is still accepted.
	if _, err := m.Rekey(p3.Data, now); err != nil {
		t.Fatal(err)
	}
}

// proves: G2 (issue 17: GCAUTH Implicit: no AUTH_KEY at registration, no
// AUTH in GSA_REKEY; the ICV under the Rekey SA is the authentication)
func TestImplicitAuth(t *testing.T) {
	srv := keyServer(t, nil)
	g, err := FromKS(srv, "G", t0)
	if err != nil {
		t.Fatal(err)
	}
	g.Signer = nil
	kwk := KWK{Alg: DefaultKWA, Key: bytes.Repeat([]byte{7}, 32)}
	ps, err := g.Response(Registration{Request: Request{Group: groupID}, KWK: kwk}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if kd := ps[1].(*wire.KD); kd.Bag(0, nil) != nil {
		t.Fatal("a member key bag (AUTH_KEY) with Implicit")
	}
	m := NewMember(MemberConfig{Name: "G", ID: groupID})
	if _, err := m.Registered(ps, kwk, t0); err != nil {
		t.Fatal(err)
	}
	r, err := NewRekeyer(g, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Rekey(g, RekeyOptions{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	inner := openForTest(t, g, p.Data)
	if wire.Find(inner, wire.PayloadAUTH) != nil {
		t.Fatal("AUTH with Implicit")
	}
	if _, err := m.Rekey(p.Data, t0); err != nil {
		t.Fatal(err)
	}
}

// openForTest decrypts a GSA_REKEY with the group's KEK.
func openForTest(t testing.TB, g *Group, pkt []byte) []wire.Payload {
	t.Helper()
	c, _, err := newSKCipher(g.KEK.Suite, g.KEK.Keymat)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := wire.Parse(pkt)
	if err != nil {
		t.Fatal(err)
	}
	at, _ := wire.EncryptedDataOffset(pkt)
	plain, err := c.Open(pkt, at)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := wire.ParseInner(msg.Encrypted().Inner, plain)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// proves: G2 (issue 17: a rekey that installs a new KEK moves the GCKS and
// the GM to the new Rekey SA, whose first Message ID is 0 (§2.4.1.2); the
// old Rekey SA's messages are then for no SA the GM holds)
func TestRekeyNewKEK(t *testing.T) {
	srv, gcks, m := registered(t, nil)
	old, _ := m.RekeySPI()
	// Past the KEK's refresh point ks makes a new KEK.
	now := t0.Add(23*time.Hour + 30*time.Minute)
	p := rekeyAt(t, srv, gcks, now)
	u, err := m.Rekey(p.Data, now)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := srv.State("G", now)
	if !u.NewKEK || u.KEKSPI != st.KEK.SPI || u.KEKSPI == old {
		t.Fatalf("new KEK %v %x, ks %x, old %x", u.NewKEK, u.KEKSPI, st.KEK.SPI, old)
	}
	p2 := rekeyAt(t, srv, gcks, now.Add(time.Minute))
	if p2.MessageID != 0 || p2.SPI != st.KEK.SPI {
		t.Fatalf("first message on the new Rekey SA: %d under %x", p2.MessageID, p2.SPI)
	}
	if _, err := m.Rekey(p2.Data, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rekey(p.Data, now); !errors.Is(err, ErrUnknownSA) {
		t.Fatalf("old Rekey SA: %v", err)
	}
}

// proves: R1, groundwork for R2, R4 (issue 17: GM removal as RFC 9838 §2.4.3 offers it: a
// GSA_REKEY under the current Rekey SA with Delete(GIKE_UPDATE, SPI 0)
// excludes every GM (they register again; only current credentials pass,
// R3); with now, Delete(ESP, SPI 0) first: every TEK goes at once)
func TestRemoval(t *testing.T) {
	for _, now := range []bool{false, true} {
		srv, gcks, m := registered(t, nil)
		p, err := gcks.Remove("G", now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Remove("G", now, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		u, err := m.Rekey(p.Data, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !u.Excluded || u.DeleteAllTEKs != now || len(u.TEKs) != 0 {
			t.Fatalf("now=%v: %+v", now, u)
		}
		if _, ok := m.RekeySPI(); ok {
			t.Fatal("the excluded GM keeps its Rekey SA")
		}
		if _, err := gcks.Rekey("G", t0.Add(2*time.Minute)); err == nil {
			t.Fatal("a rekey under the deleted Rekey SA")
		}
		// Registering again gets ks's new keys and a new Rekey SA from 0.
		u2, _, _, _, _ := register(t, srv, gcks, m)
		st, _ := srv.State("G", t0)
		if !u2.NewKEK || u2.KEKSPI != st.KEK.SPI {
			t.Fatalf("re-registration: %+v", u2)
		}
		if r, _ := gcks.Rekeyer("G", t0); r.NextMessageID() != 0 {
			t.Fatal("the new Rekey SA does not start at 0")
		}
	}
}

// proves: P2, groundwork for P3, P4 (issue 17: policy replace as a G-IKEv2 rekey: the new
// policy (with ks's new KEK) and a Delete of the old TEKs; the GMs keep the old
// ones for GWP_DTD = TEK_SLT (P3), or delete them at once with replace-now
// (P4, DTD 0) and install the new KEK in its place)
func TestPolicyReplace(t *testing.T) {
	for _, now := range []bool{false, true} {
		srv, gcks, m := registered(t, nil)
		oldSPI, _ := m.RekeySPI()
		oldTEKs := tekKeys(t, srv)
		at := t0.Add(10 * time.Minute)
		mode := isakmp.ModeShorten
		if now {
			mode = isakmp.ModeNow
		}
		if _, err := srv.ReplaceRekey("G", mode, at); err != nil {
			t.Fatal(err)
		}
		p, err := gcks.Replace("G", now, at)
		if err != nil {
			t.Fatal(err)
		}
		u, err := m.Rekey(p.Data, at)
		if err != nil {
			t.Fatal(err)
		}
		// ks makes a new KEK for replace-now (P4: the old KEK goes at
		// once); a shortening replace keeps it (docs/gikev2.md).
		if u.NewKEK != now || (now && u.KEKSPI == oldSPI) || len(u.DeleteTEKs) != len(oldTEKs) {
			t.Fatalf("replace now=%v: %+v", now, u)
		}
		for _, s := range u.DeleteTEKs {
			if _, ok := oldTEKs[s]; !ok {
				t.Fatalf("deletes TEK %x, not an old one", s)
			}
		}
		// TEK_SLT of a 1 h TEK with 50 min left: MAX(90 s, MIN(180 s,
		// 3600 s)) = 180 s.
		want := at.Add(180 * time.Second)
		if now {
			want = at
		}
		if !u.Deactivate.Equal(want) {
			t.Fatalf("now=%v: deactivate at %v, want %v", now, u.Deactivate, want)
		}
	}
}

// proves: G2 (issue 17: the registration response's hostile forms install
// nothing and are counted: a key wrap integrity failure, a truncated KD (a
// TEK without its key bag), a member key bag in a rekey, a pinned rekey key
// that differs from AUTH_KEY)
func TestRegistrationHostile(t *testing.T) {
	srv := keyServer(t, nil)
	g, err := FromKS(srv, "G", t0)
	if err != nil {
		t.Fatal(err)
	}
	kwk := KWK{Alg: DefaultKWA, Key: bytes.Repeat([]byte{3}, 32)}
	good := func() []wire.Payload {
		ps, err := g.Response(Registration{Request: Request{Group: groupID}, KWK: kwk}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	m := NewMember(MemberConfig{Name: "G", ID: groupID})
	// Key wrap integrity: one bit of the TEK's wrapped key.
	ps := good()
	kd := ps[1].(*wire.KD)
	for _, b := range kd.Bags {
		if b.Protocol == wire.ProtoESP {
			b.Attributes[0].Data[12] ^= 0x40
		}
	}
	if _, err := m.Registered(ps, kwk, t0); !errors.Is(err, ErrKeyWrap) || m.Stats.KeyWrap != 1 {
		t.Fatalf("key wrap: %v %+v", err, m.Stats)
	}
	// The wrong KWK: every key fails its integrity check.
	if _, err := m.Registered(good(), KWK{Alg: DefaultKWA, Key: make([]byte, 32)}, t0); !errors.Is(err, ErrKeyWrap) {
		t.Fatalf("wrong KWK: %v", err)
	}
	// Truncated KD: the TEK's key bag missing.
	ps = good()
	kd = ps[1].(*wire.KD)
	kd.Bags = kd.Bags[:1]
	if _, err := m.Registered(ps, kwk, t0); !errors.Is(err, ErrPolicy) {
		t.Fatalf("truncated KD: %v", err)
	}
	// The codec refuses a KD cut short on the wire.
	raw, _ := wire.MarshalPayload(good()[1])
	if _, err := wire.ParseInner(wire.PayloadKD, raw[:len(raw)-5]); err == nil {
		t.Fatal("a truncated KD parsed")
	}
	// A pinned rekey key that is not the AUTH_KEY.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pinned := NewMember(MemberConfig{Name: "G", ID: groupID, RekeyKey: other.Public()})
	if _, err := pinned.Registered(good(), kwk, t0); !errors.Is(err, ErrPolicy) {
		t.Fatalf("pinned key: %v", err)
	}
	if _, ok := m.RekeySPI(); ok {
		t.Fatal("a refused registration installed a Rekey SA")
	}
	// The good one passes, the pinned GM with the right key too.
	if _, err := m.Registered(good(), kwk, t0); err != nil {
		t.Fatal(err)
	}
	right := NewMember(MemberConfig{Name: "G", ID: groupID, RekeyKey: g.Signer.Public()})
	if _, err := right.Registered(good(), kwk, t0); err != nil {
		t.Fatal(err)
	}
	// A member key bag in an inband rekey is refused.
	if _, err := m.Inband(good(), kwk, t0); !errors.Is(err, ErrPolicy) {
		t.Fatalf("member key bag in GSA_INBAND_REKEY: %v", err)
	}
}
