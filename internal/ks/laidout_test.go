package ks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1, P1 (issue 18: the group's policy and key packets laid out
// once, not per registration) — a member registering right after each
// change of the group gets the group as it is then, in the octets Join and
// Keys build: the first registration, a rekey, a configuration change
// without a rekey (the rekey's multicast group, acknowledgements: at
// once; a new TEK policy: with the next rekey), a policy replace, a TEK
// and then the KEK replaced as they age (refresh), a GM removal, a rekey
// rolled back (the keys the members hold again), the group restored from
// its state, and a second later (the lifetimes left and the pseudotime).
// The key packets laid out before a change are cleared.
func TestLaidOutFollowsTheGroup(t *testing.T) {
	cfg := gcmCBCGroup(2 * time.Hour)
	cfg.TEKs[0].Replay, cfg.TEKs[0].ReplayWindow = isakmp.ReplayTime, 5
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	g := s.byName["G"]
	id := isakmp.GroupID(7)
	gm := 0
	register := func(what string, at time.Time) (sa *isakmp.GroupSA, kd *isakmp.KD) {
		t.Helper()
		gm++
		p := peer(netip.AddrFrom4([4]byte{10, 1, byte(gm >> 8), byte(gm)}).String())
		laidSA, err := s.JoinPayload(p, id, at)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		built, err := s.Join(p, id, at) // the same time: nothing more to refresh
		if err != nil {
			t.Fatal(err)
		}
		got, _ := isakmp.MarshalPayload(&laidSA)
		want, _ := isakmp.MarshalPayload(built)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the SA payload laid out differs from Join's:\n%x\n%x", what, got, want)
		}
		_, laidKD, err := s.KeysPayload(p, id, 2, at)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		m, _ := s.Member("G", p.Addr.Addr())
		got, _ = isakmp.MarshalPayload(&laidKD)
		want, _ = isakmp.MarshalPayload(g.keyDownload(int(max(m.SIDBits, MinSIDBits)), m.SenderIDs, at, false))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the KD payload laid out differs from Keys':\n%x\n%x", what, got, want)
		}
		// What the member got is the group's now.
		sa, kd = built, g.keyDownload(0, nil, at, false)
		snap := s.Snapshot(at)[0]
		// Then the TEKs a plain rekey replaced, while handed out
		// (replaced.go).
		live := g.replaced.live(g, at, false)
		if sa.KEK == nil || sa.KEK.SPI != snap.KEKSPI || len(sa.TEKs) != len(snap.TEKs)+len(live) {
			t.Fatalf("%s: the member got a KEK or TEKs not the group's", what)
		}
		for i, sat := range sa.TEKs {
			want := uint32(0)
			if i < len(snap.TEKs) {
				want = snap.TEKs[i].SPI
			} else {
				want = live[i-len(snap.TEKs)].spi
			}
			if sat.SPI != want {
				t.Fatalf("%s: TEK %d: SPI 0x%x, the group's is 0x%x", what, i, sat.SPI, want)
			}
		}
		return sa, kd
	}
	spis := func(sa *isakmp.GroupSA) (kek [isakmp.KEKSPILen]byte, teks []uint32) {
		for _, t := range sa.TEKs {
			teks = append(teks, t.SPI)
		}
		return sa.KEK.SPI, teks
	}
	at := now
	first, _ := register("first registration", at)
	_, teks0 := spis(first)
	out0 := g.out
	if again, _ := register("second registration", at); !bytes.Equal(mustMarshal(t, again), mustMarshal(t, first)) || g.out != out0 {
		t.Fatal("a registration at the same time and with nothing changed got another policy or laid it out again")
	}

	at = at.Add(time.Second)
	later, _ := register("a second later", at)
	if life := lifeLeft(t, later.TEKs[0].Attributes); life != 3599 {
		t.Fatalf("a second later: TEK lifetime left %d s, want 3599", life)
	}
	if g.out != out0 {
		t.Fatal("time alone laid the policy out again")
	}

	at = at.Add(time.Minute)
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	afterRekey, _ := register("after a rekey", at)
	if _, teks := spis(afterRekey); teks[0] == teks0[0] || teks[1] == teks0[1] {
		t.Fatal("after a rekey: the old TEKs")
	}
	if bytes.Contains(out0[0].kdBytes(), g.teks[0].encKey) || !allZero(out0[0].kdBytes()) {
		t.Fatal("the key packets laid out before the rekey were not cleared")
	}

	// A configuration change: multicast rekeys, no acknowledgements, at
	// once; a new TEK policy waits for the next rekey.
	c2 := cfg
	c2.Rekey = RekeyPolicy{Multicast: netip.MustParseAddrPort("239.1.1.1:848")}
	c2.TEKs = append([]TEKPolicy(nil), cfg.TEKs...)
	c2.TEKs[1].Selectors = []Selector{{Src: netip.MustParsePrefix("192.168.0.0/16"), Dst: netip.MustParsePrefix("192.168.0.0/16")}}
	if err := s.UpdatePolicy(c2); err != nil {
		t.Fatal(err)
	}
	reloaded, _ := register("after a configuration change", at)
	if _, ok := reloaded.KEK.Attributes.Find(uint16(isakmp.KEKAckRequested)); ok || reloaded.KEK.Dst.Port != 848 || reloaded.KEK.Dst.String() == afterRekey.KEK.Dst.String() {
		t.Fatalf("after a configuration change: the old rekey policy (%v)", reloaded.KEK.Dst)
	}
	if _, err := s.ReplaceRekey("G", isakmp.ModeShorten, at); err != nil {
		t.Fatal(err)
	}
	replaced, _ := register("after a policy replace", at)
	if sel := replaced.TEKs[1].Selector.Src.String(); sel == reloaded.TEKs[1].Selector.Src.String() {
		t.Fatalf("after a policy replace: the old TEK policy (%s)", sel)
	}

	// The first TEK (an hour) replaced as it ages, then the KEK (4 h).
	at = at.Add(55 * time.Minute)
	aged, _ := register("a TEK near its end", at)
	if aged.TEKs[0].SPI == replaced.TEKs[0].SPI || aged.TEKs[1].SPI != replaced.TEKs[1].SPI {
		t.Fatal("a TEK near its end: not replaced alone")
	}
	at = g.kekExp.Add(-10 * time.Minute)
	agedKEK, _ := register("the KEK near its end", at)
	if agedKEK.KEK.SPI == aged.KEK.SPI {
		t.Fatal("the KEK near its end: not replaced")
	}

	if _, err := s.Remove("G", false, at); err != nil {
		t.Fatal(err)
	}
	removed, _ := register("after a GM removal", at)
	if removed.KEK.SPI == agedKEK.KEK.SPI {
		t.Fatal("after a GM removal: the old KEK")
	}

	// A rekey rolled back: the keys the members hold again.
	u := s.checkpoint("G")
	if _, err := s.Rekey("G", at); err != nil {
		t.Fatal(err)
	}
	register("after a rekey to be rolled back", at)
	s.rollback(u)
	back, _ := register("after a rollback", at)
	if !bytes.Equal(mustMarshal(t, back), mustMarshal(t, removed)) {
		t.Fatal("after a rollback: not the keys of before the rekey")
	}

	// Restored from the group's state into another server.
	st, err := s.State("G", at)
	if err != nil {
		t.Fatal(err)
	}
	s2 := New(Options{})
	if err := s2.AddGroup(c2, at); err != nil {
		t.Fatal(err)
	}
	s2.byName["G"].out = [2]*laidOut{}
	if _, err := s2.JoinPayload(peer("10.2.0.1"), id, at); err != nil { // laid out with its own keys
		t.Fatal(err)
	}
	if err := s2.Restore(st, at); err != nil {
		t.Fatal(err)
	}
	s, g = s2, s2.byName["G"]
	restored, _ := register("after a restore", at)
	if k, _ := spis(restored); k != kekOf(removed) {
		t.Fatal("after a restore: not the restored KEK")
	}
}

// kdBytes is the key packets l laid out.
func (l *laidOut) kdBytes() []byte {
	with := l.kd.With(0, nil)
	b, _ := isakmp.MarshalPayload(&with)
	return b[isakmp.GenericHeaderLen+4:]
}

func mustMarshal(t *testing.T, p isakmp.Payload) []byte {
	t.Helper()
	b, err := isakmp.MarshalPayload(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kekOf(sa *isakmp.GroupSA) [isakmp.KEKSPILen]byte { return sa.KEK.SPI }

func lifeLeft(t *testing.T, as isakmp.Attributes) uint64 {
	t.Helper()
	a, ok := as.Find(uint16(isakmp.IPsecSALifeDuration))
	if !ok {
		t.Fatal("no lifetime")
	}
	v, _ := a.Uint()
	return v
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

// proves: N1, C1 (issue 18: the laid-out policy; issue 16: adopted keys)
// — a member registering with a secondary right after it adopted the
// primary's keys gets them, in Join's octets, and right after it adopted
// the same keys again with their ends moved (a TEK's end is the only
// field of a TEK changed in place; the KEK's moves with it) gets the
// lifetimes left they have now.
func TestLaidOutFollowsAdoptedKeys(t *testing.T) {
	pri, sec := coopPair(t)
	id := isakmp.GroupID(7)
	gm := 0
	register := func(what string, at time.Time) *isakmp.GroupSA {
		t.Helper()
		gm++
		p := peer(netip.AddrFrom4([4]byte{10, 2, 0, byte(gm)}).String())
		laid, err := sec.JoinPayload(p, id, at)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		built, err := sec.Join(p, id, at)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustMarshal(t, &laid), mustMarshal(t, built); !bytes.Equal(got, want) {
			t.Fatalf("%s: the SA payload laid out differs from Join's:\n%x\n%x", what, got, want)
		}
		return built
	}
	own := register("before adopting", now)
	if _, err := pri.Rekey("G", now); err != nil {
		t.Fatal(err)
	}
	sa, kd, seq, err := pri.Announce("G", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err != nil {
		t.Fatal(err)
	}
	adopted := register("after adopting", now)
	if adopted.TEKs[0].SPI == own.TEKs[0].SPI || adopted.TEKs[0].SPI != sa.TEKs[0].SPI || adopted.KEK.SPI != sa.KEK.SPI {
		t.Fatal("after adopting: not the primary's keys")
	}
	// Announced 10 minutes later, adopted 20 minutes later: the same
	// keys, ending 10 minutes later than this KS had them end.
	sa, kd, seq, err = pri.Announce("G", now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(20 * time.Minute)
	if changed, _, err := sec.AdoptKeys("G", sa, kd, seq, at); err != nil || changed {
		t.Fatalf("the same keys adopted again: changed %v, %v", changed, err)
	}
	again := register("after adopting the same keys later", at)
	if life := lifeLeft(t, again.TEKs[0].Attributes); life != 50*60 {
		t.Fatalf("TEK lifetime left %d s, want %d", life, 50*60)
	}
}

// proves: S7 (key material is not kept past its use; issue 18's layout)
// — once a rekey or a GM removal replaced the group's keys, the key
// packets laid out for the old ones are cleared and dropped at once, not
// when the next registration lays the group out again (none may come for
// hours in a settled group).
func TestStaleLayoutClearedWhenKeysChange(t *testing.T) {
	s, g, _ := gcmGroupServer(t)
	for i, change := range []struct {
		what string
		do   func() error
	}{
		{"rekey", func() error { _, err := s.Rekey("G", now); return err }},
		{"removal", func() error { _, err := s.Remove("G", true, now); return err }},
	} {
		p := peer(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}).String())
		if _, err := s.JoinPayload(p, isakmp.GroupID(7), now); err != nil {
			t.Fatal(err)
		}
		_, kw, err := s.KeysPayload(p, isakmp.GroupID(7), 1, now)
		if err != nil {
			t.Fatal(err)
		}
		if g.out[0] == nil {
			t.Fatalf("%s: nothing laid out after a registration", change.what)
		}
		tekKey := slices.Clone(g.teks[0].encKey)
		before, _ := isakmp.MarshalPayload(&kw) // what the layout holds, encoded now
		if !bytes.Contains(before, tekKey) {
			t.Fatalf("%s: the layout does not hold the TEK's key", change.what)
		}
		if err := change.do(); err != nil {
			t.Fatal(err)
		}
		if g.out[0] != nil {
			t.Errorf("%s: the old layout is still the group's", change.what)
		}
		if after, _ := isakmp.MarshalPayload(&kw); bytes.Contains(after, tekKey) {
			t.Errorf("%s: the old layout's key packets still hold the old TEK's key", change.what)
		}
	}
}

// gcmCBCGroup is group G (7) with a KEK and unicast rekeys, and two TEK
// policies: AES-GCM for 10.0.0.0/8 (an hour) and AES-CBC with HMAC-SHA-256
// for 172.16.0.0/12 (cbcLife).
func gcmCBCGroup(cbcLife time.Duration) GroupConfig {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key, KEKLifetime: 4 * time.Hour,
		Rekey: RekeyPolicy{Unicast: true},
		TEKs: []TEKPolicy{
			{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
				Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}},
			{Transform: isakmp.ESPAESCBC, AuthAlg: isakmp.AuthAlgHMACSHA256, KeyBits: 256, Lifetime: cbcLife,
				Selectors: []Selector{{Src: netip.MustParsePrefix("172.16.0.0/12"), Dst: netip.MustParsePrefix("172.16.0.0/12")}}}}}
}

// proves: issue 18 (a done GROUPKEY-PULL builds a lost message 4 again
// from the layout's key packets) — a layout made again for a change that
// leaves the key packets as they were (the rekey's multicast group and
// acknowledgements reconfigured) keeps the key packets laid out before,
// not cleared, so the answers of the exchanges still lingering can be
// built again; a rekey then clears them.
func TestLayoutKeepsItsKeyPacketsWhenTheyStayTheSame(t *testing.T) {
	s, g, cfg := gcmGroupServer(t)
	register := func(n byte) {
		t.Helper()
		p := peer(netip.AddrFrom4([4]byte{10, 1, 0, n}).String())
		if _, err := s.JoinPayload(p, isakmp.GroupID(7), now); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.KeysPayload(p, isakmp.GroupID(7), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	register(1)
	l0 := g.out[0]
	tekKey := slices.Clone(g.teks[0].encKey)
	c2 := cfg
	c2.Rekey = RekeyPolicy{Multicast: netip.MustParseAddrPort("239.1.1.1:848")}
	if err := s.UpdatePolicy(c2); err != nil {
		t.Fatal(err)
	}
	register(2)
	if g.out[0] == nil || g.out[0].sa == l0.sa {
		t.Fatal("the rekey policy changed and the SA payload was not laid out again")
	}
	if g.out[0].kd != l0.kd || !bytes.Contains(l0.kdBytes(), tekKey) {
		t.Fatal("the key packets, the same, were laid out again and the ones before cleared")
	}
	if _, err := s.Rekey("G", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !allZero(l0.kdBytes()) {
		t.Fatal("a rekey left the key packets laid out before it uncleared")
	}
}

// gcmGroupServer is a key server of one group "G" (ID 7): an AES-GCM TEK,
// an ECDSA rekey key, unicast rekeys.
func gcmGroupServer(t *testing.T) (*Server, *group, GroupConfig) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		Rekey: RekeyPolicy{Unicast: true},
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
			Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	return s, s.byName["G"], cfg
}
