package system_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// mcastKSConf is ksConf with its rekeys sent to the multicast group
// 239.192.8.8 from the KS address (RFC 6407 §4: the SAK's destination).
var mcastKSConf = strings.NewReplacer(
	"crypto ipsec transform-set", "ip access-list extended rekey-group\n permit udp host 10.236.0.1 eq 848 host 239.192.8.8 eq 848\ncrypto ipsec transform-set",
	"rekey transport unicast", "rekey address ipv4 rekey-group",
).Replace(ksConf)

// proves: D1 — with the group ike started, the KS's multicast rekeys leave
// through iked: isakmpd sets the multicast interface and TTL on iked's
// socket for the KS address and sends to the group through it; a GM in
// another namespace receives the rekey on 239.192.8.8 and installs it.
func TestGroupMulticastRekey(t *testing.T) {
	nw := newNetwork(t, "gvsm")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ks := newHost(t, ctx, bin, "ks", nw.ksNS, mcastKSConf)
	ks.mustSrc("startsrc", "-g", "ike")
	gm1 := standaloneGM(t, ctx, bin, nw.gm1NS, "gm1", "10.236.0.1")
	gm1.waitFor("gm1 registering", 20*time.Second, gm1.registered)
	if out := gm1.cli("show crypto gdoi gm"); !strings.Contains(out, "Multicast (group 239.192.8.8)") {
		t.Fatalf("gm1 does not expect multicast rekeys:\n%s", out)
	}
	rekeys := func() string {
		return regexp.MustCompile(`Rekeys received\s+: \d+`).FindString(gm1.cli("show crypto gdoi gm"))
	}
	before := rekeys()
	if out, err := exec.Command(bin, "cli", "-s", filepath.Join(ks.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
		t.Fatalf("crypto gdoi ks rekey: %v\n%s", err, out)
	}
	gm1.waitFor("gm1 receiving the multicast rekey", 20*time.Second, func() bool { return rekeys() != before })
	if l, _ := exec.Command("cat", filepath.Join(ks.dir, "isakmpd.log")).Output(); !strings.Contains(string(l), "KS_SEND_MCAST_REKEY") {
		t.Errorf("the KS log has no multicast rekey:\n%s", l)
	}
}
