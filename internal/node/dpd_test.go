package node

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// Tests of issue 14 item 2 (crypto isakmp keepalive): a member finds its
// dead key server by dead peer detection, over real loopback UDP, on a
// fake clock moved in 100 ms steps.

// keepalive is IOS's crypto isakmp keepalive 10 2: a probe after 10 s
// without proof of life, R-U-THERE every 2 s, 5 unanswered: dead.
var keepalive = ike.DPD{Interval: 10 * time.Second, Retry: 2 * time.Second}

// dpdLab is key servers and one member on one fake clock.
type dpdLab struct {
	t    *testing.T
	ctx  context.Context
	clk  *fakeClock
	grp  ks.GroupConfig
	kss  []*Node
	stop []context.CancelFunc
	gm   *Node
}

func (l *dpdLab) startKS(at netip.AddrPort) int {
	kctx, stop := context.WithCancel(l.ctx)
	l.kss = append(l.kss, start(l.t, kctx, Options{Listen: []netip.AddrPort{at}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{l.grp}, Now: l.clk.Now}))
	l.stop = append(l.stop, stop)
	return len(l.kss) - 1
}

// kill stops key server i as kill -9 would: no Delete, its SAs vanish.
func (l *dpdLab) kill(i int) {
	l.stop[i]()
	<-l.kss[i].stopped
	l.kss[i] = nil
}

// pump moves the clock in steps of 100 ms, waking every live node, until
// cond holds or limit has passed; it returns the simulated time taken.
func (l *dpdLab) pump(limit time.Duration, cond func() bool) (time.Duration, bool) {
	const step = 100 * time.Millisecond
	var spent time.Duration
	for {
		var ok bool
		l.gm.Do(l.ctx, func() { ok = cond() })
		if ok {
			return spent, true
		}
		if spent >= limit {
			return spent, false
		}
		l.clk.Add(step)
		spent += step
		for _, k := range l.kss {
			if k != nil {
				k.Do(l.ctx, func() {})
			}
		}
		l.gm.Do(l.ctx, func() {})
		time.Sleep(3 * time.Millisecond) // datagrams cross in real time
	}
}

func (l *dpdLab) member() MemberState { return l.gm.Members()[0] }

// dpdStats sums the member's endpoints' DPD counters; use inside Do.
func (l *dpdLab) dpdStats() (st ike.Stats) {
	for _, s := range l.gm.socks {
		st.DPDSent += s.ep.Stats.DPDSent
		st.DPDAcked += s.ep.Stats.DPDAcked
		st.DPDDead += s.ep.Stats.DPDDead
	}
	return st
}

func newDPDLab(t *testing.T, ctx context.Context, ksAddrs []netip.AddrPort, gmAddr netip.AddrPort) *dpdLab {
	l := &dpdLab{t: t, ctx: ctx, clk: &fakeClock{now: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)},
		grp: ksGroup(t, ksAddrs[0].Addr())}
	l.grp.Rekey = ks.RekeyPolicy{Unicast: true}
	var servers []netip.AddrPort
	for _, a := range ksAddrs {
		l.startKS(a)
		servers = append(servers, l.kss[len(l.kss)-1].Addrs()[0])
	}
	cfg := ikeCfg("k", version.Current)
	cfg.DPD = keepalive
	l.gm = start(t, ctx, Options{Listen: []netip.AddrPort{gmAddr}, IKE: cfg, Now: l.clk.Now,
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: servers, SIDs: 1}}})
	waitFor(t, "registration", l.gm, func() bool { return l.member().State == "registered" })
	return l
}

// proves: S7 (issue 14 item 2: keepalive) — a member with crypto isakmp
// keepalive 10 2 probes its key server while it answers and stays with
// it; once the key server is killed (no Delete: its SAs just vanish) the
// member declares it dead SECONDS + 5*RETRY after the last proof of life
// and registers with the next key server of its list at once.
func TestDPDFailsOverToNextKS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newDPDLab(t, ctx, []netip.AddrPort{netip.MustParseAddrPort("127.0.91.1:0"), netip.MustParseAddrPort("127.0.91.2:0")},
		netip.MustParseAddrPort("127.0.91.10:0"))
	ks1, ks2 := l.kss[0].Addrs()[0], l.kss[1].Addrs()[0]
	if m := l.member(); m.KS != ks1 {
		t.Fatalf("registered with %s, want the first KS %s", m.KS, ks1)
	}

	// 35 s with the KS alive: three probes answered, nothing else.
	l.pump(35*time.Second, func() bool { return false })
	var st ike.Stats
	l.gm.Do(ctx, func() { st = l.dpdStats() })
	if m := l.member(); m.KS != ks1 || m.State != "registered" || m.Registrations != 1 || st.DPDAcked < 3 || st.DPDDead != 0 {
		t.Fatalf("with the KS alive: member %+v, DPD %+v", m, st)
	}

	// The last proof of life is the last ACK; the KS dies right after it.
	var alive time.Time
	l.gm.Do(ctx, func() {
		for _, s := range l.gm.socks {
			for _, sa := range s.ep.SAs() {
				if sa.Peer() == ks1 {
					alive = sa.DPDState().LastAlive
				}
			}
		}
	})
	l.kill(0)
	bound := keepalive.Interval + ike.DefaultDPDTries*keepalive.Retry
	var deadAt time.Time
	took, ok := l.pump(bound+5*time.Second, func() bool {
		if deadAt.IsZero() && l.dpdStats().DPDDead > 0 {
			deadAt = l.clk.Now()
		}
		m := l.member()
		return m.KS == ks2 && m.State == "registered" && m.Registrations == 2
	})
	if !ok {
		t.Fatalf("no registration with %s %v after the kill: %+v", ks2, took, l.member())
	}
	if d := deadAt.Sub(alive); d < bound || d > bound+200*time.Millisecond {
		t.Fatalf("KS declared dead %v after its last ACK, want SECONDS+5*RETRY = %v", d, bound)
	}
	if d := l.clk.Now().Sub(deadAt); d > time.Second {
		t.Fatalf("registered with the next KS %v after the verdict, want at once", d)
	}
	t.Logf("dead %v after the last ACK (%v after the kill), registered with the next KS %v later",
		deadAt.Sub(alive), took, l.clk.Now().Sub(deadAt))
}

// proves: S7 (issue 14 item 2: keepalive) — a member whose only key
// server is killed declares it dead by dead peer detection, keeps its keys,
// and registers again with the key server once it is restarted on the
// same address.
func TestDPDReregistersWithRestartedKS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newDPDLab(t, ctx, []netip.AddrPort{netip.MustParseAddrPort("127.0.92.1:0")}, netip.MustParseAddrPort("127.0.92.10:0"))
	ks1 := l.kss[0].Addrs()[0]
	l.kill(0)
	bound := keepalive.Interval + ike.DefaultDPDTries*keepalive.Retry
	took, ok := l.pump(bound+time.Second, func() bool { return l.dpdStats().DPDDead == 1 })
	if !ok {
		t.Fatalf("KS not declared dead within %v", bound+time.Second)
	}
	var teks int
	l.gm.Do(ctx, func() { teks = len(l.gm.dp.TEKs()) })
	if m := l.member(); m.State != "phase 1" || m.LastError == "" || teks == 0 {
		t.Fatalf("after the verdict: %+v, %d TEKs (want keys kept, error noted, phase 1 started)", m, teks)
	}
	l.pump(3*time.Second, func() bool { return false }) // the member knocks on a closed door
	l.startKS(ks1)
	took2, ok := l.pump(2*time.Minute, func() bool {
		m := l.member()
		return m.KS == ks1 && m.Registrations == 2 && m.State == "registered"
	})
	if !ok {
		t.Fatalf("not registered with the restarted KS: %+v", l.member())
	}
	t.Logf("dead after %v; registered with the restarted KS %v after its start", took, took2)
	var err error
	l.gm.Do(ctx, func() {
		if l.dpdStats().DPDDead != 1 {
			err = errors.New("more than one verdict")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
