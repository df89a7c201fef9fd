package node_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// fcGM is a fail-close member of the DENY group of denyKS (KS 127.0.5.1).
const fcGM = `hostname fc
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key deny-secret address 127.0.5.1
ip access-list extended FC
 deny tcp any any eq 22
 deny ip 10.1.1.0 0.0.0.255 10.1.2.0 0.0.0.255
crypto gdoi group DENY
 identity number 4343
 server address ipv4 127.0.5.1
crypto map M 10 gdoi
 set group DENY
crypto map M gdoi fail-close
 match address FC
 activate
interface lo
 crypto map M
end
`

// freeUDPPort returns a port nothing listens on at addr now.
func freeUDPPort(t *testing.T, addr string) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

// verdict is what the data plane does with a packet under a group's
// policy and fail mode while the group holds no TEK: the first matching
// entry decides (dataplane.Engine.encap).
func verdict(p []sadb.PolicyEntry, proto uint8, src, dst string, sp, dp uint16) string {
	e, ok := sadb.Lookup(p, proto, netip.MustParseAddr(src), netip.MustParseAddr(dst), sp, dp)
	switch {
	case !ok:
		return "not the group's"
	case e.Action == sadb.Bypass:
		return "clear"
	}
	return "drop"
}

// proves: T3 (issue 12: fail-close drops before registration) — a
// fail-close GM started while its KS is down installs the bootstrap policy
// before registering: GDOI to and from the KS and the fail-close ACL's deny
// entries pass in the clear, everything else is covered (dropped: no TEK,
// fail-close); `show crypto gdoi gm`'s state says so. When the KS comes up
// the GM registers and the KS's policy replaces the bootstrap. Losing the
// keys later leaves the KS's last policy; an isakmpd restarted without
// keys installs the bootstrap again, one restarted with keys keeps the
// KS's policy.
func TestFailCloseBootstrapUntilRegistration(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	port := freeUDPPort(t, "127.0.5.1")
	ks := netip.AddrPortFrom(netip.MustParseAddr("127.0.5.1"), port)

	db := sadb.NewMemory()
	gmConf := loadConf(t, dir, "fc.conf", fcGM)
	o, err := daemon.Options(gmConf, []netip.AddrPort{netip.MustParseAddrPort("127.0.5.30:0")}, port)
	if err != nil {
		t.Fatal(err)
	}
	o.Dataplane = db
	o.IKE.Retransmit = ike.Retransmit{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond, Tries: 2}
	o.PullTimeout, o.BackoffMin, o.BackoffMax = 200*time.Millisecond, 20*time.Millisecond, 50*time.Millisecond
	g := startNode(t, ctx, o)

	boot := db.Policy("DENY")
	want := gm.Bootstrap([]netip.AddrPort{ks}, []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 6, Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("0.0.0.0/0"), DstPort: 22},
		{Action: sadb.Bypass, Src: netip.MustParsePrefix("10.1.1.0/24"), Dst: netip.MustParsePrefix("10.1.2.0/24")}})
	if aclText(boot) != aclText(want) {
		t.Fatalf("bootstrap policy\n got %s\nwant %s", aclText(boot), aclText(want))
	}
	if db.FailMode("DENY") != sadb.FailClose || len(db.TEKs()) != 0 {
		t.Fatalf("fail mode %v, %d TEKs", db.FailMode("DENY"), len(db.TEKs()))
	}
	for _, c := range []struct {
		proto    uint8
		src, dst string
		sp, dp   uint16
		want     string
	}{
		{17, "127.0.5.30", "127.0.5.1", port, port, "clear"}, // registration
		{17, "127.0.5.1", "127.0.5.30", port, port, "clear"}, // the KS's answers and rekeys
		{17, "10.1.1.5", "127.0.5.1", 5000, port, "clear"},   // GDOI of a GM behind this one
		{6, "10.1.1.5", "10.9.9.9", 40000, 22, "clear"},      // deny tcp any any eq 22
		{1, "10.1.1.5", "10.1.2.7", 0, 0, "clear"},           // deny ip 10.1.1.0/24 10.1.2.0/24
		{1, "10.1.2.7", "10.1.1.5", 0, 0, "drop"},            // the other way is not denied
		{6, "10.1.1.5", "10.9.9.9", 40000, 443, "drop"},
		{17, "10.1.1.5", "127.0.5.1", 5000, 53, "drop"}, // the KS, but not GDOI
		{17, "10.1.1.5", "8.8.8.8", 5000, 53, "drop"},
	} {
		if got := verdict(boot, c.proto, c.src, c.dst, c.sp, c.dp); got != c.want {
			t.Errorf("before registration: %d %s:%d -> %s:%d: %s, want %s", c.proto, c.src, c.sp, c.dst, c.dp, got, c.want)
		}
	}
	if m := member(t, g); !m.FailCloseBootstrap || m.State == "registered" {
		t.Fatalf("member before the KS: %+v", m)
	}
	var snap node.Snapshot
	g.Do(ctx, func() { snap = g.Snapshot() })
	if text, _ := show.GM(snap); !strings.Contains(text, "Fail-Close            : Activated, in force (no key server policy yet") {
		t.Fatalf("show crypto gdoi gm before registration:\n%s", text)
	}

	// The KS comes up: the GM registers, the KS's policy replaces the
	// bootstrap (the normal path, gm.Install).
	ksConf := loadConf(t, dir, "ks.conf", fmt.Sprintf(denyKS, ""))
	ko, err := daemon.Options(ksConf, []netip.AddrPort{ks}, port)
	if err != nil {
		t.Fatal(err)
	}
	startNode(t, ctx, ko)
	waitUntil(t, "registration", func() bool { return member(t, g).State == "registered" })
	const ksPolicy = "deny 17 0.0.0.0/0:848 0.0.0.0/0:848; deny 89 0.0.0.0/0:0 0.0.0.0/0:0; permit 0 10.0.0.0/8:0 10.0.0.0/8:0"
	if got := aclText(db.Policy("DENY")); got != ksPolicy {
		t.Fatalf("after registration the policy is\n%s\nwant the KS's %s", got, ksPolicy)
	}
	if m := member(t, g); m.FailCloseBootstrap {
		t.Fatal("registered member still reports the bootstrap")
	}

	// A restart of isakmpd while tmd keeps the keys: the KS's policy stays.
	cancel()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	o.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.5.31:0")}
	o.Hold = true
	r1, err := node.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r1.Close()
	if got := aclText(db.Policy("DENY")); got != ksPolicy {
		t.Fatalf("a restart with keys replaced the KS's policy: %s", got)
	}
	// The keys are lost (expired, removed): the KS's last policy stays in
	// force while this isakmpd runs; an isakmpd started without keys
	// installs the bootstrap again.
	for _, k := range db.TEKs() {
		db.DeleteTEK(k.Group, k.SPI)
	}
	if got := aclText(db.Policy("DENY")); got != ksPolicy {
		t.Fatalf("losing the keys changed the policy: %s", got)
	}
	r2 := startNode(t, ctx2, o)
	if got := aclText(db.Policy("DENY")); got != aclText(want) {
		t.Fatalf("restart without keys: %s", got)
	}
	if !member(t, r2).FailCloseBootstrap {
		t.Fatal("restart without keys: no bootstrap reported")
	}
}
