package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

const denyKS = `hostname ks
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key deny-secret address 127.0.0.0 255.0.0.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 deny udp any eq 848 any eq 848
 deny 89 any any
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
%s
crypto ipsec transform-set ts esp-gcm 128
crypto ipsec profile p
 set transform-set ts
crypto gdoi group DENY
 identity number 4343
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 127.0.5.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const denyGM = `hostname gm%d
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key deny-secret address 127.0.5.1
crypto gdoi group DENY
 identity number 4343
 server address ipv4 127.0.5.1
crypto map M 10 gdoi
 set group DENY
interface lo
 crypto map M
end
`

func loadConf(t *testing.T, dir, name, text string) *policy.Config {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startNode(t *testing.T, ctx context.Context, o node.Options) *node.Node {
	t.Helper()
	n, err := node.New(o)
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(ctx)
	return n
}

func member(t *testing.T, n *node.Node) node.MemberState {
	t.Helper()
	var m node.MemberState
	n.Do(context.Background(), func() { m = n.Members()[0] })
	return m
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// aclText is the policy as `show crypto gdoi gm` lists it.
func aclText(p []sadb.PolicyEntry) string {
	var b []string
	for _, e := range p {
		b = append(b, fmt.Sprintf("%s %d %s:%d %s:%d", e.Action, e.IPProto, e.Src, e.SrcPort, e.Dst, e.DstPort))
	}
	return strings.Join(b, "; ")
}

// proves: E3 (issue 12 "the policy the KS downloads, all of it") — the
// deny entries of a KS's match ACL, written in its configuration file, reach
// a GM through a real GROUPKEY-PULL over loopback in ACL order around the
// permit entry (first match wins as on IOS), land in the GM's SA database
// as Bypass entries and in `show crypto gdoi gm` and its `| json`; a
// committed ACL change reaches the GM with the next rekey; a 1.0.1 GM
// registers and installs exactly the TEKs it did before.
func TestDenyEntriesReachGMInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	ksConf := loadConf(t, dir, "ks.conf", fmt.Sprintf(denyKS, " deny ip host 10.9.9.9 any"))
	ko, err := daemon.Options(ksConf, []netip.AddrPort{netip.MustParseAddrPort("127.0.5.1:0")}, 848)
	if err != nil {
		t.Fatal(err)
	}
	kn := startNode(t, ctx, ko)
	port := kn.Addrs()[0].Port()
	var gms []*node.Node
	for i, v := range []string{"", "groupvpn version 1.0.1\n"} {
		c := loadConf(t, dir, fmt.Sprintf("gm%d.conf", i), v+fmt.Sprintf(denyGM, i))
		o, err := daemon.Options(c, []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.5.%d:0", 10+i))}, port)
		if err != nil {
			t.Fatal(err)
		}
		gms = append(gms, startNode(t, ctx, o))
	}
	for _, g := range gms {
		waitUntil(t, "registration", func() bool { return member(t, g).State == "registered" })
	}

	const want = "deny 17 0.0.0.0/0:848 0.0.0.0/0:848; deny 89 0.0.0.0/0:0 0.0.0.0/0:0; " +
		"permit 0 10.0.0.0/8:0 10.0.0.0/8:0; deny 0 10.9.9.9/32:0 0.0.0.0/0:0"
	for i, g := range gms {
		m := member(t, g)
		if got := aclText(m.ACL); got != want {
			t.Fatalf("GM %d downloaded ACL\n got %s\nwant %s", i, got, want)
		}
		teks := g.Dataplane().TEKs()
		if len(teks) != 1 || m.ACL[2].SPI != teks[0].SPI || m.ACL[0].SPI != 0 {
			t.Fatalf("GM %d: TEKs %d, policy %+v", i, len(teks), m.ACL)
		}
		if got := aclText(g.Dataplane().(sadb.PolicyStore).Policy("DENY")); got != want {
			t.Fatalf("GM %d SA database policy %s", i, got)
		}
		// First match wins: GDOI itself and OSPF pass in the clear, the
		// group's traffic is protected, 10.9.9.9 is protected too because
		// the permit entry comes first.
		p := m.ACL
		for _, c := range []struct {
			proto            uint8
			src, dst         string
			srcPort, dstPort uint16
			want             sadb.Action
		}{
			{17, "10.1.1.1", "10.2.2.2", 848, 848, sadb.Bypass},
			{89, "10.1.1.1", "224.0.0.5", 0, 0, sadb.Bypass},
			{6, "10.1.1.1", "10.2.2.2", 40000, 443, sadb.Protect},
			{6, "10.9.9.9", "10.2.2.2", 40000, 443, sadb.Protect},
		} {
			e, ok := sadb.Lookup(p, c.proto, netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst), c.srcPort, c.dstPort)
			if !ok || e.Action != c.want {
				t.Errorf("GM %d: %+v matched %+v %v", i, c, e, ok)
			}
		}
	}
	var snap node.Snapshot
	gms[0].Do(ctx, func() { snap = gms[0].Snapshot() })
	text, _ := show.GM(snap)
	for _, w := range []string{"ACL Downloaded From KS 127.0.5.1:",
		"access-list  deny udp any eq 848 any eq 848\n      access-list  deny ospf any any\n      access-list  permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255\n      access-list  deny ip host 10.9.9.9 any"} {
		if !strings.Contains(text, w) {
			t.Errorf("show crypto gdoi gm lacks %q:\n%s", w, text)
		}
	}

	// A committed ACL change (the deny moves before the permit and a new
	// deny appears) reaches the GMs with the next rekey.
	ksConf2 := loadConf(t, dir, "ks2.conf", strings.Replace(fmt.Sprintf(denyKS, ""),
		" permit ip 10.0.0.0", " deny tcp any any eq 179\n deny ip host 10.9.9.9 any\n permit ip 10.0.0.0", 1))
	ko2, err := daemon.Options(ksConf2, nil, 848)
	if err != nil {
		t.Fatal(err)
	}
	var rekeyErr error
	kn.Do(ctx, func() { rekeyErr = kn.UpdateKSPolicy(ko2.KS[0]) })
	if rekeyErr == nil {
		rekeyErr = kn.Rekey(ctx, "DENY")
	}
	if rekeyErr != nil {
		t.Fatal(rekeyErr)
	}
	const want2 = "deny 17 0.0.0.0/0:848 0.0.0.0/0:848; deny 89 0.0.0.0/0:0 0.0.0.0/0:0; deny 6 0.0.0.0/0:0 0.0.0.0/0:179; " +
		"deny 0 10.9.9.9/32:0 0.0.0.0/0:0; permit 0 10.0.0.0/8:0 10.0.0.0/8:0"
	for i, g := range gms {
		waitUntil(t, "the rekey", func() bool { return member(t, g).Rekeys.Received == 1 })
		if got := aclText(member(t, g).ACL); got != want2 {
			t.Fatalf("GM %d after the rekey\n got %s\nwant %s", i, got, want2)
		}
		e, _ := sadb.Lookup(member(t, g).ACL, 6, netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.2.2.2"), 40000, 443)
		if e.Action != sadb.Bypass {
			t.Errorf("GM %d: 10.9.9.9 is still protected after the change: %+v", i, e)
		}
	}
}
