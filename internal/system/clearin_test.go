package system_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// noUDP checks that nothing carrying payload arrives on c within d.
func noUDP(t *testing.T, c *net.UDPConn, payload []byte, d time.Duration, what string) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return // the deadline: nothing came
		}
		if bytes.Equal(buf[:n], payload) {
			t.Errorf("%s: %q was delivered", what, payload)
			return
		}
	}
}

// The topology (tmd -tun on three GMs, registered, AES-GCM): a
// clear UDP datagram spoofed from the core with a protected 5-tuple
// (h1 -> h2, a port the KS's permit entry covers) is not delivered to h2,
// and gm2 counts it: tmd's counter clear_in_drops, `show crypto ipsec sa`
// (#pkts clear drops (rcv)) and `show crypto isakmp statistics`
// (data_plane_clear_in_drops). The denied flow (UDP to port 9999) spoofed
// the same way crosses in the clear; ESP between every pair of hosts still
// works; stopping tmd removes its nftables table, and then (as before this
// change, when nothing checked clear packets from the network) the spoofed
// datagram is delivered.
// proves: T3, E1 (issue 12: clear packets of covered traffic from the network are dropped)
func TestSitesClearInDropped(t *testing.T) {
	testnet.RequireNft(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSites(t, ctx, "gvci", "esp-gcm 128", "", "")
	gm2 := s.gm[1]
	gm2.waitFor("tmd's table ip groupvpn with the group's permit entry", 10*time.Second, func() bool {
		out, _ := gm2.ns.Command("nft", "list", "table", "ip", "groupvpn").CombinedOutput()
		return strings.Contains(string(out), `comment "SRC entry 2 permit"`)
	})
	spoof := testnet.NewSpoofer(t, s.core)
	h1 := netip.AddrPortFrom(s.addr[0], 4000)
	secret := listenUDP(t, s.hostNS[1], s.addr[1], 7777)
	denied := listenUDP(t, s.hostNS[1], s.addr[1], 9999)
	before := engineCounters(gm2)["clear_in_drops"]

	payload := []byte("INJECTED-CLEAR-COVERED")
	for range 3 {
		if err := spoof.Send(h1, netip.AddrPortFrom(s.addr[1], 7777), payload); err != nil {
			t.Fatal(err)
		}
	}
	noUDP(t, secret, payload, time.Second, "a clear datagram of covered traffic spoofed from the core")
	gm2.waitFor("3 clear drops counted", 5*time.Second, func() bool {
		return engineCounters(gm2)["clear_in_drops"] == before+3
	})
	if out := gm2.cli("show crypto ipsec sa"); !strings.Contains(out, fmt.Sprintf("#pkts clear drops (rcv): %d\n", before+3)) {
		t.Errorf("gm2's show crypto ipsec sa has no clear drops line with %d:\n%s", before+3, out)
	}
	if st := gm2.statistics("sa_database"); st["data_plane_clear_in_drops"] != uint64(before+3) {
		t.Errorf("gm2's show crypto isakmp statistics: data_plane_clear_in_drops %d, want %d", st["data_plane_clear_in_drops"], before+3)
	}

	clear := []byte("INJECTED-CLEAR-DENIED")
	if err := spoof.Send(h1, netip.AddrPortFrom(s.addr[1], 9999), clear); err != nil {
		t.Fatal(err)
	}
	expectUDP(t, denied, clear, "the denied flow spoofed from the core")
	s.pingAll([]byte("STILL-ENCRYPTED!"))
	if got := engineCounters(gm2)["clear_in_drops"]; got != before+3 {
		t.Errorf("gm2's clear_in_drops %d after the legitimate traffic, want %d", got, before+3)
	}

	gm2.mustSrc("stopsrc", "-g", "ike")
	gm2.waitFor("tmd's table removed on exit", 10*time.Second, func() bool {
		out, _ := gm2.ns.Command("nft", "list", "tables").CombinedOutput()
		return !strings.Contains(string(out), "groupvpn")
	})
	// The gap this closes: without tmd's table the kernel forwards it.
	again := []byte("INJECTED-CLEAR-NO-TABLE")
	if err := spoof.Send(h1, netip.AddrPortFrom(s.addr[1], 7777), again); err != nil {
		t.Fatal(err)
	}
	expectUDP(t, secret, again, "the spoofed clear datagram once gm2's tmd stopped")
}
