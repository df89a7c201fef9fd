package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
)

// proves: C1 (issue 16: `groupvpn lab --key-servers 2`: two cooperating key
// servers with the lab's timers elect the one of higher priority, ks1,
// within the election wait, both show it in the COOP lines of `show crypto
// gdoi`, `show crypto gdoi ks coop` shows the configured timers, and the
// members the secondary registered hold the primary's KEK and TEKs)
func TestLabCOOPElection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 3, Port: 21870, Dir: t.TempDir(), KeyServers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// `timers announce 2`, `timers dead 6`, `timers election-wait 2` in
	// the generated configurations reach the election.
	r := l.KeyServer(0).Ctl.Exec(ctx, "show crypto gdoi ks coop")
	for _, w := range []string{"Announcement Period: 2 secs", "Dead Interval: 6 secs", "Election Wait: 2 secs"} {
		if !strings.Contains(r.Text, w) {
			t.Errorf("ks1's show crypto gdoi ks coop lacks %q (the configured timers do not reach the node):\n%s", w, r.Text)
		}
	}
	p, rs, err := l.WaitPrimary(ctx, LabCOOPWait+2*LabCOOPDead)
	if err != nil {
		t.Fatal(err)
	}
	if p != 0 {
		t.Fatalf("primary %s; want ks1 (priority 100): %s", l.KSName(p), RolesLine(rs))
	}
	// gm2 lists ks2 first: the secondary registered it, with the
	// primary's policy and keys.
	if r := l.KeyServer(1).Ctl.Exec(ctx, "show crypto gdoi ks members"); !strings.Contains(r.Text, "127.0.2.2") {
		t.Errorf("ks2 did not register gm2:\n%s", r.Text)
	}
	if keks, sets := l.Keys(ctx).Sets(); keks != 1 || sets != 1 {
		t.Errorf("the members registered with ks1 and ks2 hold %d KEKs and %d TEK sets; want the primary's one", keks, sets)
	}
	var b strings.Builder
	l.COOPLines(ctx, &b)
	if !strings.Contains(b.String(), "Local KS Role        : Primary") || !strings.Contains(b.String(), "Local KS Role        : Secondary") {
		t.Errorf("the COOP lines do not show one primary and one secondary:\n%s", b.String())
	}
}

// proves: C1 (issue 16: the lab survives killing the primary) — under live
// numbered traffic between 4 members, the primary is killed (kill -9); ks2
// is primary within the dead interval plus one announcement period, its
// rekey reaches every member, no packet is lost, no member is ever seen
// without a live TEK (200 ms samples), and ks1 returns as a secondary.
func TestLabCOOPFailover(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := NewLive(time.Second)
	l, err := Start(ctx, Options{Members: 4, Port: 21872, Dir: t.TempDir(), KeyServers: 2, DataPlane: true, Deliver: live.Deliver})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := live.Start(ctx, l, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep, err := l.Failover(ctx, &out)
	ss := live.Stop(ctx)
	t.Logf("%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	tot := flowmeter.Total(ss)
	t.Logf("takeover %s (dead %s), rekey accepted in %s, %d packets sent, %d lost, longest gap %s, %d without TEK",
		rep.Takeover, rep.Dead, rep.RekeyAccepted, tot.Sent, tot.Lost, tot.LongestGap, rep.NoTEK)
	if rep.NewPrimary != 1 || rep.Takeover > rep.Dead+LabCOOPPeriod {
		t.Errorf("new primary %s after %s; want ks2 within %s", l.KSName(rep.NewPrimary), rep.Takeover, rep.Dead+LabCOOPPeriod)
	}
	if tot.Sent == 0 || tot.Lost > 0 || rep.NoTEK > 0 || !rep.Rejoined || rep.KEKs != 1 {
		t.Errorf("sent %d, lost %d, %d members without a TEK, ks1 back as secondary %v, %d KEKs", tot.Sent, tot.Lost, rep.NoTEK, rep.Rejoined, rep.KEKs)
	}
}
