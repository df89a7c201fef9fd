package ks

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Replacing the rekey signing key (issue 14 item 2): members verify a
// rekey with the key of their registration or of the last rekey they
// accepted (RFC 6407 §4.4), so the rekey that announces a new key (in
// its new KEK's policy and key packet, §5.3, §5.6.2) is signed with the
// old one, and only the rekeys after it with the new one.

// verifies reports whether datagram data opens under kek with key's
// public half; it returns the rekey.
func verifies(t *testing.T, data []byte, kek gdoi.KEK, key crypto.Signer) (*gdoi.Rekey, bool) {
	t.Helper()
	alg := isakmp.SigAlgRSA
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		alg = map[int]isakmp.SigAlg{256: isakmp.SigAlgECDSA256, 384: isakmp.SigAlgECDSA384, 521: isakmp.SigAlgECDSA521}[k.Curve.Params().BitSize]
	}
	r, err := gdoi.OpenPush(data, kek, key.Public(), alg)
	return r, err == nil
}

// announced is the KEK a rekey brings, with the public key and the
// signature algorithm its policy names.
func announced(t *testing.T, r *gdoi.Rekey) (gdoi.KEK, []byte, isakmp.SigAlg) {
	t.Helper()
	if r.SA == nil || r.SA.KEK == nil || r.KD == nil {
		t.Fatal("the rekey brings no KEK")
	}
	kp := r.KD.Packet(isakmp.KDKEK, r.SA.KEK.SPI[:])
	if kp == nil {
		t.Fatal("no KEK key packet")
	}
	key, _ := kp.Attributes.Find(isakmp.KEKAlgorithmKey)
	pub, _ := kp.Attributes.Find(isakmp.KEKSigKey)
	var alg isakmp.SigAlg
	for _, a := range r.SA.KEK.Attributes {
		if isakmp.KEKAttr(a.Type) == isakmp.KEKSigAlgorithm {
			v, _ := a.Uint()
			alg = isakmp.SigAlg(v)
		}
	}
	return gdoi.KEK{SPI: r.SA.KEK.SPI, Key: key.Data}, pub.Data, alg
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubDER(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func currentKEK(x *sim) gdoi.KEK {
	g := x.srv.byName["G"]
	return gdoi.KEK{SPI: g.kekSPI, Key: g.kekKey}
}

// proves: T1 (issue 14 item 2: the rekey key can be replaced on a running
// KS without members rejecting rekeys) — after UpdatePolicy with a new
// key (ECDSA P-256 -> RSA 2048), a registration still gets the old
// public key; the next rekey brings a new KEK whose policy names the new
// key and is signed with the old one, and so is every retransmission of
// it; the rekey after it is signed with the new key only. Changing the
// key and back before a rekey announces nothing.
func TestDeliveryAnnouncesReplacedRekeyKey(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	cfg := groupConfig(t, RekeyPolicy{Unicast: true})
	oldKey := cfg.SigningKey
	x := newSim(t, cfg, newMemStore(), t0)
	x.join(0, 2)
	x.silent[member(1).Addr()] = true // gets every retransmission
	kek0 := currentKEK(x)

	// Replaced and put back before a rekey: nothing to announce.
	newKey := rsaKey(t)
	cfg2 := cfg
	cfg2.SigningKey = newKey
	back := newSim(t, cfg, nil, t0)
	back.join(0, 1)
	backKEK := currentKEK(back)
	if err := back.srv.UpdatePolicy(cfg2); err != nil {
		t.Fatal(err)
	}
	if err := back.srv.UpdatePolicy(cfg); err != nil {
		t.Fatal(err)
	}
	if p := back.rekey(); p.NewKEK {
		t.Fatal("a key replaced and put back is still announced")
	} else if _, ok := verifies(t, p.Data, backKEK, oldKey); !ok {
		t.Fatal("a key replaced and put back: the rekey is not signed with it")
	}

	if err := x.srv.UpdatePolicy(cfg2); err != nil {
		t.Fatal(err)
	}
	// A member registering now gets the key the others hold.
	_, kd, err := x.srv.Keys(Peer{Addr: member(2)}, isakmp.GroupID(7), 0, x.now)
	if err != nil {
		t.Fatal(err)
	}
	kp := kd.Packet(isakmp.KDKEK, kek0.SPI[:])
	if kp == nil {
		t.Fatal("registration without the KEK")
	}
	if pub, _ := kp.Attributes.Find(isakmp.KEKSigKey); !bytes.Equal(pub.Data, pubDER(t, oldKey)) {
		t.Fatal("a registration before the announcement got the new key: it would reject the announcement")
	}
	sa, err := x.srv.Join(Peer{Addr: member(2)}, isakmp.GroupID(7), x.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sa.KEK.Attributes {
		if v, _ := a.Uint(); isakmp.KEKAttr(a.Type) == isakmp.KEKSigAlgorithm && isakmp.SigAlg(v) != isakmp.SigAlgECDSA256 {
			t.Fatalf("registration's KEK policy names signature algorithm %d, not the old key's", v)
		}
	}

	p := x.rekey()
	if !p.NewKEK {
		t.Fatal("the announcing rekey brings no new KEK")
	}
	r, ok := verifies(t, p.Data, kek0, oldKey)
	if !ok {
		t.Fatal("the announcing rekey does not verify with the key the members hold")
	}
	if _, ok := verifies(t, p.Data, kek0, newKey); ok {
		t.Fatal("the announcing rekey verifies with the new key")
	}
	kek1, pub, alg := announced(t, r)
	if !bytes.Equal(pub, pubDER(t, newKey)) || alg != isakmp.SigAlgRSA {
		t.Fatalf("the announcing rekey's KEK names key %x alg %d, not the new RSA key", pub[:8], alg)
	}
	// Retransmissions to the silent member: the same octets.
	x.run(x.now.Add(25 * time.Second))
	n := 0
	for _, s := range x.sent {
		if s.To == member(1) {
			n++
			if !bytes.Equal(s.Data, p.Data) {
				t.Fatal("a retransmission of the announcing rekey is not the datagram signed with the old key")
			}
		}
	}
	if n != 3 {
		t.Fatalf("member 1 got %d transmissions, want 3", n)
	}

	q := x.rekey()
	if q.NewKEK || q.KEK.SPI != kek1.SPI {
		t.Fatalf("the rekey after the announcement: new KEK %v, under %x (want %x)", q.NewKEK, q.KEK.SPI, kek1.SPI)
	}
	if _, ok := verifies(t, q.Data, kek1, newKey); !ok {
		t.Fatal("the rekey after the announcement does not verify with the new key")
	}
	if _, ok := verifies(t, q.Data, kek1, oldKey); ok {
		t.Fatal("the rekey after the announcement still verifies with the old key")
	}
}

// proves: T1, O4 (issue 14 item 2: a KS restarted after its rekey key was
// replaced, before a rekey announced it, still signs that rekey with the
// old key, kept in the store: the key was replaced and reloaded before
// the restart, or replaced while the KS was stopped; once announced, the
// store keeps the new one. A stored old key that cannot be used is
// logged, and the new key signs: members reject and register again)
func TestRestartBeforeAnnouncementSignsWithOldKey(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	st := newMemStore()
	cfg := groupConfig(t, RekeyPolicy{Unicast: true})
	oldKey := cfg.SigningKey
	x := newSim(t, cfg, st, t0)
	x.join(0, 2)
	kek0 := currentKEK(x)
	newKey := rsaKey(t)
	cfg2 := cfg
	cfg2.SigningKey = newKey
	if err := x.srv.UpdatePolicy(cfg2); err != nil {
		t.Fatal(err)
	}
	x.join(2, 1) // a registration after the reload: the periodic save runs
	x.now = x.now.Add(SaveInterval)
	x.apply(x.d.Tick(x.now))
	if !bytes.Equal(st.groups["G"].SigningKey, mustPKCS8(t, oldKey)) {
		t.Fatal("the store does not keep the key the members hold")
	}

	// Restart with the new key configured.
	y := newSim(t, cfg2, st, x.now.Add(time.Minute))
	p := y.rekey()
	r, ok := verifies(t, p.Data, kek0, oldKey)
	if !ok {
		t.Fatal("after a restart the announcing rekey is not signed with the old key")
	}
	kek1, pub, _ := announced(t, r)
	if !bytes.Equal(pub, pubDER(t, newKey)) {
		t.Fatal("the announcing rekey does not carry the new key")
	}
	if !bytes.Equal(st.groups["G"].SigningKey, mustPKCS8(t, newKey)) {
		t.Fatal("after the announcement the store still keeps the old key")
	}
	// Restarted again: the new key signs.
	y.run(y.now.Add(time.Second))
	z := newSim(t, cfg2, st, y.now.Add(time.Minute))
	q := z.rekey()
	if _, ok := verifies(t, q.Data, kek1, newKey); !ok {
		t.Fatal("the rekey after the announcement, after a restart, is not signed with the new key")
	}

	// The stored key is unusable: logged, and the configured key signs.
	st.groups["G"].SigningKey = []byte("not a key")
	k2 := rsaKey(t)
	cfg3 := cfg
	cfg3.SigningKey = k2
	var logs bytes.Buffer
	srv := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := srv.AddGroup(cfg3, z.now); err != nil {
		t.Fatal(err)
	}
	d := NewDelivery(srv, st)
	if _, err := d.Restore(z.now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "KS_REKEY_KEY_LOST") {
		t.Fatalf("an unusable stored key is not logged:\n%s", logs.String())
	}
	res, err := d.Rekey("G", z.now)
	if err != nil {
		t.Fatal(err)
	}
	var lost *Push
	for _, ev := range res.Events {
		if e, ok := ev.(RekeyStarted); ok {
			lost = e.Push
		}
	}
	if lost == nil {
		t.Fatal("no rekey")
	}
	if _, ok := verifies(t, lost.Data, lost.KEK, k2); !ok {
		t.Fatal("without the old key the configured key does not sign")
	}
}

func mustPKCS8(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proves: P6, E2 (CI lost a packet as no_sa in the policy replace with a
// 1.0.1 member: its rekey had no GAP payload at all, so it sent with the
// new TEKs at once, before members the rekey had not reached yet held
// them). Members before policy replace get the replace's rekey with the
// activation delay, so they send with the new TEKs when the others do,
// and the longest deactivation delay there is (65,535 s), so that a GM,
// whatever its version (a GAP without a DTD deactivated at once before
// this one), leaves them to run out: it never deactivates a TEK after it
// expires (gm's TestReplacedTEKDeactivationByGAP). After a replace-now
// they get no GAP: the others send with the new TEKs at once too.
func TestReplaceRekeyOldMembersKeepActivationDelay(t *testing.T) {
	for _, mode := range []byte{isakmp.ModeShorten, isakmp.ModeNow} {
		cfg := groupConfig(t, RekeyPolicy{Unicast: true})
		srv := New(Options{})
		if err := srv.AddGroup(cfg, now); err != nil {
			t.Fatal(err)
		}
		srv.Inherit("G", []MemberVersion{{Addr: member(0).Addr(), Version: version.Base}, {Addr: member(1).Addr(), Version: version.Current}}, 848, now)
		kek := srv.KEK("G")
		p, err := srv.ReplaceRekey("G", mode, now.Add(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.OldMembers) != 1 || p.OldMembers[0].Addr() != member(0).Addr() || len(p.Members) != 1 {
			t.Fatalf("mode %d: old members %v, members %v", mode, p.OldMembers, p.Members)
		}
		gapOf := func(data []byte) map[isakmp.GAPAttr]uint64 {
			r, ok := verifies(t, data, kek, cfg.SigningKey)
			if !ok {
				t.Fatalf("mode %d: the rekey does not verify", mode)
			}
			if r.SA.GAP == nil {
				return nil
			}
			out := map[isakmp.GAPAttr]uint64{}
			for _, a := range r.SA.GAP.Attributes {
				v, err := a.Uint()
				if err != nil {
					t.Fatalf("mode %d: GAP attribute %d: %v", mode, a.Type, err)
				}
				out[isakmp.GAPAttr(a.Type)] = v
			}
			return out
		}
		atd, dtd := uint64(RekeyATD/time.Second), uint64(RekeyDTD/time.Second)
		if g := gapOf(p.Data); len(g) != 2 || g[isakmp.GAPActivationTimeDelay] != atd || g[isakmp.GAPDeactivationTimeDelay] != dtd {
			t.Errorf("mode %d: the members' GAP %v, want ATD %d and DTD %d", mode, g, atd, dtd)
		}
		g := gapOf(p.OldData)
		switch mode {
		case isakmp.ModeShorten:
			if len(g) != 2 || g[isakmp.GAPActivationTimeDelay] != atd || g[isakmp.GAPDeactivationTimeDelay] != math.MaxUint16 {
				t.Errorf("replace: the old members' GAP %v, want ATD %d and DTD %d", g, atd, math.MaxUint16)
			}
		case isakmp.ModeNow:
			if g != nil {
				t.Errorf("replace-now: the old members' GAP %v, want none", g)
			}
		}
	}
}
