package dataplane_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/dataplane/dptest"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// clearInNFT runs nft in ns (ClearIn.NFT).
func clearInNFT(ns *testnet.Netns) func(stdin string, args ...string) ([]byte, error) {
	return func(stdin string, args ...string) ([]byte, error) {
		cmd := ns.Command("nft", args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), ns.Name, err, out)
		}
		return out, nil
	}
}

// udpSink is a UDP socket in a namespace that collects what arrives.
type udpSink struct {
	c   *net.UDPConn
	got chan string
}

func listenUDP(t *testing.T, ns *testnet.Netns, at netip.AddrPort) *udpSink {
	t.Helper()
	s := &udpSink{got: make(chan string, 64)}
	ns.Do(t, func() error {
		var err error
		s.c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	})
	t.Cleanup(func() { s.c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := s.c.Read(buf)
			if err != nil {
				return
			}
			s.got <- string(buf[:n])
		}
	}()
	return s
}

// sendTo sends payload from a socket in ns until sink has it (at most 10
// tries).
func sendTo(t *testing.T, ns *testnet.Netns, src netip.Addr, dst netip.AddrPort, sink *udpSink, payload string) {
	t.Helper()
	var c *net.UDPConn
	ns.Do(t, func() error {
		var err error
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(dst))
		return err
	})
	defer c.Close()
	for range 10 {
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		if sink.arrived(payload, 500*time.Millisecond) {
			return
		}
	}
	t.Fatalf("UDP %v -> %v never arrived", src, dst)
}

// arrived reports whether payload arrives within d (other datagrams are
// skipped).
func (s *udpSink) arrived(payload string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case p := <-s.got:
			if p == payload {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// A GM drops clear packets arriving from the network that its group's
// policy says must arrive encrypted, and counts them: a spoofed clear UDP
// datagram from the core with a protected 5-tuple, for a host behind GM2,
// is delivered without the table (the gap: the kernel forwarded it
// untouched) and dropped and counted with it, also when it claims a source
// on GM2's own LAN; the denied (bypass) flow still crosses in the clear;
// ESP between the sites still works both ways, as does the GM's own traffic
// and its LAN's traffic to it. A clear packet for h1 that the core sends
// to gm2 is not sealed by gm2 (and so not delivered by gm1). With the fail-close bootstrap policy
// (no TEK yet) everything from the core is dropped but the GDOI traffic
// from the key server; removing the table lets the clear packet through
// again.
// proves: T3, E1 (issue 12: clear packets of covered traffic from the network are dropped)
func TestNetnsClearInDropped(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNft(t)
	testnet.RequireTools(t, "ping")
	sn := testnet.NewSites(t, "dpci")
	mem := func(tek sadb.TEK) *sadb.Memory {
		m := sadb.NewMemory()
		if err := m.InstallTEK(tek); err != nil {
			t.Fatal(err)
		}
		m.SetPolicy("g", groupPolicy())
		m.SetFailMode("g", sadb.FailClose)
		return m
	}
	m1, m2 := mem(gcmTEK(1)), mem(gcmTEK(2))
	e1, _ := dptest.StartEngine(t, sn.GM1, m1, testnet.SiteLAN1, testnet.SiteGM1, testMark)
	e2, _ := dptest.StartEngine(t, sn.GM2, m2, testnet.SiteLAN2, testnet.SiteGM2, testMark)
	ci := func(ns *testnet.Netns, lan netip.Prefix) *dataplane.ClearIn {
		return &dataplane.ClearIn{TUN: dptest.EngineTUN, Local: []netip.Prefix{lan}, NFT: clearInNFT(ns)}
	}
	c1, c2 := ci(sn.GM1, testnet.SiteLAN1), ci(sn.GM2, testnet.SiteLAN2)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gm1 %+v\ngm2 %+v", e1.Stats(), e2.Stats())
			out, _ := sn.GM2.Command("nft", "list", "ruleset").CombinedOutput()
			t.Logf("gm2 nftables:\n%s", out)
		}
		c1.Remove()
		c2.Remove()
	})
	spoof := testnet.NewSpoofer(t, sn.Core)
	h1Port := netip.AddrPortFrom(testnet.SiteH1, 4000)
	secret := listenUDP(t, sn.H2, netip.AddrPortFrom(testnet.SiteH2, secretPort))
	bypass := listenUDP(t, sn.H2, netip.AddrPortFrom(testnet.SiteH2, bypassPort))
	n := 0
	inject := func(src netip.AddrPort, sink *udpSink, port uint16) bool {
		t.Helper()
		n++
		p := fmt.Sprintf("INJECTED-CLEAR-%d", n)
		if err := spoof.Send(src, netip.AddrPortFrom(testnet.SiteH2, port), []byte(p)); err != nil {
			t.Fatal(err)
		}
		return sink.arrived(p, 700*time.Millisecond)
	}

	// The gap: without the table the kernel forwards the clear packet.
	if !inject(h1Port, secret, secretPort) {
		t.Fatal("without the table the spoofed clear packet was not delivered: the test shows nothing")
	}

	now := time.Now()
	for _, g := range []struct {
		c *dataplane.ClearIn
		m *sadb.Memory
	}{{c1, m1}, {c2, m2}} {
		if _, err := g.c.Apply(dataplane.ClearInPolicy(g.m, []string{"g"}, now)); err != nil {
			t.Fatal(err)
		}
	}
	if inject(h1Port, secret, secretPort) {
		t.Fatal("a clear packet of covered traffic from the core reached h2")
	}
	// A source on GM2's own LAN, arriving from the core: not the LAN's.
	if inject(netip.AddrPortFrom(netip.MustParseAddr("10.1.2.7"), 4000), secret, secretPort) {
		t.Fatal("a clear packet claiming a source on gm2's LAN, from the core, reached h2")
	}
	if d, err := c2.Drops(); err != nil || d != 2 {
		t.Fatalf("gm2 counted %d clear drops (%v), want 2", d, err)
	}
	// The denied flow crosses in the clear, spoofed or not.
	if !inject(h1Port, bypass, bypassPort) {
		t.Fatal("the denied (bypass) flow from the core was dropped")
	}
	sendTo(t, sn.H1, testnet.SiteH1, netip.AddrPortFrom(testnet.SiteH2, bypassPort), bypass, "DENIED-FLOW")
	// ESP both ways, the GMs' own traffic, and the LAN to its GM.
	marker := []byte("PROTECTED-FLOW")
	sendUDP(t, sn.H1, sn.H2, testnet.SiteH1, testnet.SiteH2, secretPort+1, marker)
	sendUDP(t, sn.H2, sn.H1, testnet.SiteH2, testnet.SiteH1, secretPort+1, marker)
	sn.GM1.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", testnet.SiteH2.String())
	sn.H2.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", testnet.SiteGM2.String())
	sendUDP(t, sn.H2, sn.GM2, testnet.SiteH2, testnet.SiteGM2, secretPort, marker)
	if s1, s2 := e1.Stats(), e2.Stats(); s1.Encaps == 0 || s2.Decaps == 0 || s2.Encaps == 0 || s1.Decaps == 0 {
		t.Fatalf("ESP did not flow: gm1 %+v gm2 %+v", s1, s2)
	}
	if d, err := c2.Drops(); err != nil || d != 2 {
		t.Fatalf("gm2 counted %d clear drops (%v) after the legitimate traffic, want still 2", d, err)
	}

	// A clear packet for h1 sent by the core to gm2: gm2 must not seal it
	// (gm1 would deliver it as the group's).
	atH1 := listenUDP(t, sn.H1, netip.AddrPortFrom(testnet.SiteH1, secretPort))
	// What the core sends to h1 itself (the spoofer) goes to gm2; what it
	// forwards, gm2's ESP included, is routed as before.
	sn.Core.Run(t, "ip", "route", "add", testnet.SiteH1.String()+"/32", "via", testnet.SiteGM2Core.String(), "table", "77")
	sn.Core.Run(t, "ip", "rule", "add", "pref", "77", "iif", "lo", "to", testnet.SiteH1.String(), "lookup", "77")
	bounce := []byte("BOUNCED-THROUGH-GM2")
	if err := spoof.Send(netip.AddrPortFrom(testnet.SiteH2, 4000), netip.AddrPortFrom(testnet.SiteH1, secretPort), bounce); err != nil {
		t.Fatal(err)
	}
	if atH1.arrived(string(bounce), 700*time.Millisecond) {
		t.Fatal("a clear packet from the core, routed through gm2, was sealed and delivered to h1")
	}
	sn.Core.Run(t, "ip", "rule", "del", "pref", "77")
	if d, err := c2.Drops(); err != nil || d != 3 {
		t.Fatalf("gm2 counted %d clear drops (%v), want 3", d, err)
	}

	// Fail-close before registration: GM2 holds no TEK and the bootstrap
	// policy; the table is replaced, its counter kept.
	ks := netip.AddrPortFrom(netip.MustParseAddr("10.100.1.1"), 848) // the core's address plays the KS
	if err := m2.DeleteTEK("g", testSPI); err != nil {
		t.Fatal(err)
	}
	m2.SetPolicy("g", gm.Bootstrap([]netip.AddrPort{ks}, nil))
	if _, err := c2.Apply(dataplane.ClearInPolicy(m2, []string{"g"}, time.Now())); err != nil {
		t.Fatal(err)
	}
	gdoi := listenUDP(t, sn.GM2, netip.AddrPortFrom(testnet.SiteGM2Core, 848))
	if err := spoof.Send(ks, netip.AddrPortFrom(testnet.SiteGM2Core, 848), []byte("GDOI")); err != nil {
		t.Fatal(err)
	}
	if !gdoi.arrived("GDOI", 700*time.Millisecond) {
		t.Fatal("fail-close bootstrap: the key server's GDOI traffic to the GM was dropped")
	}
	if inject(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.9"), 4000), bypass, bypassPort) {
		t.Fatal("fail-close bootstrap: a clear packet from the core reached h2")
	}
	if d, err := c2.Drops(); err != nil || d != 4 {
		t.Fatalf("gm2 counted %d clear drops (%v), want 4", d, err)
	}

	// Without the table, the gap again.
	if err := c2.Remove(); err != nil {
		t.Fatal(err)
	}
	if !inject(h1Port, secret, secretPort) {
		t.Fatal("after Remove the clear packet is still dropped")
	}
	if _, err := c2.Drops(); err == nil {
		t.Fatal("the table is still there after Remove")
	}
}
