package ikev2d

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: G3 (issue 17: ikev2d answers IKE_AUTH as an ordinary IKEv2
// peer): charon 5.9.8 initiates IKE_SA_INIT + IKE_AUTH to the router of
// `groupvpn ikev2d` on UDP 500 (Options.PlainPort) beside its G-IKEv2 key
// server on 848, with a PSK looked up by address and with ECDSA
// certificates (charon sending its own when our CERTREQ names the CA):
// charon lists the IKE SA ESTABLISHED, the router holds it as a plain SA
// of no group (`show crypto ikev2 sa`, no registration at the KS), the
// CHILD SA charon asks for is refused with NO_PROPOSAL_CHOSEN and the IKE
// SA stands, SKEYSEED and every SK_* (and g^ir) the router derived equal
// what charon logged, charon's DPD (an empty INFORMATIONAL) is answered,
// and charon's Delete removes the SA from the router.
func TestPlainIKEv2FromCharon(t *testing.T) {
	testnet.RequireCharon(t)
	testnet.RequirePlugins(t, "openssl", "kdf", "gcm")
	for i, auth := range []string{"psk", "ecdsa"} {
		t.Run(auth, func(t *testing.T) { runPlainInterop(t, 77+i, auth) })
	}
}

func runPlainInterop(t *testing.T, subnet int, auth string) {
	ns := testnet.NewNetns(t, fmt.Sprintf("gv2p-%s", auth))
	ours := netip.MustParseAddr(fmt.Sprintf("10.242.%d.1", subnet))
	theirs := netip.MustParseAddr(fmt.Sprintf("10.242.%d.2", subnet))
	testnet.Veth(t, fmt.Sprintf("gv2p%d", subnet), ns, netip.PrefixFrom(ours, 24), netip.PrefixFrom(theirs, 24))
	ch := testnet.StartCharon(t, ns, testnet.CharonConfig{Plugins: testnet.IKEv2Plugins})

	conn := testnet.IKEv2Conn{Name: "gv", Local: theirs.String(), Remote: ours.String(), Proposals: "aes128gcm16-prfsha256-ecp256",
		LocalAuth: "psk", LocalID: theirs.String(), RemoteAuth: "psk", RemoteID: ours.String(),
		Child: "c", ChildProposal: "aes128gcm16", Extra: "dpd_delay = 1s"}
	cfg := Config{KS: []ks.GroupConfig{ksGroup(t)}}
	cfg.KS[0].Address = ours
	secrets := ""
	files := map[string][]byte{}
	switch auth {
	case "psk":
		const key = "groupvpn ikev2d plain pre-shared key"
		cfg.Creds.PSK = func(a netip.Addr) ([]byte, bool) { return []byte(key), a == theirs }
		secrets = testnet.PSKSecret(key, ours.String(), theirs.String())
	case "ecdsa":
		ca := testnet.NewCA(t, "groupvpn ikev2d plain CA")
		theirCert := ca.Issue(t, "charon.plain", testnet.NewECDSAKey(t))
		ourCert := ca.Issue(t, "ks.plain", testnet.NewECDSAKey(t))
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		cfg.Creds = ike.Credentials{Chain: [][]byte{ourCert.Cert.Raw}, Key: ourCert.Key, Roots: pool}
		cfg.CACerts = []*x509.Certificate{ca.Cert}
		conn.LocalAuth, conn.LocalID, conn.LocalCert = "pubkey", `"CN=charon.plain"`, "charon.pem"
		conn.RemoteAuth, conn.RemoteID = "pubkey", `"CN=ks.plain"`
		files["x509/charon.pem"] = theirCert.CertPEM
		files["private/charon.key"] = theirCert.KeyPEM
		files["x509ca/ca.pem"] = ca.CertPEM
	}
	ch.Load(t, conn.String()+secrets, files)

	r, err := New(cfg, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ours, DefaultPort), netip.AddrPortFrom(ours, 500)}, PlainPort: 500})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	ctx := context.Background()
	// Initiating the CHILD SA makes charon ask for it in IKE_AUTH.
	ch.Swanctl(t, "--initiate", "--child", "c", "--timeout=-1")

	var sa *ikev2.SA
	var info ikev2.Info
	var tr ikev2.Transcript
	waitFor(t, "the router's plain IKE SA", func() bool {
		r.Do(ctx, func() {
			if sas := r.PlainSAs(); len(sas) == 1 {
				sa, info, tr = sas[0], sas[0].Info(), sas[0].Transcript()
			}
		})
		return sa != nil
	})
	listing := ch.WaitEstablished(t, "gv", 30*time.Second)
	if !strings.Contains(listing, "IKEv2") {
		t.Fatalf("swanctl --list-sas:\n%s", listing)
	}
	t.Logf("ikev2d: %s, peer %s by %s; charon:\n%s", info.Suite, info.PeerID, info.AuthMethod, listing)
	if info.Local.Port() != 500 || info.Initiator {
		t.Errorf("the SA is not a responder's on port 500: %+v", info)
	}
	waitLog(t, ch, "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built")

	got, err := testnet.ParseIKEv2Keymat(ch.Log())
	if err != nil {
		t.Fatal(err)
	}
	k := info.Keys
	want := map[string][]byte{"shared Diffie Hellman secret": tr.GIR, "SKEYSEED": k.SKEYSEED, "Sk_d secret": k.SKd,
		"Sk_ei secret": k.SKei, "Sk_er secret": k.SKer, "Sk_pi secret": k.SKpi, "Sk_pr secret": k.SKpr}
	for label, mine := range want {
		if theirs, ok := got[label]; !ok {
			t.Errorf("charon logged no %q", label)
		} else if !bytes.Equal(theirs, mine) || len(mine) == 0 {
			t.Errorf("%s: charon %x, ikev2d %x", label, theirs, mine)
		}
	}

	var shown string
	var registered uint64
	r.Do(ctx, func() { shown, registered = r.showPlainSAs(), r.ks.Registered })
	if !strings.Contains(shown, theirs.String()+":500") || !strings.Contains(shown, "READY") || registered != 0 {
		t.Errorf("show crypto ikev2 sa (KS registrations %d):\n%s", registered, shown)
	}

	// charon's DPD (dpd_delay = 1s) is an empty INFORMATIONAL the router
	// answers.
	waitLog(t, ch, "parsed INFORMATIONAL response")
	if !strings.Contains(ch.ListSAs(t), "ESTABLISHED") {
		t.Fatalf("charon lost the SA after DPD:\n%s", ch.Log())
	}

	ch.Swanctl(t, "--terminate", "--ike", "gv", "--timeout", "10")
	waitFor(t, "the router forgetting the SA charon deleted", func() bool {
		n := -1
		r.Do(ctx, func() { n = len(r.PlainSAs()) })
		return n == 0
	})
}

func waitLog(t *testing.T, ch *testnet.Charon, line string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !strings.Contains(ch.Log(), line); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("charon never logged %q", line)
		}
	}
}

// proves: G3 (issue 17: the group roles send only from the G-IKEv2
// sockets): a member whose router also answers ordinary IKEv2 on port 500
// of the same address (listed first) registers from its G-IKEv2 socket,
// never from the plain one, whose IKE_AUTH a key server would not take.
func TestPlainSocketNotUsedByGroupRoles(t *testing.T) {
	ctx := context.Background()
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	// The member's address is the one the kernel picks towards the KS
	// (127.0.0.1); its plain port a free one instead of 500, which this
	// test must not take from others.
	local := netip.MustParseAddr("127.0.0.1")
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		t.Fatal(err)
	}
	plain := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	c.Close()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.AddrPortFrom(local, plain), netip.AddrPortFrom(local, 0)}, PlainPort: plain})
	if err != nil {
		t.Fatal(err)
	}
	run(t, gr)
	waitFor(t, "the member registering", func() bool {
		var ok bool
		gr.Do(ctx, func() { ok = gr.Members()[0].Registered })
		return ok
	})
	var members string
	kr.Do(ctx, func() { members = kr.showMembers() })
	if !strings.Contains(members, local.String()) || strings.Contains(members, fmt.Sprintf("port %d ", plain)) {
		t.Fatalf("the KS's members:\n%s", members)
	}
}

// proves: G3 (issue 17: a plain IKE SA carries no CHILD SA and no group
// exchange): an IKEv2 initiator (internal/ikev2 over UDP) establishes a
// plain IKE SA with the router beside its key server; its CREATE_CHILD_SA
// is answered NO_PROPOSAL_CHOSEN and a GSA_REGISTRATION INVALID_SYNTAX,
// both counted, the IKE SA standing and the KS registering nobody.
func TestPlainIKESARefusesChildAndGroupExchanges(t *testing.T) {
	ctx := context.Background()
	local := netip.MustParseAddr("127.0.0.1")
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		t.Fatal(err)
	}
	plain := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	c.Close()
	r, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}},
		Options{Listen: []netip.AddrPort{netip.AddrPortFrom(local, 0), netip.AddrPortFrom(local, plain)}, PlainPort: plain})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	to := netip.AddrPortFrom(local, plain)

	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ep, err := ikev2.NewEndpoint(&ikev2.Config{Creds: psk()}, conn.LocalAddr().(*net.UDPAddr).AddrPort(), ikev2.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	send := func(out ikev2.Output) {
		for _, p := range out.Send {
			conn.WriteToUDPAddrPort(p.Data, p.To)
		}
	}
	// next reads datagrams until the endpoint reports an event.
	next := func() ikev2.Event {
		t.Helper()
		buf := make([]byte, 65536)
		for {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no answer from the router: %v", err)
			}
			out := ep.Handle(from, buf[:n], time.Now())
			send(out)
			if len(out.Events) > 0 {
				return out.Events[0].Event
			}
		}
	}
	sa, out, err := ep.Initiate(to, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	send(out)
	if ev := next(); ev == nil {
		t.Fatal("no event")
	} else if _, ok := ev.(ikev2.Established); !ok {
		t.Fatalf("IKE_AUTH without IDg: %#v", ev)
	}
	for _, x := range []struct {
		exch wire.ExchangeType
		want wire.NotifyType
	}{{wire.ExchangeCreateChildSA, wire.NotifyNoProposalChosen}, {wire.ExchangeGSARegistration, wire.NotifyInvalidSyntax}} {
		out, err := ep.Request(sa, x.exch, []wire.Payload{&wire.Nonce{Data: make([]byte, 32)}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		send(out)
		resp, ok := next().(ikev2.Response)
		if ns := wire.Notifies(resp.Payloads); !ok || len(ns) != 1 || ns[0].NotifyType != x.want {
			t.Fatalf("%s answered %#v", x.exch, resp)
		}
	}
	var n int
	var refused, registered uint64
	r.Do(ctx, func() { n, refused, registered = len(r.PlainSAs()), r.Drops.PlainRefused, r.ks.Registered })
	if n != 1 || refused != 2 || registered != 0 || sa.State() != ikev2.StateEstablished {
		t.Fatalf("router: %d plain SAs, %d refused, %d registered; our SA %v", n, refused, registered, sa.State())
	}
}
