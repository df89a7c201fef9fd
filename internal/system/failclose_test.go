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

// fcGMConf is gmConf with fail-close activated and a fail-close ACL whose
// deny entry lets UDP 9998 between the sites through in the clear.
func fcGMConf(name, ks string) string {
	c := fmt.Sprintf(gmConf, name, ks)
	c = strings.Replace(c, "crypto gdoi group SRC\n",
		"ip access-list extended FC\n deny udp 10.61.0.0 0.0.255.255 10.61.0.0 0.0.255.255 eq 9998\ncrypto gdoi group SRC\n", 1)
	return strings.Replace(c, "interface eth0\n", "crypto map M gdoi fail-close\n match address FC\n activate\ninterface eth0\n", 1)
}

var failCloseDropsRE = regexp.MustCompile(`#pkts fail-close drops \(send\): (\d+)`)

// failCloseDrops reads the engine's fail-close drops from show crypto
// ipsec sa (-1: not shown).
func failCloseDrops(out string) int {
	m := failCloseDropsRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// udpArrives sends payload from src in one namespace to dst:port in
// another a few times and reports whether any copy arrived.
func udpArrives(t *testing.T, from, to *testnet.Netns, src, dst netip.Addr, port int, payload []byte) bool {
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
	for try := 0; try < 3; try++ {
		sc.Write(payload) // a refusal (ICMP) is a loss too
		rc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := rc.ReadFromUDP(buf); err == nil && bytes.Equal(buf[:n], payload) {
			return true
		}
	}
	return false
}

// A fail-close GM router (gm1, tmd -tun) with a host behind it starts
// while its key server is down: before any registration its tmd routes
// everything but its own LAN into the TUN device, where the bootstrap
// policy drops the host's traffic to the other site (counted as fail-close
// drops in show crypto ipsec sa, never seen in the core), lets the flow
// the fail-close ACL denies (UDP 9998) cross in the clear and its own GDOI
// traffic reach the key server. When the key server starts, gm1 registers
// through that hole, the KS's policy replaces the bootstrap, and the same
// traffic crosses the core as ESP. gm2 is an ordinary (fail-open) member.
// proves: T3 (issue 12: fail-close drops before registration)
func TestFailCloseBeforeRegistration(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ip", "ping")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	core, ksNS, gm1NS, gm2NS, h1, h2 := twoSiteNetns(t, "gvfc")
	pfx := netip.MustParsePrefix

	ksC := strings.Replace(ksConf, "address 10.236.0.0 255.255.255.0", "address 10.236.0.0 255.255.0.0", 1)
	ks := newHost(t, ctx, bin, "ks", ksNS, ksC) // its group is not started yet: the KS is down
	gm1 := newHostTmd(t, ctx, bin, "gm1", gm1NS, fcGMConf("gm1", "10.236.0.1"),
		"-tun gvtun -local 10.61.1.0/24 -src 10.61.1.1 -group SRC")
	gm2 := newHostTmd(t, ctx, bin, "gm2", gm2NS, fmt.Sprintf(gmConf, "gm2", "10.236.0.1"),
		"-tun gvtun -local 10.61.2.0/24 -src 10.61.2.1 -group SRC")
	gm1.mustSrc("startsrc", "-g", "ike")
	gm2.mustSrc("startsrc", "-g", "ike")
	gm1.waitFor("the bootstrap's route of everything into the TUN", 15*time.Second, func() bool {
		out, _ := gm1NS.Command("ip", "route", "show", "table", "1001").CombinedOutput()
		return strings.Contains(string(out), "default dev gvtun")
	})
	if out := gm1.cli("show crypto gdoi gm"); !strings.Contains(out, "Fail-Close            : Activated, in force") {
		t.Fatalf("gm1 before registration:\n%s", out)
	}

	capt := testnet.StartCapture(t, core, 0)
	marker := []byte("GROUPVPN-FAILCLOSE-SECRET")
	a1, a2 := netip.MustParseAddr("10.61.1.2"), netip.MustParseAddr("10.61.2.2")
	before := failCloseDrops(gm1.cli("show crypto ipsec sa"))
	if udpArrives(t, h1, h2, a1, a2, 7777, marker) {
		t.Error("before registration the host's traffic reached the other site")
	}
	if out, err := h1.Command("ping", "-c", "2", "-i", "0.2", "-W", "1", "-p", hex.EncodeToString(marker), a2.String()).CombinedOutput(); err == nil {
		t.Errorf("before registration a ping crossed:\n%s", out)
	}
	if after := failCloseDrops(gm1.cli("show crypto ipsec sa")); before < 0 || after < before+5 {
		t.Errorf("fail-close drops went from %d to %d; want at least 5 more (3 datagrams, 2 pings)", before, after)
	}
	// The fail-close ACL's deny entry: in the clear, before registration.
	clear := []byte("FAIL-CLOSE-ACL-DENY-IN-THE-CLEAR")
	sendUDPOnce(t, h1, h2, a1, a2, 9998, clear)
	if st := gm1.cli("show crypto isakmp statistics"); !regexp.MustCompile(`data_plane_fail_close_drops +: [1-9]`).MatchString(st) {
		t.Errorf("show crypto isakmp statistics without the fail-close drops:\n%s", st)
	}

	// The key server comes up: gm1 registers through the bootstrap's
	// hole for GDOI, the KS's policy replaces the bootstrap.
	start := time.Now()
	ks.mustSrc("startsrc", "-g", "ike")
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("registration", 40*time.Second, g.registered)
		g.waitFor("the TEK in tmd", 10*time.Second, func() bool { return len(g.teks()) > 0 })
		g.waitFor("the protected route into the TUN", 10*time.Second, func() bool {
			out, _ := g.ns.Command("ip", "route", "show", "table", "1001").CombinedOutput()
			return strings.Contains(string(out), "10.61.0.0/16 dev gvtun") && !strings.Contains(string(out), "default")
		})
	}
	t.Logf("both members hold keys %v after the key server started", time.Since(start).Round(100*time.Millisecond))
	if out := gm1.cli("show crypto gdoi gm"); strings.Contains(out, "in force") || !strings.Contains(out, "Fail-Close            : Activated") {
		t.Errorf("gm1 after registration:\n%s", out)
	}
	sendUDPOnce(t, h1, h2, a1, a2, 7777, marker)
	h1.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), a2.String())
	time.Sleep(200 * time.Millisecond)

	site := pfx("10.61.0.0/16")
	var nESP, nClear int
	for _, p := range capt.Packets() {
		if bytes.Contains(p.Raw, marker) {
			t.Errorf("the core saw the plaintext marker: %v -> %v proto %d", p.Src, p.Dst, p.Proto)
		}
		between := site.Contains(p.Src) && site.Contains(p.Dst)
		switch {
		case p.Proto == unix.IPPROTO_ESP && between:
			nESP++
		case between && p.Proto == unix.IPPROTO_UDP && bytes.Contains(p.Raw, clear):
			nClear++
		case between:
			t.Errorf("clear packet (proto %d) between the sites: %v -> %v", p.Proto, p.Src, p.Dst)
		}
	}
	if nESP < 7 { // the datagram, 3 echo requests and 3 replies
		t.Errorf("the core saw %d ESP packets between the hosts after registration; want at least 7", nESP)
	}
	if nClear == 0 {
		t.Error("the flow the fail-close ACL denies did not cross the core in the clear")
	}
	if enc, dec := ipsecCounts(gm1.cli("show crypto ipsec sa")); enc < 4 || dec < 3 {
		t.Errorf("gm1 after registration: encaps %d, decaps %d", enc, dec)
	}
	if t.Failed() {
		for _, p := range capt.Packets() {
			t.Logf("core: %v -> %v proto %d len %d", p.Src, p.Dst, p.Proto, len(p.Raw))
		}
	}
}
