package loadgen

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: issue 18 (one socket for every GM) — a datagram sent through the
// shared socket with another GM's address in IP_PKTINFO reaches a plain
// UDP socket from that address, and the answer to that address comes back
// on the shared socket with it as the destination, for two GMs in turn.
func TestConnSendsAndReceivesAsEachAddress(t *testing.T) {
	c, err := Listen(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, gm := range []netip.Addr{netip.MustParseAddr("127.64.0.5"), netip.MustParseAddr("127.65.1.9")} {
		if err := c.Send(gm, to, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from != netip.AddrPortFrom(gm, c.Port()) || string(buf[:n]) != "hello" {
			t.Fatalf("the peer got %q from %s, want from %s:%d", buf[:n], from, gm, c.Port())
		}
		if _, err := peer.WriteToUDPAddrPort([]byte("answer"), from); err != nil {
			t.Fatal(err)
		}
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, src, dst, err := c.Receive(buf, make([]byte, 128))
		if err != nil {
			t.Fatal(err)
		}
		if dst != gm || src != to || string(buf[:n]) != "answer" {
			t.Fatalf("shared socket got %q from %s to %s, want from %s to %s", buf[:n], src, dst, to, gm)
		}
	}
}

// pktinfoIn is an IP_PKTINFO control message as the kernel delivers it on
// receive: ipi_addr is dst.
func pktinfoIn(dst netip.Addr) []byte {
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	pktinfo(oob, netip.IPv4Unspecified())
	a := dst.As4()
	copy(oob[unix.CmsgLen(0)+8:], a[:])
	return oob
}

// FuzzDestinationOf: any control-message buffer: no panic, and what comes
// out is an IPv4 address or nothing; a real IP_PKTINFO round-trips.
func FuzzDestinationOf(f *testing.F) {
	f.Add(pktinfoIn(netip.MustParseAddr("127.64.0.1")))
	f.Add(append(pktinfoIn(netip.MustParseAddr("127.64.0.1")), pktinfoIn(netip.MustParseAddr("127.64.0.2"))...))
	f.Add([]byte{})
	f.Add(make([]byte, unix.SizeofCmsghdr))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if a := DestinationOf(oob); a.IsValid() && !a.Is4() {
			t.Fatalf("%v: not IPv4", a)
		}
	})
	if got := DestinationOf(pktinfoIn(netip.MustParseAddr("127.64.0.1"))); got != netip.MustParseAddr("127.64.0.1") {
		f.Fatalf("a real IP_PKTINFO read as %v", got)
	}
}

// FuzzRoute: any destination and datagram: no panic; a datagram routed to
// a GM is one of the n and has an ISAKMP v1 header, the only thing the
// generator reads of it before the GM's own checks (gm.Member.Push,
// ike.Endpoint.Handle: fuzzed in their packages).
func FuzzRoute(f *testing.F) {
	base := netip.MustParseAddr("127.64.0.1")
	h := isakmp.Header{Exchange: isakmp.ExchangePush, NextPayload: isakmp.PayloadSEQ, Length: 28}
	push := h.Append(nil)
	f.Add([]byte{127, 64, 0, 1}, push)
	f.Add([]byte{127, 64, 0, 9}, push[:20])
	f.Add([]byte{127, 63, 255, 255}, push)
	f.Add([]byte{10, 0, 0, 1}, []byte{})
	f.Fuzz(func(t *testing.T, dst4, data []byte) {
		if len(dst4) != 4 {
			return
		}
		const n = 8
		i, ok := route(base, n, netip.AddrFrom4([4]byte(dst4)), data)
		if ok {
			if i < 0 || i >= n {
				t.Fatalf("routed to GM %d of %d", i, n)
			}
			if _, err := isakmp.ParseHeader(data); err != nil {
				t.Fatalf("routed a datagram without a header: %v", err)
			}
		}
	})
}

// proves: issue 18 (the generator's CPU per datagram: it shares the key
// server's cores) — 40 datagrams from 40 GM addresses leave the shared
// socket by one sendmmsg, each from its own address, and the 40 answers are
// read by a few recvmmsg calls, each with its GM's address as destination.
func TestConnBatchesSendsAndReceives(t *testing.T) {
	c, err := Listen(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	base := netip.MustParseAddr("127.66.0.1")
	const n = 40
	var out []Outbound
	for i := range n {
		out = append(out, Outbound{From: addrAt(base, i), To: to, Data: []byte{byte(i)}})
	}
	var sb SendBuf
	if sent, calls := c.SendBatch(&sb, out); sent != n || calls != 1 {
		t.Fatalf("sent %d datagrams in %d calls, want %d in 1", sent, calls, n)
	}
	buf := make([]byte, 100)
	for range n {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if k != 1 || from != netip.AddrPortFrom(addrAt(base, int(buf[0])), c.Port()) {
			t.Fatalf("datagram %d came from %s", buf[0], from)
		}
		if _, err := peer.WriteToUDPAddrPort(buf[:1], from); err != nil {
			t.Fatal(err)
		}
	}
	rb := NewRecvBuf(32)
	got, calls := 0, 0
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < n {
		k, err := c.ReceiveBatch(rb)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		for i := range k {
			data, from, dst := rb.Datagram(i)
			if len(data) != 1 || from != to || dst != addrAt(base, int(data[0])) {
				t.Fatalf("answer %v from %s to %s", data, from, dst)
			}
		}
		got += k
	}
	if calls > 4 {
		t.Fatalf("%d answers read in %d calls", n, calls)
	}
}
