package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func ikeCfg(psk string, v version.Version) *ike.Config {
	return &ike.Config{Suites: []ike.Suite{{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK}},
		Version: v, Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte(psk), true }}}
}

func ksGroup(t testing.TB, addr netip.Addr) ks.GroupConfig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sel := []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}
	return ks.GroupConfig{Name: "GETVPN", ID: 1234, Address: addr, SigningKey: key, TEKs: []ks.TEKPolicy{
		{Transform: isakmp.ESPAESGCM16, KeyBits: 256, Lifetime: time.Hour, Selectors: sel},
		{Transform: isakmp.ESPAESCBC, KeyBits: 128, AuthAlg: isakmp.AuthAlgHMACSHA256, Lifetime: 2 * time.Hour,
			Selectors: []ks.Selector{{Proto: 17, Src: netip.MustParsePrefix("192.168.0.0/16"), Dst: netip.MustParsePrefix("192.168.0.0/16"), DstPort: 5060}}}}}
}

func start(t *testing.T, ctx context.Context, o Options) *Node {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.GM) > 0 {
		gateAcks(n) // dropAcks can make its ACKs lost
	}
	go n.Run(ctx)
	return n
}

func waitFor(t *testing.T, what string, n *Node, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		n.Do(context.Background(), func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proves: groundwork for V4, T4 — GMs register with a KS over real
// loopback UDP (phase 1 + GROUPKEY-PULL), install the group's TEKs and KEK
// with the KS's keys, and the KS records each member with its version.
func TestRegistrationOverLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	ksAP := kn.Addrs()[0]
	var gms []*Node
	for i := 0; i < 3; i++ {
		v := version.Current
		if i == 2 {
			v = version.Base
		}
		gms = append(gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.0.%d:0", 10+i))},
			IKE: ikeCfg("k", v), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}, SIDs: 1}}}))
	}
	for _, g := range gms {
		waitFor(t, "registration", g, func() bool { return g.Members()[0].State == "registered" })
	}
	var snap []ks.GroupSnapshot
	kn.Do(ctx, func() { snap = kn.ks.Snapshot(kn.Now()) })
	if len(snap) != 1 || len(snap[0].Members) != 3 {
		t.Fatalf("KS snapshot %+v", snap)
	}
	if m := snap[0].Members[2]; m.Version != version.Base || m.Address.String() != "127.0.0.12" {
		t.Fatalf("member 3: %+v", m)
	}
	sids := map[uint32]bool{}
	for _, m := range snap[0].Members {
		for _, s := range m.SenderIDs {
			if sids[s] {
				t.Fatalf("sender ID %d handed out twice", s)
			}
			sids[s] = true
		}
	}
	for _, g := range gms {
		teks := g.Dataplane().TEKs()
		keks := g.KEKStore().KEKs()
		if len(teks) != 2 || len(keks) != 1 || keks[0].SPI != snap[0].KEKSPI {
			t.Fatalf("GM holds %d TEKs, %d KEKs", len(teks), len(keks))
		}
		for _, tk := range teks {
			if !bytes.Equal(tk.EncKey, gms[0].Dataplane().TEKs()[indexOf(gms[0], tk.SPI)].EncKey) {
				t.Fatal("GMs hold different keys for the same TEK")
			}
		}
	}
}

func indexOf(n *Node, spi uint32) int {
	for i, t := range n.Dataplane().TEKs() {
		if t.SPI == spi {
			return i
		}
	}
	return -1
}

// proves: groundwork — a GM with the wrong key or an unknown group is
// refused and logged; an unreachable KS makes the GM try the next one.
func TestRegistrationFailures(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.2")
	var ksLog syncBuf
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("right", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}, Logger: slog.New(slog.NewTextHandler(&ksLog, nil))})
	ksAP := kn.Addrs()[0]

	var gmLog syncBuf
	unknown := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.21:0")}, IKE: ikeCfg("right", version.Current),
		GM: []GMGroup{{Name: "NOPE", ID: 99, Servers: []netip.AddrPort{ksAP}}}, Logger: slog.New(slog.NewTextHandler(&gmLog, nil))})
	waitFor(t, "refusal", unknown, func() bool { return strings.Contains(unknown.Members()[0].LastError, "INVALID-ID-INFORMATION") })
	if !strings.Contains(gmLog.String(), "%GDOI-4-GM_REGS_FAILED") {
		t.Fatalf("GM log lacks the failure line:\n%s", gmLog.String())
	}

	fast := func(c *ike.Config) *ike.Config {
		c.Retransmit = ike.Retransmit{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond, Tries: 3}
		return c
	}
	wrong := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.22:0")}, IKE: fast(ikeCfg("wrong", version.Current)),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}}}})
	waitFor(t, "wrong-key failure", wrong, func() bool { return wrong.Members()[0].Failures > 0 })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ksLog.String(), "pre-shared key mismatch") || !strings.Contains(ksLog.String(), "127.0.0.22") {
		if time.Now().After(deadline) {
			t.Fatalf("KS log does not name the peer and reason:\n%s", ksLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The first KS in the list does not answer (nothing listens there).
	dead := netip.MustParseAddrPort("127.0.0.3:9")
	failover := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.23:0")}, IKE: fast(ikeCfg("right", version.Current)),
		GM:         []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{dead, ksAP}}},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	waitFor(t, "registration with the second KS", failover, func() bool {
		m := failover.Members()[0]
		return m.State == "registered" && m.KS == ksAP
	})
	var m MemberState
	failover.Do(ctx, func() { m = failover.Members()[0] })
	if m.Registrations != 1 || m.Failures != 0 {
		t.Fatalf("after failover: %+v", m)
	}
}

// fakeClock is a clock the test moves by hand; the nodes read it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// proves: T4 — over 24 simulated hours every GM re-registers before its
// TEKs expire, always holds a valid TEK, and the GMs' re-registration
// instants are spread out rather than simultaneous.
func TestReregistrationOverADay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	start0 := clk.Now()
	ksAddr := netip.MustParseAddr("127.0.0.4")
	grp := ksGroup(t, ksAddr)
	grp.TEKs = grp.TEKs[:1] // one GCM TEK, lifetime 1 h
	grp.SigningKey = nil    // no KEK, so no rekeys: the GMs must re-register
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now})
	var gms []*Node
	for i := 0; i < 5; i++ {
		gms = append(gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.0.%d:0", 40+i))},
			IKE: ikeCfg("k", version.Current), Now: clk.Now,
			GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}}}}))
	}
	for _, g := range gms {
		waitFor(t, "first registration", g, func() bool { return g.Members()[0].State == "registered" })
	}
	reregs := map[time.Time]int{}
	for clk.Now().Sub(start0) < 24*time.Hour {
		clk.Add(20 * time.Second)
		now := clk.Now()
		kn.Do(ctx, func() {})
		for _, g := range gms {
			g.Do(ctx, func() {})
			// Packets cross loopback in real time; let a re-registration
			// that just started finish before the clock moves on.
			waitFor(t, "registration to settle", g, func() bool { return g.Members()[0].State == "registered" })
			valid := false
			for _, tk := range g.Dataplane().TEKs() {
				if now.Before(tk.Expires) {
					valid = true
				}
			}
			if !valid {
				t.Fatalf("at +%s a GM holds no valid TEK", now.Sub(start0))
			}
		}
	}
	for _, g := range gms {
		var m MemberState
		g.Do(ctx, func() { m = g.Members()[0] })
		if m.Registrations < 24 {
			t.Fatalf("only %d registrations in 24 h with 1 h TEKs", m.Registrations)
		}
		reregs[m.Reregister]++
	}
	if len(reregs) < 4 {
		t.Fatalf("re-registration instants not spread: %v", reregs)
	}
	var kept int
	kn.Do(ctx, func() { kept = kn.serves.len() })
	if kept > len(gms) {
		t.Fatalf("the KS still keeps %d finished GROUPKEY-PULL exchanges", kept)
	}
}

// proves: groundwork (one GM, two groups, one KS: one phase-1 SA; CI once saw
// TestCertificatesAuthorizationAndTwoGroups make two, when the second
// group's registration began while the first's main mode was in flight) —
// a GM whose two groups start registering while their KS does not answer
// yet (its first main mode still retransmitting) runs one main mode for
// both, and both groups register over that one SA once the KS is up.
func TestTwoGroupsShareAMainModeInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.6")
	pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(ksAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	ksAP := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()       // the KS's port, nobody listening yet
	t0 := time.Now() // before either main mode began: within gm.JoinWithin of both, however slow the machine
	g := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.61:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}}, {Name: "SECOND", ID: 5678, Servers: []netip.AddrPort{ksAP}}}})
	waitFor(t, "both groups waiting for phase 1", g, func() bool {
		n := 0
		for _, r := range g.regs {
			if r.m.AwaitsPhase1(ksAP) {
				n++
			}
		}
		return n == 2
	})
	var first, second gm.Phase1
	g.Do(ctx, func() {
		first, _ = g.regs[0].m.Phase1InFlight(ksAP, t0)
		second, _ = g.regs[1].m.Phase1InFlight(ksAP, t0)
	})
	if first == nil || first != second {
		t.Fatalf("two main modes in flight to one KS for two groups (%p, %p), want one", first, second)
	}
	g2 := ksGroup(t, ksAddr)
	g2.Name, g2.ID = "SECOND", 5678
	start(t, ctx, Options{Listen: []netip.AddrPort{ksAP}, IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{ksGroup(t, ksAddr), g2}})
	waitFor(t, "two registrations", g, func() bool {
		m := g.Members()
		return m[0].State == "registered" && m[1].State == "registered"
	})
	var sas int
	g.Do(ctx, func() { sas = len(g.PhaseOneSAs()) })
	if sas != 1 {
		t.Fatalf("%d phase-1 SAs for two groups with one KS, want 1", sas)
	}
}

// proves: groundwork — registration with certificates (ECDSA phase 1), the
// KS's authorization refusing an identity it does not admit, and one GM
// belonging to two groups over one phase-1 SA.
func TestCertificatesAuthorizationAndTwoGroups(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pki := newPKI(t)
	suite := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthECDSA256}
	certCfg := func(cn string) *ike.Config {
		der, key := pki.issue(t, cn)
		return &ike.Config{Suites: []ike.Suite{suite}, Creds: ike.Credentials{Chain: [][]byte{der}, Key: key, Roots: pki.pool}}
	}
	ksAddr := netip.MustParseAddr("127.0.0.5")
	g1 := ksGroup(t, ksAddr)
	g1.Authorize = func(p ks.Peer) error {
		if !strings.HasPrefix(p.CertSubject, "CN=gm-") {
			return fmt.Errorf("subject %q not admitted", p.CertSubject)
		}
		return nil
	}
	g2 := ksGroup(t, ksAddr)
	g2.Name, g2.ID = "SECOND", 5678
	var ksLog syncBuf
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: certCfg("ks"),
		KS: []ks.GroupConfig{g1, g2}, Logger: slog.New(slog.NewTextHandler(&ksLog, nil))})
	ksAP := kn.Addrs()[0]
	good := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.51:0")}, IKE: certCfg("gm-one"),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}}, {Name: "SECOND", ID: 5678, Servers: []netip.AddrPort{ksAP}}}})
	waitFor(t, "two registrations", good, func() bool {
		m := good.Members()
		return m[0].State == "registered" && m[1].State == "registered"
	})
	var sas int
	good.Do(ctx, func() { sas = len(good.PhaseOneSAs()) })
	if n := sas; n != 1 {
		t.Fatalf("%d phase-1 SAs for two groups with one KS, want 1", n)
	}
	if n := len(good.Dataplane().TEKs()); n != 4 {
		t.Fatalf("%d TEKs for two groups of two TEKs", n)
	}
	intruder := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.52:0")}, IKE: certCfg("laptop"),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}}}})
	waitFor(t, "refusal", intruder, func() bool { return strings.Contains(intruder.Members()[0].LastError, "AUTHENTICATION-FAILED") })
	if !strings.Contains(ksLog.String(), "%GDOI-1-UNAUTHORIZED_IDENTITY: Group GETVPN received registration from unauthorized identity: 127.0.0.52 (CN=laptop)") {
		t.Fatalf("KS log:\n%s", ksLog.String())
	}
}
