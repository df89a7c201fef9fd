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

// proves: S1, S5 (issue 18: a key server of 100,000 members is worth
// attacking) — over real loopback UDP, one address that answers 200
// message 2s and never sends message 5 has the key server compute 16
// Diffie-Hellman agreements (16 message 4s), not 200; while those 16 wait
// for message 5 its message 1s are dropped, each counted in
// half_open_peer_refused (`show crypto isakmp statistics`, the metrics); a
// member at another address registers meanwhile.
func TestKeyedFloodFromOneAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}})
	ksAP := kn.Addrs()[0]

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 66)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadBuffer(1 << 20)
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	// drain reads what the KS sends within wait: the datagrams of each
	// exchange (by initiator cookie) whose first payload is next.
	drain := func(wait time.Duration, next isakmp.PayloadType) map[isakmp.Cookie][]byte {
		got := map[isakmp.Cookie][]byte{}
		buf := make([]byte, 65536)
		conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return got
			}
			h, err := isakmp.ParseHeader(buf[:n])
			if err == nil && from == ksAP && h.Exchange == isakmp.ExchangeIdentityProt && h.NextPayload == next {
				got[h.InitiatorCookie] = append([]byte(nil), buf[:n]...)
			}
		}
	}
	// flood sends message 1 of n new initiators at this address.
	flood := func(n int) map[isakmp.Cookie]*ike.Endpoint {
		eps := map[isakmp.Cookie]*ike.Endpoint{}
		for range n {
			ep, err := ike.NewEndpoint(ikeCfg("k", version.Current), local, ike.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			_, o1, err := ep.Initiate(ksAP, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			h, _ := isakmp.ParseHeader(o1.Send[0].Data)
			eps[h.InitiatorCookie] = ep
			if _, err := conn.WriteToUDPAddrPort(o1.Send[0].Data, ksAP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Microsecond) // within the socket's buffers
		}
		return eps
	}
	// 200 message 1s at once: the KS answers each, keeping the newest 16
	// (an address's oldest SA waiting for message 3 is evicted by its
	// next message 1, as a spoofer's would be). Message 3 for each
	// message 2: the 16 it kept are answered with message 4.
	const attempts = 200
	eps := flood(attempts)
	m2s := drain(500*time.Millisecond, isakmp.PayloadSA)
	if len(m2s) != attempts {
		t.Fatalf("%d message 2s for %d message 1s", len(m2s), attempts)
	}
	for icky, m2 := range m2s {
		o3 := eps[icky].Handle(ksAP, m2, time.Now())
		if len(o3.Send) != 1 {
			t.Fatalf("message 2 not answered: %+v", o3)
		}
		if _, err := conn.WriteToUDPAddrPort(o3.Send[0].Data, ksAP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if m4s := drain(time.Second, isakmp.PayloadKE); len(m4s) != 16 {
		t.Fatalf("the KS answered %d message 3s from one address, want 16", len(m4s))
	}
	// 200 more message 1s: none answered while those 16 wait for message 5,
	// each dropped and counted.
	flood(attempts)
	if m2s := drain(500*time.Millisecond, isakmp.PayloadSA); len(m2s) != 0 {
		t.Fatalf("%d message 1s answered while the address had 16 SAs waiting for message 5", len(m2s))
	}
	var refused, evicted uint64
	kn.Do(ctx, func() {
		cs := kn.ISAKMPCounters()
		refused, evicted = counter(cs, "half_open_peer_refused"), counter(cs, "half_open_peer_evicted")
	})
	if refused != attempts || evicted != attempts-16 {
		t.Fatalf("half_open_peer_refused %d, half_open_peer_evicted %d; want %d, %d", refused, evicted, attempts, attempts-16)
	}

	gm := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.67:0")},
		IKE: ikeCfg("k", version.Current), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{ksAP}, SIDs: 1}}})
	waitFor(t, "registration of a member at another address", gm, func() bool { return gm.Members()[0].State == "registered" })
}
