package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: D4 (node level) — Refresh opens a socket on a new address (a GM
// registers through it), closes the socket of an address no longer listed
// (the port is free again), and keeps the phase-1 SAs and registrations of
// the sockets that stay; a GM whose registration socket was closed
// registers again from another one.
func TestRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.60")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	primary := kn.Addrs()[0]
	alias := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.61"), primary.Port())
	gm := func(listen []string, server netip.AddrPort) *Node {
		var addrs []netip.AddrPort
		for _, a := range listen {
			addrs = append(addrs, netip.MustParseAddrPort(a))
		}
		return start(t, ctx, Options{Listen: addrs, IKE: ikeCfg("k", version.Current),
			GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{server}, SIDs: 1}}})
	}
	gm1 := gm([]string{"127.0.0.62:0"}, primary)
	waitFor(t, "gm1 registration", gm1, func() bool { return gm1.Members()[0].State == "registered" })

	refresh := func(n *Node, listen ...netip.AddrPort) (added, removed []netip.AddrPort) {
		t.Helper()
		var err error
		if derr := n.Do(ctx, func() { added, removed, err = n.Refresh(listen) }); derr != nil || err != nil {
			t.Fatalf("Refresh(%v): %v %v", listen, derr, err)
		}
		return added, removed
	}
	if added, removed := refresh(kn, primary, alias); !slices.Equal(added, []netip.AddrPort{alias}) || len(removed) != 0 {
		t.Fatalf("adding the alias: added %v, removed %v", added, removed)
	}
	gm2 := gm([]string{"127.0.0.63:0", "127.0.0.64:0"}, alias)
	waitFor(t, "gm2 registration through the alias", gm2, func() bool { return gm2.Members()[0].State == "registered" })

	if added, removed := refresh(kn, primary); len(added) != 0 || !slices.Equal(removed, []netip.AddrPort{alias}) {
		t.Fatalf("removing the alias: added %v, removed %v", added, removed)
	}
	if c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(alias)); err != nil {
		t.Fatalf("the alias's socket is still open: %v", err)
	} else {
		c.Close()
	}
	kn.Do(ctx, func() {
		if a := kn.Addrs(); !slices.Equal(a, []netip.AddrPort{primary}) {
			t.Errorf("KS serves %v", a)
		}
		p1 := kn.PhaseOneSAs()
		if len(p1) != 1 || p1[0].Peer.Addr() != netip.MustParseAddr("127.0.0.62") {
			t.Errorf("KS phase-1 SAs after the refresh: %+v", p1)
		}
	})
	gm1.Do(ctx, func() {
		if m := gm1.Members()[0]; m.State != "registered" || m.Registrations != 1 {
			t.Errorf("gm1 after the KS refresh: %+v", m)
		}
	})
	var err error
	kn.Do(ctx, func() { _, _, err = kn.Refresh(nil) })
	if err == nil {
		t.Error("Refresh to no address was accepted")
	}

	// gm2 registered from its first socket; close it and make it register
	// again (to the primary): it picks its remaining socket.
	var first netip.AddrPort
	gm2.Do(ctx, func() { first = gm2.regs[0].sock.local })
	var keep netip.AddrPort
	gm2.Do(ctx, func() {
		for _, a := range gm2.Addrs() {
			if a != first {
				keep = a
			}
		}
	})
	refresh(gm2, keep)
	stale := false
	gm2.Do(ctx, func() {
		r := gm2.regs[0]
		if stale = r.sock == nil || r.sock.closed || r.sock.local != keep; stale {
			return
		}
		r.cfg.Servers = []netip.AddrPort{primary}
		r.m.SetServers(r.cfg.Servers)
		r.m.Wake(gm2.o.Now())
	})
	if stale {
		t.Fatal("gm2's registration still points at its closed socket")
	}
	waitFor(t, "gm2 registering again from its remaining socket", gm2, func() bool {
		m := gm2.Members()[0]
		return m.State == "registered" && m.Registrations == 2
	})
}

// proves: D4, T1 (issue 11 item 12) — when a refresh removes the key
// server's configured address (`address ipv4`) from the sockets, the KS
// says so loudly (%GDOI-3-KS_ADDRESS_NOT_SERVED, once) and in its
// snapshot, and sends nothing from another address: a rekey in flight
// pauses, the scheduler and `rekey` commands send nothing; once the address
// is served again the rekeys leave from it.
func TestRekeysNeverLeaveFromAnUnconfiguredAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.160")
	grp := ksGroup(t, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	var ksLog syncBuf
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0), netip.MustParseAddrPort("127.0.0.161:0")},
		IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{grp}, Logger: slog.New(slog.NewTextHandler(&ksLog, nil))})
	primary, other := kn.Addrs()[0], kn.Addrs()[1]
	var gmLog syncBuf
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.162:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{primary}, SIDs: 1}}, Logger: slog.New(slog.NewTextHandler(&gmLog, nil))})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	dropAcks(t, gmn, true)
	kn.Do(ctx, func() {
		if err := kn.sendRekey("GETVPN", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, "the first rekey", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == 1 })

	kn.Do(ctx, func() {
		if _, _, err := kn.Refresh([]netip.AddrPort{other}); err != nil {
			t.Fatal(err)
		}
		if a := kn.UnservedAddresses()["GETVPN"]; a != ksAddr {
			t.Errorf("snapshot: unserved %v", kn.UnservedAddresses())
		}
		if kn.delivery.InFlight() != 1 || !kn.delivery.Held("GETVPN") || !kn.delivery.Flights()[0].Next.IsZero() {
			t.Errorf("the rekey in flight was not paused")
		}
		later := time.Now().Add(48 * time.Hour)
		kn.rekeyTick(later) // retransmissions and a scheduled rekey due: none may leave
		if err := kn.sendRekey("GETVPN", time.Now()); err == nil || !strings.Contains(err.Error(), "not served") {
			t.Errorf("SendRekey with the group's address gone: %v", err)
		}
		if kn.delivery.InFlight() != 1 {
			t.Errorf("%d deliveries", kn.delivery.InFlight())
		}
	})
	if got := strings.Count(ksLog.String(), "%GDOI-3-KS_ADDRESS_NOT_SERVED: Group GETVPN: key server address 127.0.0.160"); got != 1 {
		t.Fatalf("KS logged the unserved address %d times:\n%s", got, ksLog.String())
	}
	settle(t, gmn) // whatever the KS sent has arrived
	if m := gmState(t, gmn); m.Rekeys.Received != 1 || m.Rekeys.Duplicate != 0 {
		t.Fatalf("the GM received rekeys from an unconfigured address: %+v", m.Rekeys)
	}

	kn.Do(ctx, func() {
		if _, _, err := kn.Refresh([]netip.AddrPort{primary, other}); err != nil {
			t.Fatal(err)
		}
		if len(kn.UnservedAddresses()) != 0 || kn.delivery.Held("GETVPN") || kn.delivery.Flights()[0].Next.IsZero() || rekeySockAddr(kn, "GETVPN") != primary {
			t.Errorf("after the address came back: unserved %v", kn.UnservedAddresses())
		}
	})
	dropAcks(t, gmn, false)
	kn.Do(ctx, func() {
		if err := kn.sendRekey("GETVPN", time.Now()); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the rekey from the configured address", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == 2 })
	if !strings.Contains(gmLog.String(), "from 127.0.0.160 to") || strings.Contains(gmLog.String(), "from 127.0.0.161") {
		t.Fatalf("GM log:\n%s", gmLog.String())
	}
	if !strings.Contains(ksLog.String(), "KS_ADDRESS_SERVED") {
		t.Fatal("KS did not log that the address is served again")
	}
}

// rekeySockAddr is the address a group's rekeys leave from (invalid: none).
func rekeySockAddr(n *Node, group string) netip.AddrPort {
	s, err := n.rekeySock(group)
	if err != nil {
		return netip.AddrPort{}
	}
	return s.local
}
