package loadgen

import (
	"context"
	"net"
	"net/netip"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// heapAllocs is the process's heap allocations so far: objects and bytes.
func heapAllocs() (objects, bytes uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// proves: N1 (issue 18: the generator's overhead per datagram) — a shard
// reads its own socket and hands each datagram to its GM in place: 2,000
// datagrams of 400 octets to a GM cost the generator less than 200 octets
// of heap each (48 normally, 72 under -race: x/net's address of the
// sender). Before, a reader goroutine copied each one for the shard it
// handed it to through a channel: 750 octets, 3.3 allocations.
func TestDatagramReadInPlace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A key server nobody plays: GM 0 starts main mode and waits (window
	// 1), GM 1 never starts, so what is sent to GM 1 is dropped
	// (DropNoSA) after the generator read and routed it.
	g, err := New(ctx, Options{KS: netip.MustParseAddrPort("127.63.0.9:9"), Members: 2, Base: netip.MustParseAddr("127.67.0.1"),
		Group: "G", GroupID: 1, PSK: []byte("k"), Window: 1, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	h := isakmp.Header{InitiatorCookie: isakmp.Cookie{1}, ResponderCookie: isakmp.Cookie{2}, Exchange: isakmp.ExchangeIdentityProt,
		NextPayload: isakmp.PayloadHash, Length: 400}
	pkt := h.Append(nil)
	pkt = append(pkt, make([]byte, 400-len(pkt))...)
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.Addr(1), g.Port(0)))
	const n = 2000
	time.Sleep(50 * time.Millisecond) // GM 0's main mode begun
	o0, b0 := heapAllocs()
	for range n {
		if _, err := peer.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now().Add(10 * time.Second)
	for g.Stats.DropNoSA.Load() < n && time.Now().Before(end) {
		time.Sleep(time.Millisecond)
	}
	o1, b1 := heapAllocs()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := g.Stats.DropNoSA.Load(); got != n {
		t.Fatalf("%d of %d datagrams reached GM 1", got, n)
	}
	perObj, perByte := float64(o1-o0)/n, float64(b1-b0)/n
	t.Logf("%.2f allocations, %.0f octets per datagram; %d reads", perObj, perByte, g.Stats.ReadCalls.Load())
	if perByte >= 200 {
		t.Fatalf("%.0f octets of heap per datagram read", perByte)
	}
}
