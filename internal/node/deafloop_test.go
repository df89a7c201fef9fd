package node

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: T1, N1 (issue 18 review: a KS reading its one socket on its loop
// keeps reading while a rekey is in flight and the group's next rekey is
// already due) — one member never acknowledges (the flight lasts 30 s) and
// half the group's sender IDs are handed out (the early rekey is due now):
// the KS still answers main mode message 1 at once. Before, the loop's
// timer stayed in the past for the whole flight and the read, its deadline
// that instant, failed before looking at the socket.
func TestKSReadsWhileARekeyIsInFlightAndAnotherDue(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	var direct, past bool
	var err error
	kn.Do(ctx, func() {
		direct = kn.direct != nil
		now := kn.o.Now()
		silent := ks.Peer{Addr: netip.MustParseAddrPort("127.0.0.99:848"), Version: version.Current}
		if _, _, err = kn.ks.Keys(silent, isakmp.GroupID(1234), 1, now); err != nil {
			return
		}
		var res ks.Result
		if res, err = kn.delivery.Rekey("GETVPN", now); err != nil {
			return
		}
		kn.apply(res)
		for i := 0; i < 1<<(ks.MinSIDBits-1)+10; i++ {
			p := ks.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 848), Version: version.Current}
			if _, _, err = kn.ks.Keys(p, isakmp.GroupID(1234), 1, now); err != nil {
				return
			}
		}
		past = !kn.ks.NextRekey("GETVPN").After(now)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !direct || !past {
		t.Fatalf("not the case under test: the KS reads on its loop %v, a rekey due %v", direct, past)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 231)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ep, err := ike.NewEndpoint(ikeCfg("k", version.Current), conn.LocalAddr().(*net.UDPAddr).AddrPort(), ike.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := ep.Initiate(kn.Addrs()[0], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conn.WriteToUDPAddrPort(out.Send[0].Data, kn.Addrs()[0])
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Read(make([]byte, 65536)); err != nil {
		t.Fatalf("no answer to main mode message 1 within 3 s while a rekey is in flight and another is due: %v", err)
	}
}

// proves: S1, N1 (issue 18 review: defence in depth) — the loop's read of
// its own socket looks at the socket even when the loop's next timer is
// already past (a role's timer bug then costs CPU, not deafness): a
// datagram waiting is read by a readDirect whose next timer was a second
// ago, however long the loop takes between setting up the read and
// reading (under -race in CI a 50 µs least deadline had passed before the
// read: the first fix).
func TestReadDirectWithPastTimerStillReads(t *testing.T) {
	kn := newIdleKS(t)
	kn.direct = kn.directSock()
	if kn.direct == nil {
		t.Fatal("a KS on one address has no socket of its own to read")
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 232)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort([]byte("hostile but waiting"), kn.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // on loopback it is queued already
	if err := kn.readDirect(context.Background(), newDirectReader(), kn.o.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := kn.direct.io.readDatagrams.Load(); got != 1 {
		t.Fatalf("%d datagrams read with the loop's timer a second past, want 1", got)
	}
	// Nothing waiting: it returns at once and keeps reading the socket.
	start := time.Now()
	if err := kn.readDirect(context.Background(), newDirectReader(), kn.o.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("a read with nothing waiting and a timer due took %s", el)
	}
	if kn.direct == nil {
		t.Fatal("an empty socket made the loop stop reading it")
	}
}

// proves: S1 (issue 18 review: nothing grows without a bound) — a datagram
// sent on a socket Refresh closed is not queued: the closed socket is no
// longer flushed, so its queue grew with every send until the peer was
// found unreachable.
func TestSendOnClosedSocketQueuesNothing(t *testing.T) {
	kn := newIdleKS(t)
	s := kn.socks[0]
	kn.send(s, netip.MustParseAddrPort("127.0.0.9:848"), []byte("x"))
	if len(s.out.q) != 1 {
		t.Fatalf("an open socket queued %d datagrams, want 1", len(s.out.q))
	}
	kn.flush()
	s.closed = true
	for range 100 {
		kn.send(s, netip.MustParseAddrPort("127.0.0.9:848"), []byte("x"))
	}
	if len(s.out.q) != 0 {
		t.Fatalf("a closed socket queued %d datagrams", len(s.out.q))
	}
}

// newIdleKS is a key server on one address of 127.0.0.1, not running
// (the test drives its loop's parts); closed when the test ends.
func newIdleKS(t *testing.T) *Node {
	t.Helper()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kn.Close)
	return kn
}
