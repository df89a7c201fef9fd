package system_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: G3 (issue 17: ikev2d answers IKE_AUTH as an ordinary IKEv2
// peer): the KS host's ikev2d, started with the group ike under srcmstr
// (so through iked, which owns UDP 500), answers strongSwan's charon on
// 10.236.0.1:500 with the keyring's pre-shared key for charon's address:
// charon lists the IKE SA ESTABLISHED and its CHILD SA refused
// (NO_PROPOSAL_CHOSEN), `show crypto ikev2 sa` on ikev2d's control socket
// lists charon's address, lssrc -l lists 500 beside 848, and the key
// server registered nobody. (The SKEYSEED/SK_* comparison with charon's
// log is internal/ikev2d's TestPlainIKEv2FromCharon, on the same Router.)
func TestIkev2dPlainIKEv2UnderSRC(t *testing.T) {
	testnet.RequireCharon(t)
	testnet.RequirePlugins(t, "openssl", "kdf", "gcm")
	nw := newNetwork(t, "gv2c")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v2KS := gikev2KS(strings.Replace(strings.Replace(ksConf, "identity number 89", "identity number 90", 1), "group SRC", "group V2", 1))
	ks := newV2Host(t, ctx, bin, "ks", nw.ksNS, "", v2KS, "")
	ks.mustSrc("startsrc", "-g", "ike")
	ks.waitFor("ikev2d serving 500 through iked", 20*time.Second, func() bool {
		l, err := ks.src("lssrc", "-l", "-s", "ikev2d")
		return err == nil && listed(l, "10.236.0.1:500") && listed(l, "10.236.0.1:848")
	})

	ch := testnet.StartCharon(t, nw.gm1NS, testnet.CharonConfig{Plugins: testnet.IKEv2Plugins})
	conn := testnet.IKEv2Conn{Name: "gv", Local: "10.236.0.11", Remote: "10.236.0.1", Proposals: "aes128gcm16-prfsha256-ecp256",
		LocalAuth: "psk", LocalID: "10.236.0.11", RemoteAuth: "psk", RemoteID: "10.236.0.1", Child: "c", ChildProposal: "aes128gcm16"}
	ch.Load(t, conn.String()+testnet.PSKSecret("src-secret", "10.236.0.1", "10.236.0.11"), nil)
	ch.Swanctl(t, "--initiate", "--child", "c", "--timeout=-1")
	listing := ch.WaitEstablished(t, "gv", 30*time.Second)
	if !strings.Contains(listing, "IKEv2") {
		t.Fatalf("swanctl --list-sas:\n%s", listing)
	}
	ks.waitFor("charon's refused CHILD SA", 10*time.Second, func() bool {
		return strings.Contains(ch.Log(), "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built")
	})
	var shown string
	ks.waitFor("show crypto ikev2 sa listing charon", 10*time.Second, func() bool {
		shown = ks.cliV2("show crypto ikev2 sa")
		return strings.Contains(shown, "10.236.0.11:500") && strings.Contains(shown, "READY")
	})
	t.Logf("show crypto ikev2 sa:\n%s\ncharon:\n%s", shown, listing)
	if members := ks.cliV2("show crypto gdoi ks members"); strings.Contains(members, "10.236.0.11") {
		t.Fatalf("the ordinary IKEv2 peer is listed as a group member:\n%s", members)
	}
}
