package ikev2udp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// interopCase is one direction and authentication method against charon.
type interopCase struct {
	name       string
	net        int // 10.242.<net>.0/24
	auth       string
	weInitiate bool
	suite      ikev2.Suite
	proposal   string // the same suite in strongSwan's syntax
	child      string // "refused": charon asks for a CHILD SA, we refuse; "installed": we negotiate one
}

func interopCases() []interopCase {
	gcm := ikev2.Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19}
	gcm256 := ikev2.Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 20}
	cbc := ikev2.Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14}
	return []interopCase{
		{"psk-ch-init", 1, "psk", false, gcm, "aes128gcm16-prfsha256-ecp256", ""},
		{"psk-we-init", 2, "psk", true, cbc, "aes256-sha256-prfsha256-modp2048", ""},
		{"ecdsa-ch-init", 3, "ecdsa", false, gcm256, "aes256gcm16-prfsha256-ecp384", ""},
		{"ecdsa-we-init", 4, "ecdsa", true, gcm, "aes128gcm16-prfsha256-ecp256", ""},
		{"rsa-ch-init", 5, "rsa", false, cbc, "aes256-sha256-prfsha256-modp2048", ""},
		{"rsa-we-init", 6, "rsa", true, ikev2.Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 21}, "aes256gcm16-prfsha256-ecp521", ""},
		// charon asks for a CHILD SA in IKE_AUTH: without a ChildConfig we
		// refuse it with NO_PROPOSAL_CHOSEN and the IKE SA stands (§1.2).
		{"psk-ch-init-nochild", 7, "psk", false, gcm, "aes128gcm16-prfsha256-ecp256", "refused"},
		// A CHILD SA in IKE_AUTH both ways, which charon installs with
		// kernel-libipsec: UDP-encapsulated only, so charon forces NAT-T
		// (encap = yes) and the SA moves to port 4500; same SPIs and
		// KEYMAT on both sides.
		{"psk-ch-init-child", 8, "psk", false, gcm, "aes128gcm16-prfsha256-ecp256", "installed"},
		{"ecdsa-we-init-child", 9, "ecdsa", true, cbc, "aes256-sha256-prfsha256-modp2048", "installed"},
		// ID_FQDN identities matched against the certificates' dNSNames.
		{"ecdsa-fqdn-ch-init", 10, "ecdsa-fqdn", false, gcm, "aes128gcm16-prfsha256-ecp256", ""},
		{"ecdsa-fqdn-we-init", 11, "ecdsa-fqdn", true, gcm, "aes128gcm16-prfsha256-ecp256", ""},
	}
}

// proves: G3 (issue 17: IKE_SA_INIT + IKE_AUTH interoperate with
// strongSwan's charon 5.9.8 in both directions, with PSK, ECDSA and RSA
// certificates made by crypto/x509, AES-GCM-16 and AES-CBC + HMAC-SHA2,
// groups 14, 19, 20, 21: charon lists the IKEv2 SA ESTABLISHED, our
// Established event has the SA up, and SKEYSEED, SK_d, SK_ai/ar, SK_ei/er
// and SK_pi/pr equal what charon logged; an INFORMATIONAL liveness check
// is answered by charon, and a Delete from either side removes the SA on
// the other; a CHILD SA in IKE_AUTH, both ways, is INSTALLED by charon
// (kernel-libipsec, ESP in UDP after NAT-T moved the SA to port 4500) with
// our SPIs and KEYMAT, and refused with NO_PROPOSAL_CHOSEN when we hold no
// ChildConfig).
func TestInteropWithCharon(t *testing.T) {
	testnet.RequireCharon(t)
	testnet.RequirePlugins(t, "openssl", "kdf", "gcm")
	for _, c := range interopCases() {
		t.Run(c.name, func(t *testing.T) { runInterop(t, c) })
	}
}

func runInterop(t *testing.T, c interopCase) {
	ns := testnet.NewNetns(t, "gv2-"+c.name)
	ours := netip.MustParseAddr(fmt.Sprintf("10.242.%d.1", c.net))
	theirs := netip.MustParseAddr(fmt.Sprintf("10.242.%d.2", c.net))
	testnet.Veth(t, fmt.Sprintf("gv2i%d", c.net), ns, netip.PrefixFrom(ours, 24), netip.PrefixFrom(theirs, 24))
	cc := testnet.CharonConfig{Plugins: testnet.IKEv2Plugins}
	if c.child == "installed" {
		testnet.RequirePlugins(t, "kernel-libipsec")
		cc.Plugins = testnet.IKEv2ChildPlugins
		// libipsec's processor and TUN reader hold worker threads for
		// good: 8 leave none to vici.
		cc.Extra = "threads = 32\n"
		cc.LogLevels = map[string]int{"chd": 4}
		for k, v := range testnet.DefaultLogLevels {
			cc.LogLevels[k] = v
		}
	}
	ch := testnet.StartCharon(t, ns, cc)

	cfg := &ikev2.Config{Suites: []ikev2.Suite{c.suite}}
	conn := testnet.IKEv2Conn{Name: "gv", Local: theirs.String(), Remote: ours.String(), Proposals: c.proposal,
		LocalAuth: "psk", LocalID: theirs.String(), RemoteAuth: "psk", RemoteID: ours.String()}
	secrets := ""
	files := map[string][]byte{}
	const psk = "groupvpn ikev2 interop pre-shared key"
	switch c.auth {
	case "psk":
		cfg.Creds.PSK = func(a netip.Addr) ([]byte, bool) { return []byte(psk), a == theirs }
		secrets = testnet.PSKSecret(psk, ours.String(), theirs.String())
	default:
		ca := testnet.NewCA(t, "groupvpn ikev2 interop CA")
		var theirCert, ourCert *testnet.Cert
		if c.auth == "rsa" {
			theirCert = ca.Issue(t, "charon.interop", nil)
			ourCert = ca.Issue(t, "gm.interop", nil)
		} else {
			theirCert = ca.Issue(t, "charon.interop", testnet.NewECDSAKey(t), "charon.interop")
			ourCert = ca.Issue(t, "gm.interop", testnet.NewECDSAKey(t), "gm.interop")
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		cfg.Creds = ike.Credentials{Chain: [][]byte{ourCert.Cert.Raw}, Key: ourCert.Key, Roots: pool}
		cfg.CACerts = []*x509.Certificate{ca.Cert}
		conn.LocalAuth, conn.LocalID, conn.LocalCert = "pubkey", `"CN=charon.interop"`, "charon.pem"
		conn.RemoteAuth, conn.RemoteID = "pubkey", `"CN=gm.interop"`
		if c.auth == "ecdsa-fqdn" {
			conn.LocalID, conn.RemoteID = "charon.interop", "gm.interop"
			cfg.LocalID = &ikev2.Identity{Type: wire.IDFQDN, Data: []byte("gm.interop")}
			cfg.RemoteID = &ikev2.Identity{Type: wire.IDFQDN, Data: []byte("charon.interop")}
		}
		files["x509/charon.pem"] = theirCert.CertPEM
		files["private/charon.key"] = theirCert.KeyPEM
		files["x509ca/ca.pem"] = ca.CertPEM
	}
	var childSuite ikev2.ChildSuite
	if c.child != "" {
		conn.Child, conn.ChildProposal = "c", "aes128gcm16"
		childSuite = ikev2.ChildSuite{Encr: wire.EncrAESGCM16, KeyBits: 128}
		if c.weInitiate {
			conn.ChildProposal = "aes256-sha256"
			childSuite = ikev2.ChildSuite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128}
		}
	}
	if c.child == "installed" {
		// Inner addresses, not the IKE ones: kernel-libipsec routes the
		// selectors into its TUN device.
		innerOurs := netip.MustParsePrefix(fmt.Sprintf("10.243.%d.1/32", c.net))
		innerTheirs := netip.MustParsePrefix(fmt.Sprintf("10.243.%d.2/32", c.net))
		conn.LocalTS, conn.RemoteTS = innerTheirs.String(), innerOurs.String()
		tsOurs := []wire.TrafficSelector{wire.PrefixTS(innerOurs)}
		tsTheirs := []wire.TrafficSelector{wire.PrefixTS(innerTheirs)}
		cfg.Child = &ikev2.ChildConfig{Suites: []ikev2.ChildSuite{childSuite}, TSi: tsOurs, TSr: tsTheirs}
		cfg.NATT, conn.Encap = true, true
		// charon's end of the selectors must be a local address, or
		// kernel-libipsec cannot route to its TUN device from it.
		ns.Run(t, "ip", "addr", "add", innerTheirs.String(), "dev", "lo")
	}
	ch.Load(t, conn.String()+secrets, files)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := Listen(netip.AddrPortFrom(ours, 500), cfg, ikev2.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	if c.weInitiate {
		if err := srv.Initiate(ctx, netip.AddrPortFrom(theirs, 500)); err != nil {
			t.Fatal(err)
		}
	} else if c.child != "" {
		ch.Swanctl(t, "--initiate", "--child", "c", "--timeout=-1")
	} else {
		ch.InitiateNoWait(t, "gv")
	}
	var sa *ikev2.SA
	var info ikev2.Info
	var child *ikev2.ChildSA
	for sa == nil || (c.child == "installed" && child == nil) {
		select {
		case ev := <-srv.Events():
			switch e := ev.Event.(type) {
			case ikev2.Established:
				sa, info = ev.SA, e.Info
			case ikev2.ChildEstablished:
				child = &e.Child
			default:
				t.Fatalf("our side: %#v\ncharon log:\n%s", ev.Event, logLines(ch.Log(), "[CFG]", "[CHD]", "[IKE]", "[ENC]", "[KNL]", "[ESP]"))
			}
		case <-ctx.Done():
			t.Fatalf("our side saw nothing (SA %v, child %v)\ncharon log:\n%s", sa != nil, child != nil, tailLines(ch.Log(), 80))
		}
	}
	listing := ch.WaitEstablished(t, "gv", 30*time.Second)
	if !strings.Contains(listing, "IKEv2") {
		t.Fatalf("swanctl --list-sas:\n%s", listing)
	}
	t.Logf("ours: %s, peer %s by %s; charon:\n%s", info.Suite, info.PeerID, info.AuthMethod, listing)
	if c.child == "installed" {
		if !info.NATT || info.Peer.Port() != ikev2.NATTPort || !child.Encap {
			t.Errorf("the SA did not move to port 4500: peer %s, NAT-T %v, encap %v", info.Peer, info.NATT, child.Encap)
		}
		checkChild(t, ch, child)
	}
	if c.child == "refused" {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(ch.Log(), "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built") {
			if time.Now().After(deadline) {
				t.Fatalf("charon did not log the refused CHILD SA:\n%s", tailLines(ch.Log(), 40))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	checkKeymat(t, c, sa, info, ch.Log())

	// Liveness: an empty INFORMATIONAL answered by charon.
	var rerr error
	srv.Do(ctx, func(ep *ikev2.Endpoint, now time.Time) ikev2.Output {
		out, err := ep.Liveness(sa, now)
		rerr = err
		return out
	})
	if rerr != nil {
		t.Fatal(rerr)
	}
	waitEvent(t, ctx, srv, ch, func(e ikev2.Event) bool { return e == ikev2.Alive{} })

	if c.weInitiate {
		// charon deletes: our SA reports Deleted.
		ch.Swanctl(t, "--terminate", "--ike", "gv", "--timeout", "10")
		waitEvent(t, ctx, srv, ch, func(e ikev2.Event) bool { return e == ikev2.Deleted{} })
	} else {
		// We delete: charon forgets the SA.
		srv.Do(ctx, func(ep *ikev2.Endpoint, now time.Time) ikev2.Output {
			out, err := ep.Delete(sa, now)
			rerr = err
			return out
		})
		if rerr != nil {
			t.Fatal(rerr)
		}
		waitEvent(t, ctx, srv, ch, func(e ikev2.Event) bool { return e == ikev2.Deleted{} })
		deadline := time.Now().Add(10 * time.Second)
		for strings.Contains(ch.ListSAs(t), "ESTABLISHED") {
			if time.Now().After(deadline) {
				t.Fatalf("charon kept the SA after our Delete:\n%s", tailLines(ch.Log(), 40))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// checkChild: charon lists the CHILD SA INSTALLED with our SPIs, and the
// keys it logged (chd = 4) are ours.
func checkChild(t *testing.T, ch *testnet.Charon, child *ikev2.ChildSA) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var listing string
	for {
		listing = ch.ListSAs(t)
		if strings.Contains(listing, "INSTALLED") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("charon did not install the CHILD SA:\n%s\n%s", listing, logLines(ch.Log(), "[CHD]", "[IKE]", "[ENC]", "[KNL]", "[ESP]"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, spi := range []uint32{child.SPIi, child.SPIr} {
		if !strings.Contains(listing, fmt.Sprintf("%08x", spi)) {
			t.Errorf("charon's listing lacks SPI %08x:\n%s", spi, listing)
		}
	}
	dumps, err := testnet.ParseHexDumps(ch.Log())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"encryption initiator key": child.EncrI, "encryption responder key": child.EncrR}
	if len(child.IntegI) > 0 {
		want["integrity initiator key"], want["integrity responder key"] = child.IntegI, child.IntegR
	}
	for label, ours := range want {
		found := false
		for _, d := range dumps {
			if d.Label == label {
				found = true
				if !bytes.Equal(d.Data, ours) {
					t.Errorf("%s: charon %x, ours %x", label, d.Data, ours)
				}
				break
			}
		}
		if !found {
			t.Errorf("charon logged no %q", label)
		}
	}
	t.Logf("CHILD SA %s SPIs %08x/%08x:\n%s", child.Suite, child.SPIi, child.SPIr, listing)
}

func waitEvent(t *testing.T, ctx context.Context, srv *Server, ch *testnet.Charon, want func(ikev2.Event) bool) {
	t.Helper()
	for {
		select {
		case ev := <-srv.Events():
			if want(ev.Event) {
				return
			}
			t.Fatalf("unexpected event %#v\ncharon log:\n%s", ev.Event, tailLines(ch.Log(), 40))
		case <-ctx.Done():
			t.Fatalf("no event\ncharon log:\n%s", tailLines(ch.Log(), 40))
		}
	}
}

// checkKeymat compares every key charon logged (ike = 4) with ours, and
// records the exchange as a known-answer vector for internal/ikev2 when
// GROUPVPN_WRITE_VECTORS=1.
func checkKeymat(t *testing.T, c interopCase, sa *ikev2.SA, info ikev2.Info, log string) {
	got, err := testnet.ParseIKEv2Keymat(log)
	if err != nil {
		t.Fatal(err)
	}
	k := info.Keys
	tr := sa.Transcript()
	want := map[string][]byte{"shared Diffie Hellman secret": tr.GIR, "SKEYSEED": k.SKEYSEED, "Sk_d secret": k.SKd,
		"Sk_ei secret": k.SKei, "Sk_er secret": k.SKer, "Sk_pi secret": k.SKpi, "Sk_pr secret": k.SKpr}
	if len(k.SKai) > 0 {
		want["Sk_ai secret"], want["Sk_ar secret"] = k.SKai, k.SKar
	}
	for label, ours := range want {
		theirs, ok := got[label]
		if !ok {
			t.Errorf("charon logged no %q", label)
			continue
		}
		if !bytes.Equal(theirs, ours) {
			t.Errorf("%s: charon %x, ours %x", label, theirs, ours)
		}
	}
	if os.Getenv("GROUPVPN_WRITE_VECTORS") != "1" {
		return
	}
	v := map[string]string{"suite": c.suite.String(), "proposal": c.proposal}
	put := func(k string, b []byte) { v[k] = hex.EncodeToString(b) }
	put("spii", info.SPIi[:])
	put("spir", info.SPIr[:])
	put("ni", tr.Ni)
	put("nr", tr.Nr)
	put("init_req", tr.InitReq)
	put("init_resp", tr.InitResp)
	for label, b := range got {
		put("charon:"+label, b)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	path := filepath.Join("..", "ikev2", "testdata", "charon-"+c.name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// logLines returns the lines of a charon log from the given subsystems,
// without hex dumps and vici chatter.
func logLines(log string, subsystems ...string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		for _, s := range subsystems {
			if strings.Contains(l, s) && !strings.Contains(l, " => ") && !strings.Contains(l, ": ") {
				out = append(out, l)
				break
			}
		}
	}
	return tailLines(strings.Join(out, "\n"), 60)
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
