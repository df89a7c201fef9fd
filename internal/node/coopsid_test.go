package node

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: C1 (issue 16: sender IDs disjoint across KSs, RFC 6054): the KS
// set digest travels in the ANNs end to end. KS 0 is reloaded with a third
// peer its peer does not list: once KS 1 has heard KS 0's new digest,
// both refuse registrations that need sender IDs (GCM) and count them;
// reloaded back, IDs flow again.
func TestCOOPSenderIDsRefusedWhileKSSetsDiffer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newCoopLab(t, ctx, []string{"127.0.0.131", "127.0.0.132"}, []uint8{10, 20}, nil)
	l.waitRoles("election", coop.Secondary, coop.Primary)
	id := isakmp.GroupID(1234)
	register := func(i int, gm string) error {
		var err error
		if e := l.ks[i].Do(ctx, func() {
			_, _, err = l.ks[i].ks.Keys(ks.Peer{Addr: netip.AddrPortFrom(netip.MustParseAddr(gm), 848), Version: version.Current}, id, 1, l.ks[i].Now())
		}); e != nil {
			t.Fatal(e)
		}
		return err
	}
	// until polls cond outside the nodes' loops (register enters them).
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	if err := register(1, "10.9.0.1"); err != nil {
		t.Fatalf("KS sets agree: %v", err)
	}
	reload := func(peers ...netip.Addr) {
		g := l.base
		g.Address = l.addrs[0]
		r := coopTimers
		r.Priority, r.Peers = 10, peers
		r.PeerAuth = map[netip.Addr]ks.PeerAuth{}
		for _, a := range peers {
			r.PeerAuth[a] = ks.PeerAuth{PSK: true}
		}
		g.Redundancy = &r
		var err error
		if e := l.ks[0].Do(ctx, func() { err = l.ks[0].UpdateKSPolicy(g) }); e != nil || err != nil {
			t.Fatal(e, err)
		}
	}
	reload(l.addrs[1], netip.MustParseAddr("127.0.0.133"))
	var ref *gdoi.Refusal
	until("KS 1 refuses sender IDs once it hears KS 0's new KS set", func() bool {
		return errors.As(register(1, "10.9.0.2"), &ref)
	})
	if err := register(0, "10.9.0.3"); !errors.As(err, &ref) {
		t.Fatalf("KS 0 handed out sender IDs while its peer's KS set differs: %v", err)
	}
	var refused uint64
	l.ks[1].Do(ctx, func() { refused = counter(l.ks[1].COOPCounters(), "sid_refused_ks_set") })
	if refused == 0 {
		t.Fatal("refusals not counted")
	}
	reload(l.addrs[1])
	until("sender IDs flow again once the KS sets agree", func() bool { return register(1, "10.9.0.4") == nil })
	until("KS 0 too", func() bool { return register(0, "10.9.0.5") == nil })
}
