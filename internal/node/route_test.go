package node

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: T4 (issue 15: what the event loop asks the host is injected) — a
// GM with two sockets registers from the one bound to the address
// Options.SourceFor names for its KS (the kernel's routing by default),
// and joins nothing it was not told about.
func TestGMRegistersFromTheSourceItIsGiven(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.200")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	want := netip.MustParseAddr("127.0.0.202")
	var asked []netip.AddrPort
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.201:0"), netip.AddrPortFrom(want, 0)},
		IKE: ikeCfg("k", version.Current), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}},
		SourceFor: func(peer netip.AddrPort) (netip.Addr, error) {
			asked = append(asked, peer) // off the loop; read after its answer came back through it
			return want, nil
		}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	gmn.Do(ctx, func() {
		if got := gmn.regs[0].sock.local.Addr(); got != want || len(asked) == 0 || asked[0] != kn.Addrs()[0] {
			t.Fatalf("registered from %s (SourceFor asked for %v), want %s", got, asked, want)
		}
	})
	var members []netip.Addr
	kn.Do(ctx, func() { members = kn.ks.MemberAddrs("GETVPN") })
	if len(members) != 1 || members[0] != want {
		t.Fatalf("the KS sees members %v, want %s", members, want)
	}
}

// proves: T4 (issue 15: nothing in the event loop dials behind its back) —
// the source lookup (Options.SourceFor; the default dials) runs off the
// event loop: while it blocks, the loop still answers Do and State, the
// member waits, and once it answers the GM registers from the address it
// names. A loop that called SourceFor itself would hang in Do here.
func TestSourceLookupOffTheLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.203")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	want := netip.MustParseAddr("127.0.0.205")
	asked, release := make(chan netip.AddrPort, 8), make(chan struct{})
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.204:0"), netip.AddrPortFrom(want, 0)},
		IKE: ikeCfg("k", version.Current), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}},
		SourceFor: func(peer netip.AddrPort) (netip.Addr, error) {
			asked <- peer
			<-release
			return want, nil
		}})
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("SourceFor was not asked")
	}
	// The lookup blocks: the loop answers all the same.
	for range 3 {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		if err := gmn.Do(dctx, func() {}); err != nil {
			t.Fatalf("Do while the source lookup blocks: %v (the loop performs the lookup)", err)
		}
		if _, err := gmn.State(dctx); err != nil {
			t.Fatalf("State while the source lookup blocks: %v", err)
		}
		dcancel()
		var st string
		gmn.Do(ctx, func() { st = gmn.Members()[0].State })
		if st == "registered" {
			t.Fatalf("registered (%s) before the source lookup answered", st)
		}
	}
	close(release)
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	var members []netip.Addr
	kn.Do(ctx, func() { members = kn.ks.MemberAddrs("GETVPN") })
	if len(members) != 1 || members[0] != want {
		t.Fatalf("the KS sees members %v, want %s", members, want)
	}
}
