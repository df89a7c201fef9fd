package node

import (
	"context"
	"errors"
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

// mm1 sends a main-mode message 1 from conn to ks and waits for the answer.
func mm1(t *testing.T, conn *net.UDPConn, ks netip.AddrPort) {
	t.Helper()
	ep, err := ike.NewEndpoint(ikeCfg("k", version.Current), conn.LocalAddr().(*net.UDPAddr).AddrPort(), ike.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := ep.Initiate(ks, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteToUDPAddrPort(out.Send[0].Data, ks); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 65536)); err != nil {
		t.Fatalf("no answer from %s: %v", ks, err)
	}
}

// proves: issue 18 (the KS's wake-ups per datagram) — a key server with
// one socket reads it on its loop, no reader goroutine handing batches
// over: commands from other goroutines still run at once while the loop
// waits on the socket with its next timer far off (each wakes the read),
// datagrams are answered, a Refresh that opens a second socket hands both
// to readers (both answered), and the end of the context ends Run.
func TestLoopReadsItsOnlySocket(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- kn.Run(ctx) }()
	var direct bool
	kn.Do(ctx, func() { direct = kn.direct == kn.socks[0] })
	if !direct {
		t.Fatal("a KS with one socket does not read it on its loop")
	}
	start := time.Now()
	for range 200 {
		kn.Do(ctx, func() {})
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("200 commands took %s: the loop's read is not woken", el)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 211)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mm1(t, conn, kn.Addrs()[0])

	second := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.212"), 0)
	kn.Do(ctx, func() {
		if _, _, err := kn.Refresh([]netip.AddrPort{kn.socks[0].local, second}); err != nil {
			t.Error(err)
		}
	})
	kn.Do(ctx, func() { direct = kn.direct != nil })
	if direct {
		t.Fatal("still reading on the loop with two sockets")
	}
	for _, a := range kn.Addrs() {
		mm1(t, conn, a)
	}
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}

// proves: S5 and N1 (issue 18, review: the readers' hand-over to the loop
// is bounded in datagrams, not in batches) — a key server with two
// sockets (a reader goroutine each) whose loop is busy takes at most
// inQueue datagrams (and the batch each reader holds) out of its sockets'
// receive buffers; the rest waits in the kernel, which drops what does not
// fit, and those drops show as socket_receive_drops. Before, n.in held
// 1,024 batches of up to 16: all 3,000 datagrams sat in user space.
func TestReadersHandOverBoundedDatagrams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0), netip.MustParseAddrPort("127.0.0.213:0")},
		IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	if err != nil {
		t.Fatal(err)
	}
	go kn.Run(ctx)
	busy, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go kn.Do(ctx, func() { close(busy); <-release })
	<-busy // the loop is busy until release

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 214)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 3,000 small datagrams fit in the socket's receive buffer: the
	// readers take what n.in holds and leave the rest there.
	send := func(k, size int) {
		junk := make([]byte, size) // a datagram no endpoint accepts
		for range k {
			if _, err := conn.WriteToUDPAddrPort(junk, kn.Addrs()[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := kn.socks[0]
	settled := func() uint64 { // what the readers took once they stop
		read := s.io.readDatagrams.Load()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			time.Sleep(300 * time.Millisecond)
			r := s.io.readDatagrams.Load()
			if r == read {
				break
			}
			read = r
		}
		return read
	}
	const small = 3000
	send(small, 1000)
	read := settled()
	t.Logf("loop busy: %d of %d datagrams read out of the socket, %d dropped by the kernel", read, small, kernelDrops(s.conn))
	if read > inQueue+readBatch {
		t.Fatalf("%d datagrams handed to a busy loop: more than inQueue (%d) and one batch in the reader's hand", read, inQueue)
	}
	// 60 MB more overflow the receive buffer (32 MiB): the kernel drops
	// and counts.
	send(1000, 60000)
	settled()
	drops := kernelDrops(s.conn)
	t.Logf("then 1,000 of 60,000 octets: %d dropped by the kernel", drops)
	if drops == 0 {
		t.Fatal("no drops counted")
	}
	release <- struct{}{}
	var shown uint64
	kn.Do(ctx, func() { shown = counter(kn.ISAKMPCounters(), "socket_receive_drops") })
	if shown != drops {
		t.Fatalf("socket_receive_drops shows %d, the socket dropped %d", shown, drops)
	}
}
