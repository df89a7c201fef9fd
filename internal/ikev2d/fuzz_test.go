package ikev2d

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// recConn records the datagrams a router sends (real ones, for seeds).
type recConn struct {
	*net.UDPConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *recConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

func (c *recConn) datagrams() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// proves: S1, S2, S3 (issue 17: no datagram reaching ikev2d's router —
// the real IKE_SA_INIT, GSA_AUTH and GSA_REKEY messages of a registration
// and a rekey, mutated — panics it, changes a registered member's TEKs, or
// adds a member at the key server; the routers hold that registration
// while the fuzzer feeds both)
func FuzzRouterHandle(f *testing.F) {
	ctx := context.Background()
	var conns []*recConn
	var mu sync.Mutex
	listen := func(a netip.AddrPort) (PacketConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, err
		}
		r := &recConn{UDPConn: c}
		mu.Lock()
		conns = append(conns, r)
		mu.Unlock()
		return r, nil
	}
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(f)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, ListenPacket: listen})
	if err != nil {
		f.Fatal(err)
	}
	dp := sadb.NewMemory()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.6:0")}, Dataplane: dp, ListenPacket: listen})
	if err != nil {
		f.Fatal(err)
	}
	run(f, kr)
	run(f, gr)
	waitFor(f, "registration", func() bool {
		var ok bool
		gr.Do(ctx, func() { ok = gr.Members()[0].Registered })
		return ok
	})
	var rerr error
	kr.Do(ctx, func() { rerr = kr.Rekey("G2") })
	if rerr != nil {
		f.Fatal(rerr)
	}
	waitFor(f, "rekey", func() bool {
		var n uint64
		gr.Do(ctx, func() { n = gr.Members()[0].Rekeys })
		return n == 1
	})
	for _, c := range conns {
		for _, d := range c.datagrams() {
			f.Add(d)
		}
	}
	teks := tekSPIs(dp, "G2")
	members := func() int {
		var n int
		kr.Do(ctx, func() {
			st, _ := kr.Server().State("G2", time.Now())
			n = len(st.Members)
		})
		return n
	}
	before := members()
	ksAt, gmAt := kr.Addrs()[0], gr.Addrs()[0]
	f.Fuzz(func(t *testing.T, data []byte) {
		gr.Do(ctx, func() { gr.handle(datagram{s: gr.socks[0], from: ksAt, data: data}) })
		kr.Do(ctx, func() { kr.handle(datagram{s: kr.socks[0], from: gmAt, data: data}) })
		if got := tekSPIs(dp, "G2"); !slices.Equal(got, teks) {
			t.Fatalf("the member's TEKs changed: %v, were %v", got, teks)
		}
		if n := members(); n != before {
			t.Fatalf("the KS has %d members, had %d", n, before)
		}
	})
}
