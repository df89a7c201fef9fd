package node

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// lastRekey reads the KS's record of group's last completed delivery.
func lastRekey(t *testing.T, n *Node, group string) (LastRekey, bool) {
	t.Helper()
	s, err := n.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lr, ok := s.LastRekeys[group]
	return lr, ok
}

// proves: O3 (issue 14 item 7: the last rekey's retransmissions and time
// taken, CISCO-GDOI-MIB cgmGdoiGroupLastRekeyRetransmits and
// cgmGdoiGroupLastRekeyTimeTaken): a delivery to a GM whose ACKs are lost
// counts its retransmission and lasts until the give-up; the next one,
// acknowledged at once, has none.
func TestLastRekeyRecorded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	ksAddr := netip.MustParseAddr("127.0.0.8")
	grp := ksGroup(t, ksAddr)
	grp.TEKs = grp.TEKs[:1]
	grp.Rekey = ks.RekeyPolicy{Unicast: true, Retransmit: 2 * time.Second, Retransmits: 1}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now})
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.81:0")}, IKE: ikeCfg("k", version.Current),
		Now: clk.Now, GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	if _, ok := lastRekey(t, kn, "GETVPN"); ok {
		t.Fatal("a last rekey before any rekey")
	}

	// ACKs lost: one retransmission, then the give-up.
	dropAcks(t, gmn, true)
	start := clk.Now()
	kn.Do(ctx, func() { kn.sendRekey("GETVPN", clk.Now()) })
	waitFor(t, "the rekey to reach the GM", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == 1 })
	for range 3 {
		clk.Add(2 * time.Second)
		kn.Do(ctx, func() {})
	}
	waitFor(t, "the delivery to end", kn, func() bool { return kn.delivery.InFlight() == 0 })
	lr, ok := lastRekey(t, kn, "GETVPN")
	if !ok || lr.Retransmits != 1 || lr.Took < 4*time.Second || lr.Took > 6*time.Second || !lr.Started.Equal(start) {
		t.Fatalf("after a rekey never acknowledged (1 retransmission at 2 s, give-up at 4 s): %+v (present %v)", lr, ok)
	}
	first := lr.Seq

	// Acknowledged at once: no retransmission, no time in fake time.
	dropAcks(t, gmn, false)
	kn.Do(ctx, func() { kn.sendRekey("GETVPN", clk.Now()) })
	for i := 0; ; i++ {
		kn.Do(ctx, func() {}) // a tick: the acknowledged delivery ends
		var n int
		kn.Do(ctx, func() { n = kn.delivery.InFlight() })
		if n == 0 {
			break
		}
		if i == 500 {
			t.Fatal("the acknowledged delivery did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lr, _ = lastRekey(t, kn, "GETVPN")
	if lr.Seq <= first || lr.Retransmits != 0 || lr.Took >= 2*time.Second {
		t.Fatalf("after an acknowledged rekey: %+v (the first had seq %d)", lr, first)
	}
}
