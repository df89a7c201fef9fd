package node

import (
	"context"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
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
