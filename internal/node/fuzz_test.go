package node

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// recConn is a UDP socket that keeps a copy of the first datagrams it
// sends: the fuzz target's seeds are the real messages of a registration
// and a rekey.
type recConn struct {
	*net.UDPConn
	mu   *sync.Mutex
	sent *[][]byte
}

func (c recConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.mu.Lock()
	if len(*c.sent) < 64 {
		*c.sent = append(*c.sent, append([]byte(nil), b...))
	}
	c.mu.Unlock()
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

func recording(mu *sync.Mutex, sent *[][]byte) func(netip.AddrPort) (PacketConn, error) {
	return func(a netip.AddrPort) (PacketConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, err
		}
		return recConn{UDPConn: c, mu: mu, sent: sent}, nil
	}
}

// FuzzNodeDatagram feeds arbitrary datagrams to a running key server and a
// registered group member through the socket readers' path (datagram),
// from the real peer's address or a stranger's. Seeds: every message a
// registration and a unicast rekey put on the wire (MM1-MM6, GROUPKEY-PULL
// both ways, the GROUPKEY-PUSH, its ACK).
//
// proves: S4 (issue 11) — no datagram makes a node panic, and none removes
// a registered GM's keys, registration or phase-1 SA.
func FuzzNodeDatagram(f *testing.F) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var ksSent, gmSent [][]byte
	ksAddr := netip.MustParseAddr("127.0.0.180")
	grp := ksGroup(f, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, ListenPacket: recording(&mu, &ksSent)})
	if err != nil {
		f.Fatal(err)
	}
	go kn.Run(ctx)
	gmn, err := New(Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.181:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}, ListenPacket: recording(&mu, &gmSent)})
	if err != nil {
		f.Fatal(err)
	}
	go gmn.Run(ctx)
	wait := func(what string, n *Node, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var ok bool
			n.Do(ctx, func() { ok = cond() })
			if ok {
				return
			}
			if time.Now().After(deadline) {
				f.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	kn.Do(ctx, func() {
		if err := kn.sendRekey("GETVPN", time.Now()); err != nil {
			f.Fatal(err)
		}
	})
	wait("the rekey", gmn, func() bool { return gmn.Members()[0].Rekeys.AcksSent == 1 })
	wait("the ACK", kn, func() bool { return kn.delivery.Stats().OK == 1 })

	mu.Lock()
	for _, b := range ksSent {
		f.Add(b, true, true)   // what the KS sends, at the GM, from the KS
		f.Add(b, false, false) // reflected at the KS by a stranger
	}
	for _, b := range gmSent {
		f.Add(b, false, true) // what the GM sends, at the KS, from the GM
		f.Add(b, true, false) // reflected at the GM by a stranger
	}
	mu.Unlock()
	f.Add([]byte{}, true, true)
	f.Add(make([]byte, 28), false, true)

	ksAP, gmAP := kn.Addrs()[0], gmn.Addrs()[0]
	stranger := netip.MustParseAddrPort("127.0.0.182:500")
	var before gmHold
	gmn.Do(ctx, func() { before = holdOf(gmn) })
	f.Fuzz(func(t *testing.T, data []byte, toGM, fromPeer bool) {
		target, peer := kn, gmAP
		if toGM {
			target, peer = gmn, ksAP
		}
		from := stranger
		if fromPeer {
			from = peer
		}
		d := datagram{from: from, data: append([]byte(nil), data...)}
		target.Do(ctx, func() {
			d.sock = target.socks[0]
			target.datagram(d)
		})
		var now gmHold
		gmn.Do(ctx, func() { now = holdOf(gmn) })
		// The rekey's old TEKs leave by themselves when their deactivation
		// delay (90 s) is over: only a TEK still due is missed.
		for spi, due := range before.TEKs {
			if _, ok := now.TEKs[spi]; !ok && time.Now().Before(due.Add(-time.Second)) {
				t.Fatalf("the GM lost TEK 0x%08x, due until %v: %+v, was %+v", spi, due, now, before)
			}
		}
		if now.State != "registered" || now.KEKs != before.KEKs || !now.SA {
			t.Fatalf("the GM lost its registration: %+v, was %+v", now, before)
		}
	})
}

// gmHold is what a registered GM holds, for FuzzNodeDatagram.
type gmHold struct {
	State string
	TEKs  map[uint32]time.Time // SPI: when it leaves (deactivation or expiry)
	KEKs  int
	SA    bool // its phase-1 SA with the KS is still there
}

func holdOf(n *Node) gmHold {
	h := gmHold{State: n.Members()[0].State, TEKs: map[uint32]time.Time{}, KEKs: len(n.keks.KEKs())}
	for _, t := range n.dp.TEKs() {
		due := t.Expires
		if !t.Deactivate.IsZero() && t.Deactivate.Before(due) {
			due = t.Deactivate
		}
		h.TEKs[t.SPI] = due
	}
	r := n.regs[0]
	for _, sa := range n.socks[0].ep.SAs() {
		if sa.Peer() == r.m.KS() {
			h.SA = true
		}
	}
	return h
}
