package node

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: C1 (issue 16: a merge of three KSs — the secondary of the
// primary that loses forwards the winner's keys with activation delay 0,
// so its GMs send with the winner's TEKs at once, which the winner's GMs
// hold)
func TestCOOPPartitionMergeThreeKSs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A .231 prio 20, C .232 prio 5, B .233 prio 30.
	l := newCoopLab(t, ctx, []string{"127.0.0.231", "127.0.0.232", "127.0.0.233"}, []uint8{20, 5, 30}, nil)
	l.waitRoles("election", coop.Secondary, coop.Secondary, coop.Primary)
	gmn := l.gm("127.0.0.234", 1) // registers with C
	for _, i := range []int{0, 1} {
		l.conns[i].block(l.addrs[2], true)
		l.conns[2].block(l.addrs[i], true)
	}
	l.waitRoles("partition", coop.Primary, coop.Secondary, coop.Primary)
	if st := l.status(1); st.Primary != l.addrs[0] {
		t.Fatalf("C follows %v", st.Primary)
	}
	for _, i := range []int{0, 2} {
		// A new KEK on each side: C's GM holds A's, B's GMs B's.
		if _, err := l.ks[i].ReplaceRekey(ctx, "GETVPN", true); err != nil {
			t.Fatal(err)
		}
	}
	a := l.snap(0)
	if a.KEKSPI == l.snap(2).KEKSPI {
		t.Fatal("same KEK on both sides")
	}
	waitFor(t, "C's GM on A's keys", gmn, func() bool { return holds(gmn, a) })
	for _, i := range []int{0, 1} {
		l.conns[i].block(l.addrs[2], false)
		l.conns[2].block(l.addrs[i], false)
	}
	l.waitRoles("merge", coop.Secondary, coop.Secondary, coop.Primary)
	win := l.snap(2)
	waitFor(t, "C's GM on B's keys", gmn, func() bool { return holds(gmn, win) })
	for _, tk := range gmn.Dataplane().TEKs() {
		if tk.SPI == win.TEKs[0].SPI && tk.SendFrom.Sub(tk.Installed) > time.Second {
			t.Fatalf("C's GM sends with B's TEK only %v after it got it (activation delay not 0)", tk.SendFrom.Sub(tk.Installed))
		}
	}
}

// proves: C1, T1 (issue 16: a reload removing redundancy from a secondary
// makes it the lone primary SeqMargin above the numbers it adopted, so
// its next rekey is above any the old primary sent; a reload whose
// redundancy cannot be applied is refused and changes nothing, the
// rest of the group's policy included)
func TestCOOPReloadRedundancyRemovedAndRefused(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newCoopLab(t, ctx, []string{"127.0.0.235", "127.0.0.236"}, []uint8{10, 20}, nil)
	l.waitRoles("election", coop.Secondary, coop.Primary)
	if err := l.ks[1].Rekey(ctx, "GETVPN"); err != nil {
		t.Fatal(err)
	}
	var priSeq uint32
	l.ks[1].Do(ctx, func() { priSeq = l.ks[1].ks.Seq("GETVPN") })
	waitFor(t, "the secondary adopts the primary's number", l.ks[0], func() bool { return l.ks[0].ks.Seq("GETVPN") >= priSeq })

	// Refused: a dead interval not above the period, with another rekey
	// policy beside it; nothing of either is applied.
	g := l.base
	g.Address = l.addrs[0]
	bad := coopTimers
	bad.Priority, bad.Peers, bad.Dead = 10, []netip.Addr{l.addrs[1]}, coopTimers.Period
	g.Redundancy = &bad
	g.Rekey.MaxMissed = 7
	var err error
	var rp ks.RekeyPolicy
	l.ks[0].Do(ctx, func() { err = l.ks[0].UpdateKSPolicy(g); rp = l.ks[0].ks.RekeyPolicy("GETVPN") })
	if err == nil {
		t.Fatal("a dead interval not above the period was accepted")
	}
	if rp.MaxMissed == 7 {
		t.Fatal("a refused reload changed the group's rekey policy")
	}

	// Redundancy removed: the lone primary, SeqMargin above.
	g = l.base
	g.Address = l.addrs[0]
	var seq uint32
	var primary bool
	l.ks[0].Do(ctx, func() {
		err = l.ks[0].UpdateKSPolicy(g)
		seq, primary = l.ks[0].ks.Seq("GETVPN"), l.ks[0].ks.Primary("GETVPN")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !primary || seq < priSeq+ks.SeqMargin {
		t.Fatalf("redundancy removed: primary %v, seq %d, want at least %d", primary, seq, priSeq+ks.SeqMargin)
	}
}

// proves: C1 (issue 16: a KS that is also a GM of a group served by one
// of its COOP peers completes that registration: the phase-1 SA with
// the peer's address is a KS-KS SA and the registration's both)
func TestCOOPPeerSAServesRegistrationToo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x, p := netip.MustParseAddr("127.0.0.238"), netip.MustParseAddr("127.0.0.237")
	port := freePort(t, p)
	red := func(peer netip.Addr) *ks.Redundancy {
		r := coopTimers
		r.Priority, r.Peers = 10, []netip.Addr{peer}
		return &r
	}
	gx, gp := ksGroup(t, x), ksGroup(t, p)
	gp.SigningKey = gx.SigningKey
	gx.Redundancy, gp.Redundancy = red(p), red(x)
	other := ksGroup(t, p) // served by P alone
	other.Name, other.ID = "OTHER", 5678
	start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(p, port)}, IKE: fastIKE(ikeCfg("k", version.Current)),
		KS: []ks.GroupConfig{gp, other}, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	nx := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(x, port)}, IKE: fastIKE(ikeCfg("k", version.Current)),
		KS: []ks.GroupConfig{gx}, GM: []GMGroup{{Name: "OTHER", ID: 5678, Servers: []netip.AddrPort{netip.AddrPortFrom(p, port)}, SIDs: 1}},
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	deadline := time.Now().Add(3 * time.Second)
	for {
		var state string
		nx.Do(ctx, func() { state = nx.Members()[0].State })
		if state == "registered" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration with a COOP peer not complete after 3 s: %s", state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proves: C1 (issue 16: the KS of lower address initiates first on every
// re-initiation of the KS-KS SA — after a failure and after the peer was
// unreachable — the higher waits coopInitWait more, so that the two
// rarely initiate at once and tear down each other's SA with
// INITIAL-CONTACT)
func TestCOOPReinitiationLowerAddressFirst(t *testing.T) {
	lo, hi := netip.MustParseAddr("127.0.0.239"), netip.MustParseAddr("127.0.0.240")
	mk := func(self, peer netip.Addr) (*Node, *peerKS) {
		g := ksGroup(t, self)
		r := coopTimers
		r.Priority, r.Peers = 10, []netip.Addr{peer}
		g.Redundancy = &r
		n, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(self, 0)}, IKE: ikeCfg("k", version.Current),
			KS: []ks.GroupConfig{g}, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return n, n.ksPeers[peer]
	}
	now := time.Now()
	nl, kl := mk(lo, hi)
	nh, kh := mk(hi, lo)
	nl.coopRetry(kl, now)
	nh.coopRetry(kh, now)
	if !kl.retryAt.Before(now.Add(coopInitWait)) || kh.retryAt.Sub(kl.retryAt) < coopInitWait {
		t.Fatalf("retry after a failure: lower at +%v, higher at +%v", kl.retryAt.Sub(now), kh.retryAt.Sub(now))
	}
	// Unreachable: the SAs are deleted (none here); the lower initiates
	// at once (no socket in this test: it schedules its backoff), the
	// higher only coopInitWait later.
	kh.sa, kh.retryAt = &ike.SA{}, time.Time{}
	nh.coopUnreachable(lo, now)
	if kh.connecting != nil || kh.retryAt.Sub(now) < coopInitWait {
		t.Fatalf("higher address re-initiated %v after the peer was unreachable (connecting %v)", kh.retryAt.Sub(now), kh.connecting != nil)
	}
}

// proves: C1 (issue 16: a reload that removes the primary from a
// secondary's peers makes it primary, and it rekeys the GMs the removed
// primary had announced, as after a failover: they hold the keys it
// adopted)
func TestCOOPReloadRemovingPrimaryInheritsItsMembers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newCoopLab(t, ctx, []string{"127.0.0.241", "127.0.0.242"}, []uint8{10, 20}, nil)
	l.waitRoles("election", coop.Secondary, coop.Primary)
	gm := netip.MustParseAddr("127.0.0.243")
	l.gm(gm.String(), 1)
	waitFor(t, "the secondary lists the primary's GM", l.ks[0], func() bool {
		_, members := l.ks[0].ks.Features("GETVPN", version.Current)
		return len(members) == 1
	})
	g := l.base
	g.Address = l.addrs[0]
	r := coopTimers
	r.Priority = 10
	g.Redundancy = &r
	var err error
	var has bool
	l.ks[0].Do(ctx, func() {
		err = l.ks[0].UpdateKSPolicy(g)
		for _, a := range l.ks[0].ks.MemberAddrs("GETVPN") {
			has = has || a == gm
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.role(0) != coop.Primary || !has {
		t.Fatalf("primary removed by reload: role %v, its GM inherited %v", l.role(0), has)
	}
}
