package system_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

var pktsRE = regexp.MustCompile(`#pkts (encaps|decaps): (\d+)`)

// ipsecCounts sums the encaps and decaps of show crypto ipsec sa.
func ipsecCounts(out string) (encaps, decaps int) {
	for _, m := range pktsRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "encaps" {
			encaps += n
		} else {
			decaps += n
		}
	}
	return
}

// A KS and two GM routers, each running the group ike under its own
// srcmstr in its own namespace, tmd with -tun: a host behind each GM
// (10.61.1.0/24, 10.61.2.0/24), a core namespace routing the host
// prefixes (no NAT, no tunnels) and reaching the KS. After a real
// registration (GROUPKEY-PULL, keys and policy from the KS) the hosts ping
// each other; the core sees only ESP between them, with the outer
// addresses the hosts' own and never the plaintext marker the pings
// carry, while the flow a deny entry of the KS's ACL names (UDP 9999)
// crosses in the clear; `show crypto ipsec sa` on each GM shows encaps and
// decaps from tmd's engine. With gm1's isakmpd killed (-9) the hosts still
// reach each other through tmd's engine; with gm1's tmd killed (-9), its
// rules left behind, the restarted group's tmd replaces them and traffic
// flows again; stopped, tmd removes its TUN device, rules and routes.
// proves: E1, D1 (issue 12)
func TestDataPlaneThroughSRC(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ip", "ping")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	core, ksNS, gm1NS, gm2NS, h1, h2 := twoSiteNetns(t, "gvdp")
	pfx := netip.MustParsePrefix

	ksC := strings.Replace(ksConf, "address 10.236.0.0 255.255.255.0", "address 10.236.0.0 255.255.0.0", 1)
	// A deny entry before the permit: that flow crosses in the clear.
	ksC = strings.Replace(ksC, " permit ip 10.61.0.0", " deny udp 10.61.0.0 0.0.255.255 10.61.0.0 0.0.255.255 eq 9999\n permit ip 10.61.0.0", 1)
	if !strings.Contains(ksC, "eq 9999") || !strings.Contains(ksC, "255.255.0.0") {
		t.Fatal("the KS's configuration was not adapted")
	}
	ks := newHost(t, ctx, bin, "ks", ksNS, ksC)
	gm1 := newHostTmd(t, ctx, bin, "gm1", gm1NS, fmt.Sprintf(gmConf, "gm1", "10.236.0.1"),
		"-tun gvtun -local 10.61.1.0/24 -src 10.61.1.1 -group SRC")
	gm2 := newHostTmd(t, ctx, bin, "gm2", gm2NS, fmt.Sprintf(gmConf, "gm2", "10.236.0.1"),
		"-tun gvtun -local 10.61.2.0/24 -src 10.61.2.1 -group SRC")
	ks.mustSrc("startsrc", "-g", "ike")
	gm1.mustSrc("startsrc", "-g", "ike")
	gm2.mustSrc("startsrc", "-g", "ike")
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("registration", 20*time.Second, g.registered)
		g.waitFor("the TEK in tmd", 10*time.Second, func() bool { return len(g.teks()) > 0 })
		g.waitFor("the protected route into the TUN", 10*time.Second, func() bool {
			out, _ := g.ns.Command("ip", "route", "show", "table", "1001").CombinedOutput()
			return strings.Contains(string(out), "10.61.0.0/16 dev gvtun")
		})
	}

	capt := testnet.StartCapture(t, core, 0) // every IPv4 packet the core forwards
	marker := []byte("GROUPVPN-SECRET-")
	a1, a2 := netip.MustParseAddr("10.61.1.2"), netip.MustParseAddr("10.61.2.2")
	h1.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), a2.String())
	h2.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), a1.String())
	clear := []byte("DENIED-FLOW-IN-THE-CLEAR")
	sendUDPOnce(t, h1, h2, a1, a2, 9999, clear)
	time.Sleep(200 * time.Millisecond)

	site := pfx("10.61.0.0/16")
	var nESP, nClear int
	for _, p := range capt.Packets() {
		if bytes.Contains(p.Raw, marker) {
			t.Errorf("the core saw the plaintext marker: %v -> %v proto %d", p.Src, p.Dst, p.Proto)
		}
		between := site.Contains(p.Src) && site.Contains(p.Dst)
		switch {
		case p.Proto == unix.IPPROTO_ESP && !between:
			t.Errorf("ESP with outer addresses %v -> %v, not the hosts'", p.Src, p.Dst)
		case p.Proto == unix.IPPROTO_ESP:
			nESP++
		case between && p.Proto == unix.IPPROTO_UDP && bytes.Contains(p.Raw, clear):
			nClear++
		case between:
			t.Errorf("clear packet (proto %d) between the sites: %v -> %v", p.Proto, p.Src, p.Dst)
		}
	}
	if nESP < 12 { // 3 echo requests and 3 replies each way
		t.Errorf("the core saw %d ESP packets between the hosts; want at least 12", nESP)
	}
	if nClear == 0 {
		t.Errorf("the denied flow did not cross the core in the clear")
	}
	for _, g := range []*host{gm1, gm2} {
		out := g.cli("show crypto ipsec sa")
		if enc, dec := ipsecCounts(out); enc < 6 || dec < 6 || !strings.Contains(out, "Data plane: tmd, interface gvtun") {
			t.Errorf("%s: show crypto ipsec sa: encaps %d, decaps %d; want at least 6 each:\n%s", g.name, enc, dec, out)
		}
		if st := g.cli("show crypto isakmp statistics"); !regexp.MustCompile(`data_plane_encaps +: [1-9]`).MatchString(st) {
			t.Errorf("%s: show crypto isakmp statistics without the engine's counters:\n%s", g.name, st)
		}
		if js := g.cli("show crypto ipsec sa | json"); !strings.Contains(js, `"encaps_packets"`) {
			t.Errorf("%s: show crypto ipsec sa | json without counters:\n%s", g.name, js)
		}
	}
	if t.Failed() {
		for _, p := range capt.Packets() {
			t.Logf("core: %v -> %v proto %d len %d", p.Src, p.Dst, p.Proto, len(p.Raw))
		}
		return
	}

	// A control-plane crash is not a traffic outage: with gm1's isakmpd
	// killed, tmd goes on forwarding with the SAs it holds.
	pid, _ := gm1.status("isakmpd")
	gm1NS.Run(t, "kill", "-9", pid)
	gm1.waitFor("isakmpd gone", 10*time.Second, func() bool { p, _ := gm1.status("isakmpd"); return p == "" })
	before, _ := ipsecCounts(gm2.cli("show crypto ipsec sa"))
	h1.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", a2.String())
	if after, _ := ipsecCounts(gm2.cli("show crypto ipsec sa")); after < before+3 {
		t.Errorf("gm2's encaps went from %d to %d while gm1's isakmpd was down; want 3 more replies", before, after)
	}

	// tmd killed (-9) leaves its rules behind; the restarted group's tmd
	// replaces them, gm1 registers again and the hosts reach each other.
	pid, _ = gm1.status("tmd")
	gm1NS.Run(t, "kill", "-9", pid)
	gm1.waitFor("tmd gone", 10*time.Second, func() bool { p, _ := gm1.status("tmd"); return p == "" })
	gm1.src("stopsrc", "-g", "ike")
	gm1.waitFor("the group stopped", 15*time.Second, func() bool { _, st := gm1.status("iked"); return st == "stopped" })
	gm1.mustSrc("startsrc", "-g", "ike")
	gm1.waitFor("registration after tmd's restart", 20*time.Second, gm1.registered)
	gm1.waitFor("the protected route after tmd's restart", 10*time.Second, func() bool {
		out, _ := gm1NS.Command("ip", "route", "show", "table", "1001").CombinedOutput()
		return strings.Contains(string(out), "10.61.0.0/16 dev gvtun")
	})
	h1.Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", a2.String())

	// Stopped, tmd removes its device, rules and routes.
	gm1.mustSrc("stopsrc", "-g", "ike")
	gm1.waitFor("tmd stopped", 15*time.Second, func() bool { _, st := gm1.status("tmd"); return st == "stopped" })
	if out := gm1NS.Run(t, "ip", "rule"); strings.Contains(out, "1000:") || strings.Contains(out, "1004:") {
		t.Errorf("gm1's rules after tmd stopped:\n%s", out)
	}
	if out, _ := gm1NS.Command("ip", "route", "show", "table", "1001").CombinedOutput(); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("gm1's table 1001 after tmd stopped:\n%s", out)
	}
	if out, err := gm1NS.Command("ip", "link", "show", "gvtun").CombinedOutput(); err == nil {
		t.Errorf("gm1's TUN device after tmd stopped:\n%s", out)
	}
}

// sendUDPOnce sends payload from src in one namespace to dst:port in
// another and waits for it to arrive.
func sendUDPOnce(t *testing.T, from, to *testnet.Netns, src, dst netip.Addr, port int, payload []byte) {
	t.Helper()
	var rc, sc *net.UDPConn
	to.Do(t, func() error {
		var err error
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst.AsSlice(), Port: port})
		return err
	})
	defer rc.Close()
	from.Do(t, func() error {
		var err error
		sc, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, &net.UDPAddr{IP: dst.AsSlice(), Port: port})
		return err
	})
	defer sc.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 10; try++ {
		if _, err := sc.Write(payload); err != nil {
			t.Fatal(err)
		}
		rc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, _, err := rc.ReadFromUDP(buf); err == nil && bytes.Equal(buf[:n], payload) {
			return
		}
	}
	t.Fatalf("UDP %v -> %v:%d never arrived", src, dst, port)
}

// twoSiteNetns builds the topology of the tmd -tun tests under srcmstr: a
// core routing 10.61.1.0/24 and 10.61.2.0/24 to gm1 (10.236.1.2) and gm2
// (10.236.2.2), the KS at 10.236.0.1, and a host behind each GM (10.61.N.2,
// its GM 10.61.N.1). tag prefixes the namespaces' and links' names.
func twoSiteNetns(t *testing.T, tag string) (core, ksNS, gm1NS, gm2NS, h1, h2 *testnet.Netns) {
	t.Helper()
	core = testnet.NewNetns(t, tag+"-core")
	ksNS = testnet.NewNetns(t, tag+"-ks")
	gm1NS = testnet.NewNetns(t, tag+"-g1")
	gm2NS = testnet.NewNetns(t, tag+"-g2")
	h1 = testnet.NewNetns(t, tag+"-h1")
	h2 = testnet.NewNetns(t, tag+"-h2")
	pfx := netip.MustParsePrefix
	testnet.VethBetween(t, tag+"k", core, ksNS, pfx("10.236.0.254/24"), pfx("10.236.0.1/24"))
	testnet.VethBetween(t, tag+"c1", core, gm1NS, pfx("10.236.1.1/24"), pfx("10.236.1.2/24"))
	testnet.VethBetween(t, tag+"c2", core, gm2NS, pfx("10.236.2.1/24"), pfx("10.236.2.2/24"))
	testnet.VethBetween(t, tag+"l1", gm1NS, h1, pfx("10.61.1.1/24"), pfx("10.61.1.2/24"))
	testnet.VethBetween(t, tag+"l2", gm2NS, h2, pfx("10.61.2.1/24"), pfx("10.61.2.2/24"))
	for _, ns := range []*testnet.Netns{core, gm1NS, gm2NS} {
		ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
	}
	core.Run(t, "ip", "route", "add", "10.61.1.0/24", "via", "10.236.1.2")
	core.Run(t, "ip", "route", "add", "10.61.2.0/24", "via", "10.236.2.2")
	ksNS.Run(t, "ip", "route", "add", "default", "via", "10.236.0.254")
	gm1NS.Run(t, "ip", "route", "add", "default", "via", "10.236.1.1")
	gm2NS.Run(t, "ip", "route", "add", "default", "via", "10.236.2.1")
	h1.Run(t, "ip", "route", "add", "default", "via", "10.61.1.1")
	h2.Run(t, "ip", "route", "add", "default", "via", "10.61.2.1")
	return core, ksNS, gm1NS, gm2NS, h1, h2
}
