package node

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: S5 (every drop has a visible counter) — a datagram a socket
// refuses to send (the kernel's EINVAL for port 0; an IPv6 address on the
// IPv4 socket) is counted in
// socket_send_failures, by the raw sendmmsg path and by the one-call-each
// path, and the datagrams around it still go.
func TestRefusedSendsCounted(t *testing.T) {
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	s := kn.socks[0]
	if s.batch == nil {
		t.Fatal("an IPv4 UDP socket of the node's own does not batch")
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := s.batch
	for _, path := range []struct {
		name    string
		batched bool
	}{{"sendmmsg", true}, {"one call each", false}} {
		if path.batched {
			s.batch = batch
		} else {
			s.batch = nil
		}
		before := kn.stats.sendFailed
		kn.send(s, to, []byte("first"))
		kn.send(s, netip.AddrPortFrom(to.Addr(), 0), []byte("port 0"))
		kn.send(s, netip.MustParseAddrPort("[2001:db8::1]:848"), []byte("ipv6"))
		kn.send(s, to, []byte("last"))
		kn.flushSock(s)
		if got := kn.stats.sendFailed - before; got != 2 {
			t.Errorf("%s: %d sends counted as refused, want 2", path.name, got)
		}
		buf := make([]byte, 64)
		for _, want := range []string{"first", "last"} {
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := peer.Read(buf)
			if err != nil || string(buf[:k]) != want {
				t.Fatalf("%s: got %q, %v; want %q", path.name, buf[:k], err, want)
			}
		}
	}
	s.batch = batch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go kn.Run(ctx)
	var shown uint64
	kn.Do(ctx, func() { shown = counter(kn.ISAKMPCounters(), "socket_send_failures") })
	if shown != 4 {
		t.Fatalf("socket_send_failures shows %d, want 4", shown)
	}
}
