package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func server(t *testing.T) *Server {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := New(Options{})
	err := s.AddGroup(GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
			Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func peer(a string) Peer {
	return Peer{Addr: netip.AddrPortFrom(netip.MustParseAddr(a), 848)}
}

// proves: groundwork — unknown groups are refused with
// INVALID-ID-INFORMATION; sender IDs are never handed out twice under the
// same keys (RFC 6054); keys near the end of their life are replaced
// before a GM gets them.
func TestKeyServerRules(t *testing.T) {
	s := server(t)
	var r *gdoi.Refusal
	if _, err := s.Join(peer("10.0.0.1"), isakmp.GroupID(8), now); !errors.As(err, &r) || r.Notify != isakmp.NotifyInvalidIDInformation {
		t.Fatalf("unknown group: %v", err)
	}
	seen := map[uint32]bool{}
	for i := 0; i < 50; i++ { // 25 members registering twice each (SIDsPerMemberPerKeys)
		_, kd, err := s.Keys(Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i % 25)}), 848)}, isakmp.GroupID(7), 2, now)
		if err != nil {
			t.Fatal(err)
		}
		sid := kd.Packet(isakmp.KDSID, nil)
		for _, a := range sid.Attributes[1:] {
			v, _ := a.Uint()
			if seen[uint32(v)] {
				t.Fatalf("sender ID %d reused", v)
			}
			seen[uint32(v)] = true
		}
	}
	if len(seen) != 100 || len(s.Snapshot(now)[0].Members) != 25 {
		t.Fatalf("%d sender IDs, %d members", len(seen), len(s.Snapshot(now)[0].Members))
	}
	old := s.Snapshot(now)[0].TEKs[0].SPI
	sNow := now.Add(55 * time.Minute) // inside the last 10% of the TEK's hour
	sa, err := s.Join(peer("10.0.0.2"), isakmp.GroupID(7), sNow)
	if err != nil {
		t.Fatal(err)
	}
	if sa.TEKs[0].SPI == old {
		t.Fatal("a TEK with 5 minutes left was handed out instead of a fresh one")
	}
}

// proves: S1 — a registration that asks for 65,535 sender IDs gets
// MaxSIDsPerMember, and the members after it still get theirs.
func TestSenderIDRequestBounded(t *testing.T) {
	s := server(t)
	_, kd, err := s.Keys(peer("10.0.0.1"), isakmp.GroupID(7), 65535, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(kd.Packet(isakmp.KDSID, nil).Attributes) - 1; got != MaxSIDsPerMember {
		t.Fatalf("a request for 65535 sender IDs got %d; want %d", got, MaxSIDsPerMember)
	}
	for i := range 100 {
		if _, _, err := s.Keys(peer(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}).String()), isakmp.GroupID(7), 1, now); err != nil {
			t.Fatalf("member %d after the greedy one: %v", i, err)
		}
	}
}

// proves: T2, T3 — with time-based anti-replay the SATs carry the replay
// policy and the KS's pseudotime, the KS schedules a resynchronising rekey
// at most 7200 s after the last one, and receive-only groups mark every
// TEK receiver-only (RFC 6407 SA Direction).
func TestTBARAndReceiveOnly(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := New(Options{})
	sNow := now
	err := s.AddGroup(GroupConfig{Name: "T", ID: 9, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key, ReceiveOnly: true,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: 24 * time.Hour, Replay: isakmp.ReplayTime, ReplayWindow: 5,
			Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Keys(peer("10.0.0.1"), isakmp.GroupID(9), 1, sNow); err != nil { // starts the pseudotime
		t.Fatal(err)
	}
	sNow = now.Add(90 * time.Second)
	sa, err := s.Join(peer("10.0.0.2"), isakmp.GroupID(9), sNow)
	if err != nil {
		t.Fatal(err)
	}
	attrs := sa.TEKs[0].Attributes
	get := func(a isakmp.IPsecAttr) uint64 {
		x, ok := attrs.Find(uint16(a))
		if !ok {
			t.Fatalf("SAT lacks %s", a)
		}
		v, _ := x.Uint()
		return v
	}
	if get(isakmp.IPsecReplayMethod) != uint64(isakmp.ReplayTime) || get(isakmp.IPsecReplayWindow) != 5 ||
		get(isakmp.IPsecPseudotime) != 90000 || get(isakmp.IPsecSADirection) != uint64(isakmp.SADirReceiverOnly) {
		t.Fatalf("SAT attributes %v", attrs)
	}
	if next := s.NextRekey("T"); !next.Equal(now.Add(TBARResync)) {
		t.Fatalf("next rekey at +%s, want the 7200 s TBAR resync", next.Sub(now))
	}
	if _, err := s.Rekey("T", now.Add(TBARResync)); err != nil {
		t.Fatal(err)
	}
	if next := s.NextRekey("T"); !next.Equal(now.Add(2 * TBARResync)) {
		t.Fatalf("after the resync rekey the next is at +%s", next.Sub(now))
	}
}

// proves: E3 (KS side) — the match ACLs' deny entries ride in the SATs of
// the permit entries they precede (groupvpn-Bypass-Before), trailing ones
// on the last SAT of their `sa ipsec` (groupvpn-Bypass-After), for each
// `sa ipsec` separately; a TEK refreshed for a late registration keeps
// them; deny entries that cannot fit one attribute are refused.
func TestDenyEntriesInSATs(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	any4, ten := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8")
	gdoiSel := Selector{Proto: 17, Src: any4, Dst: any4, SrcPort: 848, DstPort: 848}
	ospf := Selector{Proto: 89, Src: any4, Dst: any4}
	host := Selector{Src: netip.MustParsePrefix("10.9.9.9/32"), Dst: any4}
	web := Selector{Proto: 6, Src: ten, Dst: ten, DstPort: 443}
	cfg := GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key, TEKs: []TEKPolicy{
		{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}, web},
			Bypass: []Bypass{{0, gdoiSel}, {0, ospf}, {1, host}, {2, ospf}}},
		{Transform: isakmp.ESPAESGCM16, KeyBits: 256, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	s := New(Options{})
	sNow := now
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	list := func(ss ...Selector) string { return string(bypassList(ss)) }
	check := func(sa *isakmp.GroupSA) {
		t.Helper()
		want := []struct{ before, after string }{{list(gdoiSel, ospf), ""}, {list(host), list(ospf)}, {"", ""}}
		if len(sa.TEKs) != 3 {
			t.Fatalf("%d SATs", len(sa.TEKs))
		}
		for i, w := range want {
			b, _ := sa.TEKs[i].Attributes.Find(uint16(isakmp.IPsecBypassBefore))
			a, _ := sa.TEKs[i].Attributes.Find(uint16(isakmp.IPsecBypassAfter))
			if string(b.Data) != w.before || string(a.Data) != w.after {
				t.Errorf("SAT %d: before %x after %x", i, b.Data, a.Data)
			}
		}
	}
	sa, err := s.Join(peer("10.0.0.1"), isakmp.GroupID(7), sNow)
	if err != nil {
		t.Fatal(err)
	}
	check(sa)
	old := sa.TEKs[0].SPI
	sNow = now.Add(55 * time.Minute)
	if sa, err = s.Join(peer("10.0.0.2"), isakmp.GroupID(7), sNow); err != nil {
		t.Fatal(err)
	}
	if sa.TEKs[0].SPI == old {
		t.Fatal("no refresh")
	}
	check(sa)

	// A KS restarted from its state file restores the keys and still
	// sends the deny entries (they come from the configuration).
	st, err := s.State("G", now.Add(55*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	rNow := now.Add(56 * time.Minute)
	if err := r.AddGroup(cfg, now.Add(56*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(st, now.Add(56*time.Minute)); err != nil {
		t.Fatal(err)
	}
	restored, err := r.Join(peer("10.0.0.3"), isakmp.GroupID(7), rNow)
	if err != nil {
		t.Fatal(err)
	}
	if restored.TEKs[0].SPI != sa.TEKs[0].SPI {
		t.Fatal("keys not restored")
	}
	check(restored)

	big := cfg
	big.TEKs = []TEKPolicy{cfg.TEKs[0]}
	big.TEKs[0].Bypass = nil
	for i := 0; i < 0xffff/25+1; i++ {
		big.TEKs[0].Bypass = append(big.TEKs[0].Bypass, Bypass{0, ospf})
	}
	big.ID, big.Name = 8, "H"
	if err := New(Options{}).AddGroup(big, now); err == nil {
		t.Fatal("a deny list beyond 65,535 octets was accepted")
	}
}
