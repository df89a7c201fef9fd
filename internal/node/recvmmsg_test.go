package node

import (
	"bytes"
	"context"
	"net"
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
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
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
	// Allocations per datagram through readDirect and the node.
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
	if per > 1.5 {
		t.Fatalf("%.2f allocations per datagram read, want at most 1.5 (the datagram's copy)", per)
	}
}
