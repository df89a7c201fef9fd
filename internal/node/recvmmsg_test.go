package node

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// proves: N1 (issue 18: the KS's CPU per registration outside the
// crypto) — the loop's own read of its socket (recvmmsg) hands each
// datagram to the node with its true source address and port and bytes,
// whole batches and more than a batch waiting, and allocates no more than
// the datagram's copy per datagram (x/net's ReadBatch made a *net.UDPAddr
// and its IP for each: 3 allocations a datagram).
func TestReadDirectSourcesAndAllocations(t *testing.T) {
	kn := newIdleKS(t)
	kn.direct = kn.directSock()
	if kn.direct == nil {
		t.Fatal("a KS on one address has no socket of its own to read")
	}
	var conns []*net.UDPConn
	for i := range 3 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(10+i))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// ISAKMP headers of Informationals naming no SA (dropped, counted,
	// without allocating), of several lengths.
	const n = 2*readBatch + 5
	payload := func(i int) []byte {
		b := append(bytes.Repeat([]byte{byte(i)}, 28+i%7), byte(i>>8))
		clear(b[8:16])
		b[17], b[18] = 0x10, 5
		return b
	}
	for i := range n {
		if _, err := conns[i%3].WriteToUDPAddrPort(payload(i), kn.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // on loopback they are queued already
	r := newDirectReader()
	conn := kn.direct.conn.(*net.UDPConn)
	got := 0
	for got < n {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		k, err := r.read(conn, 0)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", got, err)
		}
		for i := range k {
			from, data, ok := r.datagram(i)
			want := conns[got%3].LocalAddr().(*net.UDPAddr).AddrPort()
			if !ok || from != want || !bytes.Equal(data, payload(got)) {
				t.Fatalf("datagram %d: from %s (want %s), %x (want %x), ok %v", got, from, want, data, payload(got), ok)
			}
			got++
		}
	}
	// Allocations per datagram through readDirect and the node: counted
	// without the race detector (make test runs this test so too).
	if raceEnabled {
		t.Skip("sources and bytes checked; allocation counts differ under the race detector: make test counts them without it")
	}
	for i := range n {
		conns[i%3].WriteToUDPAddrPort(payload(i), kn.Addrs()[0])
	}
	time.Sleep(20 * time.Millisecond)
	rd := newDirectReader()
	var m0, m1 runtime.MemStats
	read0 := kn.direct.io.readDatagrams.Load()
	runtime.ReadMemStats(&m0)
	for kn.direct.io.readDatagrams.Load()-read0 < n {
		if err := kn.readDirect(context.Background(), rd, kn.o.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&m1)
	per := float64(m1.Mallocs-m0.Mallocs) / n
	t.Logf("%.2f allocations per datagram read", per)
	if per > 0.5 {
		t.Fatalf("%.2f allocations per datagram read, want none (at most 0.5: the read's own, per batch)", per)
	}
}

// proves: N1, S1 (issue 18: the loop hands the read's buffer, not a copy,
// to the node) — nothing the KS keeps points into a datagram's bytes: a
// registration whose every datagram the KS read into buffers scribbled
// over right after it handled them completes, and its retransmitted
// message 3 is still answered with the same message 4.
func TestReadDirectBufferNotRetained(t *testing.T) {
	r := newKSRegistrar(t)
	kn := r.kn
	kn.direct = kn.directSock()
	if kn.direct == nil {
		t.Fatal("a KS on one address has no socket of its own to read")
	}
	gmConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 1, 30)})
	if err != nil {
		t.Fatal(err)
	}
	defer gmConn.Close()
	gm := gmConn.LocalAddr().(*net.UDPAddr).AddrPort()
	rd := newDirectReader()
	// The KS reads data from gm over its socket, handles it, and its
	// read buffers are scribbled over; its answers are what it queued.
	// With junk, a datagram naming no SA comes first in the same read,
	// so that data lands in another buffer than the last datagram's.
	junk := false
	r.deliver = func(from netip.AddrPort, data []byte) {
		if from != gm {
			t.Fatalf("a GM of address %s", from)
		}
		want := uint64(1)
		if junk {
			j := make([]byte, len(data))
			j[17], j[18] = 0x10, 5
			gmConn.WriteToUDPAddrPort(j, kn.Addrs()[0])
			want = 2
		}
		if _, err := gmConn.WriteToUDPAddrPort(data, kn.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
		read0 := kn.direct.io.readDatagrams.Load()
		for kn.direct.io.readDatagrams.Load()-read0 < want {
			if err := kn.readDirect(context.Background(), rd, kn.o.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range rd.bufs {
			for i := range b[:512] {
				b[i] = 0xa5
			}
		}
	}
	r.next = gm.Addr()
	r.port = gm.Port()
	_, m3, m4 := r.register(t)
	junk = true
	if got := r.toKS(gm, m3); len(got) != 1 || !bytes.Equal(got[0], m4) {
		t.Fatalf("retransmitted message 3 answered with %d datagrams", len(got))
	}
}
