package testnet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pair is two charons, the initiator in namespace gvt-<name>-i and the
// responder in gvt-<name>-r, joined by a veth called gvt<name> with
// 10.231.<net>.1/24 on the initiator's end and .2 on the responder's.
type pair struct {
	ini, res     *Charon
	iniIP, resIP string
}

func newPair(t *testing.T, name string, net int) *pair {
	t.Helper()
	RequireCharon(t)
	a := NewNetns(t, "gvt-"+name+"-i")
	b := NewNetns(t, "gvt-"+name+"-r")
	p := &pair{iniIP: fmt.Sprintf("10.231.%d.1", net), resIP: fmt.Sprintf("10.231.%d.2", net)}
	VethBetween(t, "gvt"+name, a, b,
		netip.MustParsePrefix(p.iniIP+"/24"), netip.MustParsePrefix(p.resIP+"/24"))
	p.ini = StartCharon(t, a, CharonConfig{})
	p.res = StartCharon(t, b, CharonConfig{})
	return p
}

// ikev1Conn renders a swanctl connection without children (the kernel here
// has no ESP): IKEv1 Main Mode to port 500. extra goes into the connection
// section, local and remote into its local and remote sections.
func ikev1Conn(name, localIP, remoteIP, proposals, extra, local, remote string) string {
	return fmt.Sprintf(`connections {
	%s {
		version = 1
		aggressive = no
		local_addrs = %s
		remote_addrs = %s
		remote_port = 500
		proposals = %s
		%s
		local {
			%s
		}
		remote {
			%s
		}
	}
}
`, name, localIP, remoteIP, proposals, extra, local, remote)
}

// establish initiates ike from p.ini, waits for ESTABLISHED on both ends and
// returns the initiator's list-sas.
func (p *pair) establish(t *testing.T, ike string) string {
	t.Helper()
	start := time.Now()
	out := p.ini.Initiate(t, ike)
	iniSA := p.ini.WaitEstablished(t, ike, 30*time.Second)
	resSA := p.res.WaitEstablished(t, ike, 30*time.Second)
	t.Logf("initiate:\n%s\nestablished on both ends after %v\ninitiator:\n%s\nresponder:\n%s",
		out, time.Since(start).Round(time.Millisecond), iniSA, resSA)
	return iniSA
}

// suite describes the negotiated IKE proposal for checkKeymat.
type suite struct {
	prf    func() hash.Hash // the PRF's hash (HMAC-<prf>)
	keyLen int              // cipher key size, bytes
	pubLen int              // KE payload size: modp = len(g^xy), ecp = 2*len(g^xy)
	// hashPRF is the PRF's hash for HASH_I/HASH_R when it is not prf:
	// with ECDSA signatures charon (after RFC 4754) uses the hash of the
	// ECDSA method, SHA-256 for ECDSA-256, whatever the negotiated PRF.
	hashPRF func() hash.Hash
}

var spisRE = regexp.MustCompile(`([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r`)

// checkKeymat parses the key derivation from both charon logs, checks that
// both ends derived the same values, and recomputes what it can from RFC
// 2409 (SKEYID_d/_a/_e, Ka, the initial IV, HASH_I, HASH_R), which pins the
// meaning of every label.
func checkKeymat(t *testing.T, p *pair, listing string, s suite) map[string][]byte {
	t.Helper()
	ini, err := ParseIKEv1Keymat(p.ini.Log())
	if err != nil {
		t.Fatalf("initiator log: %v", err)
	}
	res, err := ParseIKEv1Keymat(p.res.Log())
	if err != nil {
		t.Fatalf("responder log: %v", err)
	}
	for _, l := range []string{"shared Diffie Hellman secret", "SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e",
		"encryption key Ka", "initial IV", "HASH_I data", "HASH_I", "HASH_R data", "HASH_R", "next IV for MID 0"} {
		if _, ok := ini[l]; !ok {
			t.Errorf("initiator log lacks %q", l)
			continue
		}
		if l == "next IV for MID 0" || strings.HasSuffix(l, " data") {
			continue
		}
		if !bytes.Equal(ini[l], res[l]) {
			t.Errorf("%q differs: initiator %x, responder %x", l, ini[l], res[l])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	m := spisRE.FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no IKEv1 SPIs in list-sas:\n%s", listing)
	}
	cky, _ := hex.DecodeString(m[1] + m[2])
	prf := func(key []byte, parts ...[]byte) []byte {
		h := hmac.New(s.prf, key)
		for _, b := range parts {
			h.Write(b)
		}
		return h.Sum(nil)
	}
	gxy, skeyid := ini["shared Diffie Hellman secret"], ini["SKEYID"]
	want := map[string][]byte{}
	want["SKEYID_d"] = prf(skeyid, gxy, cky, []byte{0})
	want["SKEYID_a"] = prf(skeyid, want["SKEYID_d"], gxy, cky, []byte{1})
	want["SKEYID_e"] = prf(skeyid, want["SKEYID_a"], gxy, cky, []byte{2})
	want["encryption key Ka"] = want["SKEYID_e"][:s.keyLen] // prf output >= key size here
	h := s.prf()
	h.Write(ini["HASH_I data"][:2*s.pubLen])
	want["initial IV"] = h.Sum(nil)[:16]
	if s.hashPRF != nil {
		hashPRF := hmac.New(s.hashPRF, skeyid)
		hashPRF.Write(ini["HASH_I data"])
		want["HASH_I"] = hashPRF.Sum(nil)
		hashPRF = hmac.New(s.hashPRF, skeyid)
		hashPRF.Write(ini["HASH_R data"])
		want["HASH_R"] = hashPRF.Sum(nil)
	} else {
		want["HASH_I"] = prf(skeyid, ini["HASH_I data"])
		want["HASH_R"] = prf(skeyid, ini["HASH_R data"])
	}
	for l, w := range want {
		if !bytes.Equal(ini[l], w) {
			t.Errorf("%q = %x, RFC 2409 gives %x", l, ini[l], w)
		}
	}
	if got := ini["HASH_I data"][2*s.pubLen : 2*s.pubLen+16]; !bytes.Equal(got, cky) {
		t.Errorf("HASH_I data has cookies %x, list-sas %x", got, cky)
	}
	if len(skeyid) != s.prf().Size() {
		t.Errorf("SKEYID is %d bytes, want %d", len(skeyid), s.prf().Size())
	}
	return ini
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCharonIKEv1PSK(t *testing.T) {
	t.Parallel()
	p := newPair(t, "psk", 11)
	secrets := fmt.Sprintf(`secrets {
	ike-x {
		secret = "groupvpn-testnet-psk"
		id-1 = %s
		id-2 = %s
	}
}
`, p.iniIP, p.resIP)
	p.ini.Load(t, ikev1Conn("psk", p.iniIP, p.resIP, "aes128-sha256-modp2048", "",
		"auth = psk\n\t\t\tid = "+p.iniIP, "auth = psk\n\t\t\tid = "+p.resIP)+secrets, nil)
	p.res.Load(t, ikev1Conn("psk", p.resIP, p.iniIP, "aes128-sha256-modp2048", "",
		"auth = psk\n\t\t\tid = "+p.resIP, "auth = psk\n\t\t\tid = "+p.iniIP)+secrets, nil)
	listing := p.establish(t, "psk")
	km := checkKeymat(t, p, listing, suite{prf: sha256.New, keyLen: 16, pubLen: 256})
	for _, l := range []string{"SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e", "encryption key Ka", "initial IV", "HASH_I", "HASH_R"} {
		t.Logf("%-18s %x", l, km[l])
	}
}

// certPair loads a connection authenticated with certificates issued by
// one CA: moon.test initiates, sun.test responds; both send their
// certificate.
func certPair(t *testing.T, p *pair, proposals string, moonKey, sunKey *Cert, ca *CA) {
	t.Helper()
	for _, side := range []struct {
		c                 *Charon
		me, peer          string
		meIP, peerIP      string
		cert              *Cert
		meFile, peerIDStr string
	}{
		{p.ini, "moon", "sun", p.iniIP, p.resIP, moonKey, "moon.pem", "sun.test"},
		{p.res, "sun", "moon", p.resIP, p.iniIP, sunKey, "sun.pem", "moon.test"},
	} {
		conf := ikev1Conn("cert", side.meIP, side.peerIP, proposals, "send_cert = always",
			"auth = pubkey\n\t\t\tcerts = "+side.meFile+"\n\t\t\tid = "+side.me+".test",
			"auth = pubkey\n\t\t\tid = "+side.peerIDStr+"\n\t\t\tcacerts = ca.pem")
		side.c.Load(t, conf, map[string][]byte{
			"x509/" + side.meFile:    side.cert.CertPEM,
			"private/" + side.meFile: side.cert.KeyPEM,
			"x509ca/ca.pem":          ca.CertPEM,
		})
	}
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCharonIKEv1RSACert(t *testing.T) {
	t.Parallel()
	RequireCharon(t)
	ca := NewCA(t, "groupvpn testnet CA")
	moon := ca.Issue(t, "moon.test", NewRSAKey(t), "moon.test")
	sun := ca.Issue(t, "sun.test", NewRSAKey(t), "sun.test")
	p := newPair(t, "rsa", 12)
	certPair(t, p, "aes128-sha256-modp2048", moon, sun, ca)
	listing := p.establish(t, "cert")
	if !strings.Contains(p.res.Log(), `received end entity cert "CN=moon.test"`) {
		t.Errorf("responder did not receive the initiator's certificate")
	}
	if !strings.Contains(p.ini.Log(), `received end entity cert "CN=sun.test"`) {
		t.Errorf("initiator did not receive the responder's certificate")
	}
	if !strings.Contains(p.ini.Log(), "authentication of 'sun.test' with RSA_EMSA_PKCS1_NULL successful") {
		t.Errorf("initiator log does not show RSA authentication of sun.test")
	}
	checkKeymat(t, p, listing, suite{prf: sha256.New, keyLen: 16, pubLen: 256})
}

// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCharonIKEv1ECDSACertECP384(t *testing.T) {
	t.Parallel()
	RequireCharon(t)
	RequirePlugins(t, "openssl") // ECDSA and ecp384
	ca := NewCA(t, "groupvpn testnet CA")
	moon := ca.Issue(t, "moon.test", NewECDSAKey(t), "moon.test")
	sun := ca.Issue(t, "sun.test", NewECDSAKey(t), "sun.test")
	p := newPair(t, "ecp", 13)
	certPair(t, p, "aes256-sha384-ecp384", moon, sun, ca)
	listing := p.establish(t, "cert")
	if !strings.Contains(listing, "AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384") {
		t.Errorf("unexpected proposal in list-sas:\n%s", listing)
	}
	if !strings.Contains(p.ini.Log(), "authentication of 'sun.test' with ECDSA_WITH_NULL successful") {
		t.Errorf("initiator log does not show ECDSA authentication of sun.test")
	}
	checkKeymat(t, p, listing, suite{prf: sha512.New384, keyLen: 32, pubLen: 96, hashPRF: sha256.New})
}

// TestCharonReachesRootSocket is the topology of the interop tests to come:
// a Go UDP socket in the root namespace and charon in a namespace behind
// Veth. charon's first Main Mode message reaches the socket, and what the
// socket sends back reaches charon.
//
// proves: groundwork (interop harness for IKEv1 with strongSwan)
func TestCharonReachesRootSocket(t *testing.T) {
	t.Parallel()
	RequireCharon(t)
	ns := NewNetns(t, "gvt-root")
	Veth(t, "gvtroot", ns, netip.MustParsePrefix("10.231.10.1/24"), netip.MustParsePrefix("10.231.10.2/24"))
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 231, 10, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	c := StartCharon(t, ns, CharonConfig{})
	conf := strings.Replace(ikev1Conn("toroot", "10.231.10.2", "10.231.10.1", "aes128-sha256-modp2048", "",
		"auth = psk", "auth = psk"), "remote_port = 500", fmt.Sprintf("remote_port = %d", port), 1)
	c.Load(t, conf+`secrets { ike-x { secret = "x" } }`, nil)
	out := c.InitiateNoWait(t, "toroot")
	t.Logf("initiate: %s", out)

	buf := make([]byte, 4096)
	pc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, from, err := pc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no datagram from charon: %v", err)
	}
	msg := buf[:n]
	t.Logf("from %v: %d bytes, ISAKMP header %x", from, n, msg[:min(n, 28)])
	if from.String() != "10.231.10.2:500" {
		t.Errorf("datagram from %v, want 10.231.10.2:500", from)
	}
	// ISAKMP header: responder cookie zero, version 1.0, exchange 2
	// (Identity Protection, i.e. Main Mode).
	if n < 28 || !bytes.Equal(msg[8:16], make([]byte, 8)) || msg[17] != 0x10 || msg[18] != 2 {
		t.Fatalf("not an IKEv1 Main Mode first message: %x", msg[:min(n, 28)])
	}
	if _, err := pc.WriteToUDP(msg, from); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("received packet: from 10.231.10.1[%d] to 10.231.10.2[500]", port)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("charon did not log %q", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
