package ikeudp

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
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// interopCase is one direction and authentication method against charon.
type interopCase struct {
	name       string
	net        int // 10.232.<net>.0/24
	auth       string
	weInitiate bool
	suite      ike.Suite
	proposal   string // the same suite in strongSwan's syntax
}

func interopCases() []interopCase {
	psk := ike.Suite{KeyBits: 128, Hash: ike.SHA256, Group: 14, Auth: ike.AuthPSK}
	rsa := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 14, Auth: ike.AuthRSA}
	ecdsa := ike.Suite{KeyBits: 256, Hash: ike.SHA384, Group: 20, Auth: ike.AuthECDSA256}
	return []interopCase{
		{"psk-we-init", 1, "psk", true, psk, "aes128-sha256-modp2048"},
		{"psk-ch-init", 2, "psk", false, psk, "aes128-sha256-modp2048"},
		{"rsa-we-init", 3, "rsa", true, rsa, "aes256-sha256-modp2048"},
		{"rsa-ch-init", 4, "rsa", false, rsa, "aes256-sha256-modp2048"},
		{"ecdsa-we-init", 5, "ecdsa", true, ecdsa, "aes256-sha384-ecp384"},
		{"ecdsa-ch-init", 6, "ecdsa", false, ecdsa, "aes256-sha384-ecp384"},
		// SHA-1 gives 20 octets of SKEYID_e for a 32-octet AES-256 key: the
		// key extension of RFC 2409 Appendix B.
		{"psk-keyext", 7, "psk", true, ike.Suite{KeyBits: 256, Hash: ike.SHA1, Group: 19, Auth: ike.AuthPSK}, "aes256-sha1-ecp256"},
	}
}

// proves: groundwork (IKEv1 interop) — main mode completes with strongSwan's
// charon in both directions, with PSK and with RSA (and ECDSA)
// certificates, charon lists the IKE SA as ESTABLISHED, and every key and
// hash charon derived (its ike=4 log) equals ours.
func TestInteropWithCharon(t *testing.T) {
	testnet.RequireCharon(t)
	for _, c := range interopCases() {
		t.Run(c.name, func(t *testing.T) { runInterop(t, c) })
	}
}

func runInterop(t *testing.T, c interopCase) {
	ns := testnet.NewNetns(t, "gvi-"+c.name)
	ours := netip.MustParseAddr(fmt.Sprintf("10.232.%d.1", c.net))
	theirs := netip.MustParseAddr(fmt.Sprintf("10.232.%d.2", c.net))
	testnet.Veth(t, fmt.Sprintf("gvi%d", c.net), ns, netip.PrefixFrom(ours, 24), netip.PrefixFrom(theirs, 24))
	ch := testnet.StartCharon(t, ns, testnet.CharonConfig{})

	cfg := &ike.Config{Suites: []ike.Suite{c.suite}, KeepTranscript: true} // checkKeymat reads the transcript
	local, remote := "auth = psk\n\t\t\tid = "+theirs.String(), "auth = psk\n\t\t\tid = "+ours.String()
	secrets := ""
	files := map[string][]byte{}
	switch c.auth {
	case "psk":
		const psk = "groupvpn interop pre-shared key"
		cfg.Creds.PSK = func(a netip.Addr) ([]byte, bool) { return []byte(psk), a == theirs }
		secrets = fmt.Sprintf("secrets {\n\tike-gv {\n\t\tsecret = %q\n\t\tid-1 = %s\n\t\tid-2 = %s\n\t}\n}\n", psk, ours, theirs)
	default:
		ca := testnet.NewCA(t, "groupvpn interop CA")
		var theirCert, ourCert *testnet.Cert
		if c.auth == "rsa" {
			theirCert = ca.Issue(t, "charon.interop", nil)
			ourCert = ca.Issue(t, "gm.interop", nil)
		} else {
			theirCert = ca.Issue(t, "charon.interop", testnet.NewECDSAKey(t))
			ourCert = ca.Issue(t, "gm.interop", testnet.NewECDSAKey(t))
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		cfg.Creds = ike.Credentials{Chain: [][]byte{ourCert.Cert.Raw}, Key: ourCert.Key, Roots: pool}
		local = "auth = pubkey\n\t\t\tcerts = charon.pem\n\t\t\tid = \"CN=charon.interop\""
		remote = "auth = pubkey\n\t\t\tid = \"CN=gm.interop\""
		files["x509/charon.pem"] = theirCert.CertPEM
		files["private/charon.key"] = theirCert.KeyPEM
		files["x509ca/ca.pem"] = ca.CertPEM
	}
	conn := fmt.Sprintf(`connections {
	gv {
		version = 1
		aggressive = no
		local_addrs = %s
		remote_addrs = %s
		remote_port = 500
		dpd_delay = 1s
		proposals = %s
		local {
			%s
		}
		remote {
			%s
		}
	}
}
`, theirs, ours, c.proposal, local, remote)
	ch.Load(t, conn+secrets, files)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := Listen(netip.AddrPortFrom(ours, 500), cfg, ike.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run(ctx)
	if c.weInitiate {
		if err := srv.Initiate(ctx, netip.AddrPortFrom(theirs, 500)); err != nil {
			t.Fatal(err)
		}
	} else {
		go ch.Initiate(t, "gv")
	}
	var sa *ike.SA
	select {
	case ev := <-srv.Events():
		if _, ok := ev.Event.(ike.Established); !ok {
			t.Fatalf("our side: %#v\ncharon log:\n%s", ev.Event, tailLines(ch.Log(), 60))
		}
		sa = ev.SA
	case <-ctx.Done():
		t.Fatalf("our side saw nothing\ncharon log:\n%s", tailLines(ch.Log(), 60))
	}
	listing := ch.WaitEstablished(t, "gv", 30*time.Second)
	if !strings.Contains(listing, "ESTABLISHED") || !strings.Contains(listing, "IKEv1") {
		t.Fatalf("swanctl --list-sas:\n%s", listing)
	}
	checkKeymat(t, c, sa, ch.Log())
	if c.name == "psk-ch-init" {
		dpdAndDelete(t, ctx, srv, sa, ch)
	}
}

// dpdAndDelete: charon's R-U-THERE (dpd_delay) is answered, ours is
// acknowledged, and our Delete removes charon's IKE SA.
func dpdAndDelete(t *testing.T, ctx context.Context, srv *Server, sa *ike.SA, ch *testnet.Charon) {
	deadline := time.Now().Add(20 * time.Second)
	ourAck := regexp.MustCompile(`parsed INFORMATIONAL_V1 request \d+ \[ HASH N\(DPD_ACK\) \]`)
	theirAck := regexp.MustCompile(`generating INFORMATIONAL_V1 request \d+ \[ HASH N\(DPD_ACK\) \]`)
	for !ourAck.MatchString(ch.Log()) {
		if time.Now().After(deadline) {
			t.Fatalf("charon never got a DPD answer:\n%s", tailLines(ch.Log(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var derr error
	srv.Do(ctx, func(ep *ike.Endpoint, now time.Time) ike.Output {
		out, err := ep.DPD(sa, now)
		derr = err
		return out
	})
	if derr != nil {
		t.Fatal(derr)
	}
	for !theirAck.MatchString(ch.Log()) {
		if time.Now().After(deadline) {
			t.Fatalf("charon did not see our R-U-THERE:\n%s", tailLines(ch.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.Do(ctx, func(ep *ike.Endpoint, now time.Time) ike.Output {
		out, err := ep.Delete(sa, now)
		derr = err
		return out
	})
	if derr != nil {
		t.Fatal(derr)
	}
	for strings.Contains(ch.ListSAs(t), "ESTABLISHED") {
		if time.Now().After(deadline) {
			t.Fatalf("charon kept the SA after our Delete:\n%s", tailLines(ch.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkKeymat compares every value charon logged with ours, and records the
// exchange as a known-answer vector when GROUPVPN_WRITE_VECTORS=1.
func checkKeymat(t *testing.T, c interopCase, sa *ike.SA, log string) {
	got, err := testnet.ParseIKEv1Keymat(log)
	if err != nil {
		t.Fatal(err)
	}
	k := sa.Keys()
	want := map[string][]byte{"SKEYID": k.SKEYID, "SKEYID_d": k.SKEYIDd, "SKEYID_a": k.SKEYIDa,
		"SKEYID_e": k.SKEYIDe, "encryption key Ka": k.Ka, "initial IV": k.IV}
	for label, ours := range want {
		theirs, ok := got[label]
		if !ok {
			t.Fatalf("charon logged no %q", label)
		}
		if !bytes.Equal(theirs, ours) {
			t.Errorf("%s: charon %x, ours %x", label, theirs, ours)
		}
	}
	tr := sa.Transcript()
	for l, ours := range map[string][]byte{"HASH_I": tr.HashI, "HASH_R": tr.HashR} {
		theirs, ok := got[l]
		if !ok {
			t.Errorf("charon logged no %s", l)
		} else if !bytes.Equal(theirs, ours) {
			t.Errorf("%s: charon %x, ours %x", l, theirs, ours)
		}
	}
	if os.Getenv("GROUPVPN_WRITE_VECTORS") != "1" {
		return
	}
	v := map[string]string{"suite": c.suite.String(), "proposal": c.proposal}
	put := func(k string, b []byte) { v[k] = hex.EncodeToString(b) }
	put("icky", tr.ICookie[:])
	put("rcky", tr.RCookie[:])
	put("ni", tr.Ni)
	put("nr", tr.Nr)
	put("gxi", tr.GXI)
	put("gxr", tr.GXR)
	put("sai_b", tr.SAi)
	put("idii_b", tr.IDi)
	put("idir_b", tr.IDr)
	for label, b := range got {
		put("charon:"+label, b)
	}
	if c.auth == "psk" {
		v["psk"] = hex.EncodeToString([]byte("groupvpn interop pre-shared key"))
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	path := filepath.Join("..", "ike", "testdata", "charon-"+c.name+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
