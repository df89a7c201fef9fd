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
)

// proves: issue 18 (registrations per second: the KS reads and writes many
// datagrams per system call) — 48 main-mode messages 1 waiting in a KS's
// socket when its loop starts are read by a few recvmmsg calls and the 48
// answers leave by a few sendmmsg calls, not one system call per datagram
// each way, and each initiator gets its own answer.
func TestDatagramsBatchedPerSystemCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	if kn.socks[0].batch == nil {
		t.Fatal("an IPv4 UDP socket of the node's own does not batch")
	}
	ksAP := kn.Addrs()[0]
	const clients, perClient = 3, 16 // within ike's half-open SAs per peer (16)
	var conns []*net.UDPConn
	now := time.Now()
	for c := range clients {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(201 + c)}), 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
		ep, err := ike.NewEndpoint(ikeCfg("k", version.Current), conn.LocalAddr().(*net.UDPAddr).AddrPort(), ike.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for range perClient {
			_, out, err := ep.Initiate(ksAP, now)
			if err != nil || len(out.Send) != 1 {
				t.Fatalf("initiate: %v, %d datagrams", err, len(out.Send))
			}
			if _, err := conn.WriteToUDPAddrPort(out.Send[0].Data, ksAP); err != nil {
				t.Fatal(err)
			}
		}
	}
	go kn.Run(ctx)
	buf := make([]byte, 65536)
	for _, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := range perClient {
			if _, err := conn.Read(buf); err != nil {
				t.Fatalf("%s: answer %d: %v", conn.LocalAddr(), i, err)
			}
		}
	}
	var io *sockIO
	kn.Do(ctx, func() { io = &kn.socks[0].io })
	reads, read := io.readCalls.Load(), io.readDatagrams.Load()
	var sends, sent uint64
	kn.Do(ctx, func() { sends, sent = io.sendCalls, io.sent })
	t.Logf("%d datagrams read in %d calls, %d sent in %d calls", read, reads, sent, sends)
	const total = clients * perClient
	if read != total || sent != total {
		t.Fatalf("read %d, sent %d datagrams, want %d each", read, sent, total)
	}
	if reads > total/readBatch+2 || sends > total/readBatch+2 {
		t.Fatalf("%d read calls and %d send calls for %d datagrams each way: not batched", reads, sends, total)
	}
}
