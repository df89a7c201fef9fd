package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// restartLab is a KS restarted from its store on the same address and
// port, and GMs registered with it, all on one fake clock that the test
// moves in small steps while datagrams cross loopback in real time.
type restartLab struct {
	t     *testing.T
	ctx   context.Context
	clk   *fakeClock
	path  string
	addr  netip.AddrPort
	grp   ks.GroupConfig
	ks    *Node
	stop  context.CancelFunc
	st    *store.Store
	gms   []*Node
	extra func(*Options) // edits the KS's options (tests of other faults)
}

func newRestartLab(t *testing.T, ctx context.Context, ksAddr netip.Addr, gms int, gmBase byte) *restartLab {
	return newRestartLabWith(t, ctx, ksAddr, gms, gmBase, nil)
}

// newRestartLabWith opens the GMs' sockets with listen (nil: plain UDP).
func newRestartLabWith(t *testing.T, ctx context.Context, ksAddr netip.Addr, gms int, gmBase byte, listen func(netip.AddrPort) (PacketConn, error)) *restartLab {
	l := &restartLab{t: t, ctx: ctx, clk: &fakeClock{now: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)},
		path: filepath.Join(t.TempDir(), "ks.db"), grp: ksGroup(t, ksAddr)}
	l.grp.Rekey = ks.RekeyPolicy{Unicast: true}
	l.grp.TEKs = l.grp.TEKs[:1] // 1 h: a removal-now's jitter window is 72 s
	l.startKS(netip.AddrPortFrom(ksAddr, 0))
	l.addr = l.ks.Addrs()[0]
	for i := 0; i < gms; i++ {
		l.gms = append(l.gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.%d.%d:0", gmBase, 10+i))},
			IKE: ikeCfg("k", version.Current), Now: l.clk.Now, ListenPacket: listen,
			GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{l.addr}, SIDs: 1}}}))
	}
	for _, g := range l.gms {
		waitFor(t, "registration", g, func() bool { return g.Members()[0].State == "registered" })
	}
	return l
}

func (l *restartLab) startKS(at netip.AddrPort) {
	st, err := store.Open(l.path, store.Options{})
	if err != nil {
		l.t.Fatal(err)
	}
	kctx, stop := context.WithCancel(l.ctx)
	o := Options{Listen: []netip.AddrPort{at}, IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{l.grp}, Store: st, Now: l.clk.Now}
	if l.extra != nil {
		l.extra(&o)
	}
	l.ks, l.stop, l.st = start(l.t, kctx, o), stop, st
}

// restart stops the KS (its phase-1 SAs die with it, as with kill -9) and
// starts a new one from the same store on the same address.
func (l *restartLab) restart() {
	l.ks.Do(l.ctx, func() {}) // let the pending member save run
	l.stop()
	time.Sleep(50 * time.Millisecond)
	l.st.Close()
	l.startKS(l.addr)
}

// pump moves the clock in steps of 100 ms, waking every node, until cond
// holds or limit has passed; it returns the simulated time taken.
func (l *restartLab) pump(limit time.Duration, cond func() bool) (time.Duration, bool) {
	const step = 100 * time.Millisecond
	var spent time.Duration
	for {
		if cond() {
			return spent, true
		}
		if spent >= limit {
			return spent, false
		}
		l.clk.Add(step)
		spent += step
		l.ks.Do(l.ctx, func() {})
		for _, g := range l.gms {
			g.Do(l.ctx, func() {})
		}
		time.Sleep(3 * time.Millisecond) // datagrams cross in real time
	}
}

// current reports whether every GM is registered and holds every TEK the
// KS holds now, unexpired.
func (l *restartLab) current() bool {
	var spis []uint32
	l.ks.Do(l.ctx, func() {
		for _, tk := range l.ks.ks.Snapshot(l.ks.Now())[0].TEKs {
			spis = append(spis, tk.SPI)
		}
	})
	now := l.clk.Now()
	for _, g := range l.gms {
		ok := true
		g.Do(l.ctx, func() {
			if g.Members()[0].State != "registered" {
				ok = false
				return
			}
			held := map[uint32]bool{}
			for _, tk := range g.Dataplane().TEKs() {
				if now.Before(tk.Expires) {
					held[tk.SPI] = true
				}
			}
			for _, s := range spis {
				ok = ok && held[s]
			}
		})
		if !ok {
			return false
		}
	}
	return true
}

// proves: S7, O4 (issue 11 item 1) — GMs whose KS was restarted from its
// store (so it lost every phase-1 SA) hold the KS's valid TEKs again within
// their jitter window + 10 s, after a removal-now sent by the restarted KS
// and after a plain re-registration. The restarted KS answers the pull over
// the old SA with INVALID-COOKIE, and the GM runs a fresh main mode with
// the same KS at once (well within the 5 s pull timeout), deleting the old
// SA once the new one is established. Without the fix the GMs pull over
// the dead SA forever.
func TestGMsRecoverFromARestartedKS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLab(t, ctx, netip.MustParseAddr("127.0.0.130"), 3, 1)
	l.pump(2*time.Second, func() bool { return false }) // member records saved
	l.restart()

	// clear crypto gdoi ks members now, on the restarted KS.
	l.ks.Do(ctx, func() {
		if _, err := l.ks.sendRemoval("GETVPN", true, l.clk.Now()); err != nil {
			t.Error(err)
		}
	})
	window := max(time.Hour/50, time.Second) // removal-now jitter for 1 h TEKs
	took, ok := l.pump(window+10*time.Second, l.current)
	if !ok {
		for _, g := range l.gms {
			t.Logf("GM: %+v", gmState(t, g))
		}
		t.Fatalf("after removal-now from the restarted KS, the GMs hold no current keys %s later (bound: %s)", took, window+10*time.Second)
	}
	t.Logf("removal-now after a KS restart: every GM current again after %s (simulated)", took)
	for _, g := range l.gms {
		var p1 int
		g.Do(ctx, func() { p1 = len(g.PhaseOneSAs()) })
		if m := gmState(t, g); m.Registrations != 2 || p1 != 1 {
			t.Fatalf("GM after recovery: %d phase-1 SAs (the old one must be deleted), %+v", p1, m)
		}
	}

	// A plain re-registration (its timer fired) after another restart.
	l.restart()
	for _, g := range l.gms {
		g.Do(ctx, func() { g.regs[0].m.Wake(l.clk.Now()) })
	}
	took, ok = l.pump(10*time.Second, func() bool {
		for _, g := range l.gms {
			if gmState(t, g).Registrations != 3 {
				return false
			}
		}
		return l.current()
	})
	if !ok {
		t.Fatalf("re-registration after a KS restart: GMs not registered %s later", took)
	}
	t.Logf("re-registration after a KS restart: every GM registered after %s (simulated)", took)
	if took >= 5*time.Second {
		t.Fatalf("re-registration took %s: the INVALID-COOKIE hint was not acted on (the pull timeout is 5 s)", took)
	}
	for _, g := range l.gms {
		if m := gmState(t, g); m.Failures != 0 {
			t.Fatalf("GM failed over instead of starting a fresh phase 1: %+v", m)
		}
		var hints uint64
		g.Do(ctx, func() { hints = counter(g.GMCounters(), "peer_lost_state_hints") })
		if hints < 2 {
			t.Fatalf("GM acted on %d INVALID-COOKIE hints, want one per restart", hints)
		}
	}
}

// hintless is a GM socket on a network that loses every unprotected
// Informational (the restarted KS's INVALID-COOKIE hints).
type hintless struct{ *net.UDPConn }

func (c hintless) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		k, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil || k < isakmp.HeaderLen || isakmp.ExchangeType(b[18]) != isakmp.ExchangeInformational || b[19]&byte(isakmp.FlagEncryption) != 0 {
			return k, from, err
		}
	}
}

// proves: S7 (issue 11 item 1) — without the KS's INVALID-COOKIE hint (lost
// on the way), a GM whose KS restarted gives up on its old SA after one
// unanswered pull timeout (5 s) and registers over a fresh main mode with
// the same KS, without failing over: back within 10 s.
func TestGMsRecoverFromARestartedKSWithoutTheHint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLabWith(t, ctx, netip.MustParseAddr("127.0.0.135"), 2, 4, func(a netip.AddrPort) (PacketConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		return hintless{c}, err
	})
	l.pump(2*time.Second, func() bool { return false })
	l.restart()
	for _, g := range l.gms {
		g.Do(ctx, func() { g.regs[0].m.Wake(l.clk.Now()) })
	}
	took, ok := l.pump(10*time.Second, func() bool {
		for _, g := range l.gms {
			if gmState(t, g).Registrations != 2 {
				return false
			}
		}
		return l.current()
	})
	if !ok {
		t.Fatalf("GMs not registered again %s after the KS restart", took)
	}
	t.Logf("without the hint: every GM registered after %s (simulated)", took)
	for _, g := range l.gms {
		var giveUps, hints uint64
		g.Do(ctx, func() {
			giveUps, hints = counter(g.GMCounters(), "pulls_unanswered_fresh_phase1"), counter(g.GMCounters(), "peer_lost_state_hints")
		})
		if m := gmState(t, g); m.Failures != 0 || giveUps != 1 || hints != 0 {
			t.Fatalf("GM: %d give-ups, %d hints, %+v", giveUps, hints, m)
		}
	}
}

// proves: O4, T1 (issue 11 item 10) — a rekey interrupted by a KS restart
// is resumed: the restarted KS sends the stored datagram again to exactly
// the members that had not acknowledged it (they ACK it as a duplicate and
// the delivery completes), and not to the member that had.
func TestInterruptedRekeyResumedAfterRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLab(t, ctx, netip.MustParseAddr("127.0.0.170"), 3, 2)
	for _, g := range l.gms[1:] {
		dropAcks(t, g, true)
	}
	l.ks.Do(ctx, func() {
		if err := l.ks.sendRekey("GETVPN", l.clk.Now()); err != nil {
			t.Fatal(err)
		}
	})
	for _, g := range l.gms {
		waitFor(t, "the rekey", g, func() bool { return g.Members()[0].Rekeys.Received == 1 })
	}
	acked := l.gms[0].Addrs()[0].Addr()
	waitFor(t, "the first GM's ACK", l.ks, func() bool {
		for _, m := range l.ks.ks.Snapshot(l.ks.Now())[0].Members {
			if m.Address == acked {
				return m.AcksReceived == 1
			}
		}
		return false
	})
	l.pump(2*time.Second, func() bool { return false }) // the state with its in-flight rekey is saved
	for _, g := range l.gms[1:] {
		dropAcks(t, g, false) // ACKs reach the restarted KS
	}
	l.restart()
	took, ok := l.pump(5*time.Second, func() bool {
		var left int
		l.ks.Do(ctx, func() { left = l.ks.delivery.InFlight() })
		return left == 0 && gmState(t, l.gms[1]).Rekeys.Duplicate == 1 && gmState(t, l.gms[2]).Rekeys.Duplicate == 1
	})
	if !ok {
		t.Fatalf("resumed rekey not delivered after %s: %+v %+v", took, gmState(t, l.gms[1]).Rekeys, gmState(t, l.gms[2]).Rekeys)
	}
	if m := gmState(t, l.gms[0]); m.Rekeys.Duplicate != 0 || m.Rekeys.Replayed != 0 {
		t.Fatalf("the member that had acknowledged got the rekey again: %+v", m.Rekeys)
	}
	for _, m := range ksMembers(t, l.ks) {
		if m.Address != acked && m.AcksReceived != 1 {
			t.Fatalf("restarted KS: member %s acknowledged %d times", m.Address, m.AcksReceived)
		}
	}
}

// proves: S7 (issue 11 item 1) — a pull over a fresh phase-1 SA that the
// KS never answers fails over to the next KS within three pull timeouts
// (the bound documented in docs/operations.md), and the GM registers there.
func TestUnansweredPullFailsOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A peer that completes phase 1 but serves no group: it drops pulls.
	mute := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.190:0")}, IKE: ikeCfg("k", version.Current)})
	ksAddr := netip.MustParseAddr("127.0.0.191")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	const timeout = 200 * time.Millisecond
	began := time.Now()
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.192:0")}, IKE: ikeCfg("k", version.Current),
		PullTimeout: timeout, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{mute.Addrs()[0], kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration with the second KS", gmn, func() bool {
		m := gmn.Members()[0]
		return m.State == "registered" && m.KS == kn.Addrs()[0]
	})
	took := time.Since(began)
	m := gmState(t, gmn)
	if m.Failures != 0 || took < 3*timeout || took > 3*timeout+2*time.Second {
		t.Fatalf("registered after %s (bound %s + a phase 1): %+v", took, 3*timeout, m)
	}
	var unmatched uint64
	mute.Do(ctx, func() { unmatched = counter(mute.GMCounters(), "pulls_unmatched") })
	if unmatched != 3 {
		t.Fatalf("the mute peer counted %d dropped pulls, want the 3 transmissions", unmatched)
	}
	t.Logf("failed over after an unanswered pull and registered in %s", took)
}
