package node

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: O4, T1 — a key server restarted from its store keeps its KEK,
// TEKs, members and sequence number: its next rekey is accepted by a GM
// that registered with the previous incarnation, without re-registering.
func TestKSRestartFromStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "ks.db")
	ksAddr := netip.MustParseAddr("127.0.0.11")
	grp := ksGroup(t, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	startKS := func(port uint16) (*Node, context.CancelFunc, *store.Store) {
		st, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		kctx, kcancel := context.WithCancel(ctx)
		n := start(t, kctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, port)}, IKE: ikeCfg("k", version.Current),
			KS: []ks.GroupConfig{grp}, Store: st})
		return n, kcancel, st
	}
	kn, stop, st := startKS(0)
	port := kn.Addrs()[0].Port()
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.110:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	kn.Do(ctx, func() { kn.sendRekey("GETVPN", time.Now()) })
	waitFor(t, "first rekey", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == 1 })
	time.Sleep(1100 * time.Millisecond) // let the once-a-second member save run
	kn.Do(ctx, func() {})
	stop()
	time.Sleep(50 * time.Millisecond)
	st.Close()

	kn2, _, _ := startKS(port)
	var members int
	kn2.Do(ctx, func() { members = len(kn2.ks.Snapshot(kn2.Now())[0].Members) })
	if members != 1 {
		t.Fatalf("restarted KS knows %d members", members)
	}
	kn2.Do(ctx, func() {
		if err := kn2.sendRekey("GETVPN", time.Now()); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "rekey from the restarted KS", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == 2 })
	if m := gmState(t, gmn); m.Registrations != 1 || m.Rekeys.Rejected != 0 || m.Rekeys.Replayed != 0 || m.Seq != 2 {
		t.Fatalf("GM after the KS restart: %+v", m)
	}
}

// proves: O4 (issue 11 item 1) — a KS writes every member that registered
// to its store within the save interval even when nothing happens after
// the registration: two GMs register within one interval, so the second
// falls after the first save, and its save is a timer of the event loop,
// not a side effect of the next datagram or command.
func TestKSSavesMembersWithNoLaterEvent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "ks.db")
	ksAddr := netip.MustParseAddr("127.0.0.12")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}, Store: st})
	var gms []*Node
	for _, a := range []string{"127.0.0.120:0", "127.0.0.121:0"} {
		gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(a)}, IKE: ikeCfg("k", version.Current),
			GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
		gms = append(gms, gmn)
	}
	for _, gmn := range gms {
		waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	}
	wait := ks.SaveInterval + 2*time.Second
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		gs, err := st.LoadGroups()
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) == 1 && len(gs[0].Members) == 2 {
			return
		}
		if time.Now().After(deadline) {
			n := 0
			if len(gs) > 0 {
				n = len(gs[0].Members)
			}
			t.Fatalf("the store holds %d of 2 members %v after the registrations", n, wait)
		}
	}
}
