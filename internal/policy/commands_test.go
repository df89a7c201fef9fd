package policy

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: O1
func TestHostname(t *testing.T) {
	c := mustParse(t, "hostname ks1\n"+ksBase)
	if c.Hostname != "ks1" || c.HostnameLine != 1 {
		t.Fatalf("hostname %q line %d", c.Hostname, c.HostnameLine)
	}
	mustFail(t, "hostname\n", `1: "hostname": wrong number of arguments; usage: hostname NAME`)
}

// proves: V1
func TestGroupvpnVersion(t *testing.T) {
	c := mustParse(t, ksBase)
	if !c.Version.IsZero() || c.AnnouncedVersion() != version.Current {
		t.Fatalf("default version %v announced %v", c.Version, c.AnnouncedVersion())
	}
	c = mustParse(t, "groupvpn version 1.0.1\n"+ksBase)
	if c.Version != version.Base || c.AnnouncedVersion() != version.Base {
		t.Fatalf("version %v", c.Version)
	}
	mustFail(t, "groupvpn version 1.0\n", `1: groupvpn version "1.0": want major.minor.mini, e.g. 1.0.2`)
	mustFail(t, "groupvpn version 1.0.9\n", `1: groupvpn version 1.0.9 is out of range (accepted: 1.0.1-1.0.3; a node announces this software's version or an older one)`)
}

// proves: O1
func TestISAKMPPolicy(t *testing.T) {
	c := mustParse(t, `crypto isakmp policy 30
 encryption aes 192
 hash sha512
 authentication pre-share
 group 21
 lifetime 3600
crypto isakmp policy 10
 ENCR AES
 authentication pre-share
crypto isakmp key k address 10.0.0.1
crypto isakmp policy 20
 encryption aes 256
 authentication pre-share
crypto isakmp policy 10
 hash sha384
`)
	var prio []int
	for _, p := range c.ISAKMPPolicies {
		prio = append(prio, p.Priority)
	}
	if len(prio) != 3 || prio[0] != 10 || prio[1] != 20 || prio[2] != 30 {
		t.Fatalf("priorities %v", prio)
	}
	p10, p30 := c.ISAKMPPolicies[0], c.ISAKMPPolicies[2]
	want10 := ISAKMPPolicy{Priority: 10, KeyBits: 128, Hash: "sha384", Auth: AuthPreShare, Group: 14, Lifetime: 86400 * time.Second, Line: 7}
	if *p10 != want10 {
		t.Errorf("policy 10 (defaults, re-entered) = %+v, want %+v", *p10, want10)
	}
	want30 := ISAKMPPolicy{Priority: 30, KeyBits: 192, Hash: "sha512", Auth: AuthPreShare, Group: 21, Lifetime: time.Hour, Line: 1}
	if *p30 != want30 {
		t.Errorf("policy 30 = %+v, want %+v", *p30, want30)
	}
	mustFail(t, `crypto isakmp policy 0
crypto isakmp policy 10
 encryption 3des
 encryption aes 512
 hash md5
 authentication rsa-encr
 group 2
 lifetime 59
`,
		`1: crypto isakmp policy priority 0 is out of range (accepted: 1-10000)`,
		`2: crypto isakmp policy 10: authentication rsa-sig needs crypto pki certificate file, crypto pki key file, crypto pki ca file`,
		`3: encryption "3des" is not supported (accepted: aes 128, aes 192, aes 256)`,
		`4: encryption aes key length "512" is not supported (accepted: 128, 192, 256)`,
		`5: hash "md5" is not supported (accepted: sha, sha256, sha384, sha512)`,
		`6: authentication "rsa-encr" is not supported (accepted: pre-share, rsa-sig, ecdsa-sig)`,
		`7: Diffie-Hellman group "2" is not supported (accepted: 14, 15, 16, 19, 20, 21)`,
		`8: lifetime 59 is out of range (accepted: 60-86400)`,
	)
}

// proves: O1
func TestISAKMPKeyAndPSKForLongestPrefix(t *testing.T) {
	c := mustParse(t, `crypto isakmp key any4 address 0.0.0.0 0.0.0.0
crypto isakmp key branch address 10.1.0.0 255.255.0.0
crypto isakmp key site address 10.1.1.0 255.255.255.0
crypto isakmp key host address 10.1.1.7
crypto isakmp key v6 address ipv6 2001:db8::/32
crypto isakmp key v6host address ipv6 2001:db8::7
`)
	for _, tc := range []struct {
		addr, key string
	}{
		{"10.1.1.7", "host"},
		{"10.1.1.8", "site"},
		{"10.1.2.1", "branch"},
		{"192.0.2.1", "any4"},
		{"::ffff:10.1.1.7", "host"},
		{"2001:db8::7", "v6host"},
		{"2001:db8:1::1", "v6"},
		{"2001:db9::1", ""},
	} {
		k, ok := c.PSKFor(netip.MustParseAddr(tc.addr))
		if string(k) != tc.key || ok != (tc.key != "") {
			t.Errorf("PSKFor(%s) = %q %v, want %q", tc.addr, k, ok, tc.key)
		}
	}
	if got := c.ISAKMPKeys[1].Prefix; got != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("prefix %v", got)
	}
	mustFail(t, `crypto isakmp key a address 10.0.0.0 255.0.255.0
crypto isakmp key a address 10.0.0.1 255.255.255.0
crypto isakmp key a address 10.0.0.0 255.255.255.0
crypto isakmp key b address 10.0.0.0 255.255.255.0
crypto isakmp key a address ipv6 10.0.0.0/8
crypto isakmp key a addr 10.0.0.1
crypto isakmp key a address 10.0.0.256
`,
		`1: crypto isakmp key address mask 255.0.255.0 is not a contiguous netmask (e.g. 255.255.255.0)`,
		`2: crypto isakmp key address 10.0.0.1 255.255.255.0 has host bits set; write 10.0.0.0`,
		`4: crypto isakmp key for 10.0.0.0/24 is already given at line 3`,
		`5: crypto isakmp key address ipv6 "10.0.0.0/8" is not an IPv6 prefix (e.g. 2001:db8::/32 or ::/0)`,
		`6: "crypto isakmp key a addr 10.0.0.1": expected "address" where "addr" is; usage: crypto isakmp key KEY address {A.B.C.D [MASK] | ipv6 PREFIX}`,
		`7: crypto isakmp key address "10.0.0.256" is not an IPv4 address`,
	)
}

// proves: O1
func TestISAKMPIdentity(t *testing.T) {
	if c := mustParse(t, ksBase); c.Identity != IdentityAddress {
		t.Fatalf("default identity %q", c.Identity)
	}
	c := mustParse(t, ksBase+"crypto isakmp identity dn\ncrypto pki certificate file ks-cert.pem\ncrypto pki key file ks-key.pem\n")
	if c.Identity != IdentityDN {
		t.Fatalf("identity %q", c.Identity)
	}
	if c := mustParse(t, "hostname ks1.example.net\n"+ksBase+"crypto isakmp identity hostname\n"); c.Identity != IdentityHostname {
		t.Fatalf("identity %q", c.Identity)
	}
	mustFail(t, ksBase+"crypto isakmp identity dn\ncrypto isakmp identity fqdn\n",
		itoa(ksBaseLines+1)+`: crypto isakmp identity dn needs crypto pki certificate file PATH`,
		itoa(ksBaseLines+2)+`: crypto isakmp identity "fqdn" is not supported (accepted: address, dn, hostname)`)
	mustFail(t, ksBase+"crypto isakmp identity hostname\n",
		itoa(ksBaseLines+1)+`: crypto isakmp identity hostname needs hostname NAME`)
}

// proves: O1
func TestCryptoKeyImport(t *testing.T) {
	c := mustParse(t, "crypto key import rsa R file ks-rekey.pem\ncrypto key import ec E file ks-rekey-ec.pem\n")
	if _, ok := c.Key("R").Signer.(*rsa.PrivateKey); !ok || c.Key("R").Type != "rsa" || c.Key("R").Path != "ks-rekey.pem" {
		t.Errorf("R = %+v", c.Key("R"))
	}
	if _, ok := c.Key("E").Signer.(*ecdsa.PrivateKey); !ok || c.Key("E").Line != 2 {
		t.Errorf("E = %+v", c.Key("E"))
	}
	mustFail(t, `crypto key import ec X file ks-rekey.pem
crypto key import rsa X file ks-rekey-ec.pem
crypto key import rsa Y file missing.pem
crypto key import rsa Z file ca.pem
crypto key import dsa Z file ca.pem
crypto key import rsa R file ks-rekey.pem
crypto key import rsa R file ks-rekey.pem
`,
		`1: crypto key import ec X: ks-rekey.pem holds an RSA key, not an EC key`,
		`2: crypto key import rsa X: ks-rekey-ec.pem holds an EC key, not an RSA key`,
		`3: crypto key import rsa Y: cannot read missing.pem: no such file or directory`,
		`4: crypto key import rsa Z: ca.pem: no PEM private key found (want a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)`,
		`5: crypto key import key type "dsa" is not supported (accepted: rsa, ec)`,
		`7: crypto key import: label "R" is already used at line 6`,
	)
}

// proves: O1
func TestCryptoPKIFiles(t *testing.T) {
	c := mustParse(t, `crypto pki certificate file ks-cert.pem
crypto pki ca file ca.pem
crypto pki key file ks-key.pem
`)
	k := c.PKI
	if len(k.Chain) != 2 || len(k.CACerts) != 1 || k.Key == nil || len(k.ChainDER()) != 2 {
		t.Fatalf("PKI %+v", k)
	}
	if k.Chain[0].Subject.String() != "CN=ks1.example.net,OU=ks,O=groupvpn" {
		t.Errorf("subject %q", k.Chain[0].Subject)
	}
	if _, err := k.Chain[0].Verify(x509.VerifyOptions{Roots: k.Roots, CurrentTime: k.Chain[0].NotBefore.Add(time.Hour)}); err != nil {
		t.Errorf("chain does not verify against the CA pool: %v", err)
	}
	mustFail(t, `crypto pki certificate file ks-cert.pem
crypto pki key file gm-key.pem
crypto pki ca file ks-key.pem
`,
		`1: crypto pki certificate file ks-cert.pem: the certificate is not for the key in crypto pki key file gm-key.pem (line 2)`,
		`3: crypto pki ca: ks-key.pem: unexpected PEM EC PRIVATE KEY block (want CERTIFICATE blocks only)`,
	)
	mustFail(t, "crypto pki certificate file ks-cert.pem\n",
		`1: crypto pki certificate file ks-cert.pem needs crypto pki key file PATH (its private key)`)
	mustFail(t, "crypto pki key file ks-key.pem\ncrypto pki ca file ks-rekey.pem\n",
		`1: crypto pki key file ks-key.pem needs crypto pki certificate file PATH (its certificate)`,
		`2: crypto pki ca: ks-rekey.pem: unexpected PEM RSA PRIVATE KEY block (want CERTIFICATE blocks only)`)
	// rsa-sig with an EC key.
	mustFail(t, `crypto isakmp policy 5
 authentication rsa-sig
crypto pki certificate file ks-cert.pem
crypto pki ca file ca.pem
crypto pki key file ks-key.pem
`, `1: crypto isakmp policy 5: authentication rsa-sig needs an RSA key, crypto pki key file ks-key.pem is EC (use ecdsa-sig)`)
}

// proves: O1
func TestTransformSets(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want TransformSet
	}{
		{"esp-gcm", TransformSet{ESP: ESPGCM, ESPKeyBits: 128}},
		{"esp-gcm 256", TransformSet{ESP: ESPGCM, ESPKeyBits: 256}},
		{"esp-gmac 192", TransformSet{ESP: ESPGMAC, ESPKeyBits: 192}},
		{"esp-aes 256 esp-sha256-hmac", TransformSet{ESP: ESPAES, ESPKeyBits: 256, ESPAuth: "sha256"}},
		{"esp-sha512-hmac esp-aes", TransformSet{ESP: ESPAES, ESPKeyBits: 128, ESPAuth: "sha512"}},
		{"esp-aes esp-sha-hmac", TransformSet{ESP: ESPAES, ESPKeyBits: 128, ESPAuth: "sha"}},
		{"ah-sha256-hmac", TransformSet{AHAuth: "sha256"}},
		{"ah-sha384-hmac esp-aes 192", TransformSet{ESP: ESPAES, ESPKeyBits: 192, AHAuth: "sha384"}},
		{"ah-sha-hmac esp-gcm 256", TransformSet{ESP: ESPGCM, ESPKeyBits: 256, AHAuth: "sha"}},
	} {
		c := mustParse(t, "crypto ipsec transform-set T "+tc.in+"\n")
		want := tc.want
		want.Name, want.Mode, want.Line = "T", "tunnel", 1
		if got := *c.TransformSet("T"); got != want {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, want)
		}
	}
	c := mustParse(t, "crypto ipsec transform-set T esp-gcm\n mode transport\n")
	if c.TransformSet("T").Mode != "transport" {
		t.Errorf("mode %q", c.TransformSet("T").Mode)
	}
	mustFail(t, `crypto ipsec transform-set a esp-gcm 256 esp-sha256-hmac
crypto ipsec transform-set b esp-aes
crypto ipsec transform-set c esp-sha256-hmac
crypto ipsec transform-set d esp-3des esp-sha-hmac
crypto ipsec transform-set e esp-aes 100 esp-sha-hmac
crypto ipsec transform-set f esp-aes esp-gcm
crypto ipsec transform-set g esp-gmac esp-md5-hmac
crypto ipsec transform-set h esp-gcm
 mode beet
crypto ipsec transform-set i
`,
		`1: crypto ipsec transform-set a: esp-gcm provides its own integrity and takes no esp-sha256-hmac`,
		`2: crypto ipsec transform-set b: esp-aes without integrity; add esp-sha256-hmac (or use esp-gcm)`,
		`3: crypto ipsec transform-set c: esp-sha256-hmac needs an ESP cipher (esp-aes)`,
		`4: crypto ipsec transform-set d: transform "esp-3des" is not supported (accepted: esp-aes, esp-gcm, esp-gmac [128|192|256], esp-sha-hmac, esp-sha256-hmac, esp-sha384-hmac, esp-sha512-hmac, ah-sha-hmac, ah-sha256-hmac, ah-sha384-hmac, ah-sha512-hmac)`,
		`5: esp-aes key length "100" is not supported (accepted: 128, 192, 256)`,
		`6: crypto ipsec transform-set f: two ESP ciphers (esp-aes and esp-gcm); use one`,
		`7: crypto ipsec transform-set g: transform "esp-md5-hmac" is not supported (accepted: esp-aes, esp-gcm, esp-gmac [128|192|256], esp-sha-hmac, esp-sha256-hmac, esp-sha384-hmac, esp-sha512-hmac, ah-sha-hmac, ah-sha256-hmac, ah-sha384-hmac, ah-sha512-hmac)`,
		`9: mode "beet" is not supported (accepted: tunnel, transport)`,
		`10: "crypto ipsec transform-set i": wrong number of arguments; usage: crypto ipsec transform-set NAME TRANSFORM [TRANSFORM [TRANSFORM]]`,
	)
}

// proves: O1
func TestIPsecProfile(t *testing.T) {
	c := mustParse(t, ksBase+`crypto ipsec transform-set ts2 esp-aes 256 esp-sha256-hmac
crypto ipsec profile pr2
 set transform-set ts2 ts
 set security-association lifetime seconds 900
`)
	pr := c.Profile("pr")
	if pr.Lifetime != DefaultSALifetime || len(pr.TransformSets) != 1 || pr.TransformSets[0] != c.TransformSet("ts") {
		t.Errorf("pr = %+v", pr)
	}
	pr2 := c.Profile("pr2")
	if pr2.Lifetime != 900*time.Second || len(pr2.TransformSets) != 2 || pr2.TransformSets[0].Name != "ts2" || pr2.TransformSets[1].Name != "ts" {
		t.Errorf("pr2 = %+v", pr2)
	}
	mustFail(t, `crypto ipsec profile p
 set transform-set nope
 set security-association lifetime seconds 100000
crypto ipsec profile q
`,
		`2: crypto ipsec profile p: transform-set "nope" is not defined`,
		`3: security-association lifetime seconds 100000 is out of range (accepted: 120-86400)`,
		`4: crypto ipsec profile q: set transform-set is required`,
	)
}

// proves: O1
func TestAccessLists(t *testing.T) {
	c := mustParse(t, `ip access-list extended x
 permit ip 10.0.0.0 0.255.255.255 any
 5 deny tcp host 10.0.0.1 eq 22 any
 permit udp any host 239.1.1.1 eq 848
 15 permit 50 192.168.0.0 0.0.255.255 192.168.1.0 0.0.0.255
 permit icmp any any
ip access-list standard s
 permit 10.1.0.0 0.0.255.255
 deny host 10.2.0.1
 permit 10.2.0.2
`)
	x := c.ACL("x")
	var got []string
	for _, e := range x.Entries {
		got = append(got, e.render(false))
	}
	want := []string{
		"5 deny tcp host 10.0.0.1 eq 22 any",
		"10 permit ip 10.0.0.0 0.255.255.255 any",
		"15 permit 50 192.168.0.0 0.0.255.255 192.168.1.0 0.0.0.255",
		"20 permit udp any host 239.1.1.1 eq 848",
		"30 permit icmp any any",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e := x.Entries[0]
	if e.Protocol != 6 || e.Src != netip.MustParsePrefix("10.0.0.1/32") || e.SrcPort != 22 || e.Dst.Bits() != 0 || e.Line != 3 {
		t.Errorf("entry 5 = %+v", e)
	}
	if x.Entries[1].Protocol != AnyProtocol || len(x.Permits()) != 4 {
		t.Errorf("ip entry %+v", x.Entries[1])
	}
	s := c.ACL("s")
	for a, want := range map[string]bool{"10.1.2.3": true, "10.2.0.1": false, "10.2.0.2": true, "10.3.0.1": false} {
		if s.PermitsSource(netip.MustParseAddr(a)) != want {
			t.Errorf("standard ACL %s: want %v", a, want)
		}
	}
	mustFail(t, `ip access-list extended x
 permit ip 10.0.0.0 0.255.0.255 any
 permit ip 10.0.0.1 0.0.0.255 any
 permit ip any eq 80 any
 permit tcp any any eq 0
 permit tcp any any gt 1024
 10 permit ip any any
 10 deny ip any any
 permit ip any any log
 permit gre any any
 permit ip 10.0.0.0 any
 permit ip any
 remark hello
 0 permit ip any any
ip access-list standard x
`,
		`2: access-list wildcard 0.255.0.255 is not a contiguous wildcard mask (e.g. 0.0.0.255)`,
		`3: access-list address 10.0.0.1 0.0.0.255 has bits set inside the wildcard; write 10.0.0.0 0.0.0.255`,
		`4: access-list port (eq) needs protocol tcp or udp`,
		`5: access-list port 0 is out of range (accepted: 1-65535)`,
		`6: access-list port operator "gt" is not supported (accepted: eq)`,
		`8: access-list x sequence number 10 is already used at line 7`,
		`9: access-list entry: unexpected "log" after the destination; usage: [SEQ] {permit | deny} PROTOCOL SOURCE [eq PORT] DESTINATION [eq PORT]`,
		`10: access-list protocol "gre" is not supported (accepted: ip, icmp, tcp, udp, 0-255)`,
		`11: access-list address 10.0.0.0 needs a wildcard mask (e.g. 10.0.0.0 0.0.0.255), or write host 10.0.0.0`,
		`12: "permit ip any": incomplete access-list entry; usage: [SEQ] {permit | deny} PROTOCOL SOURCE [eq PORT] DESTINATION [eq PORT]`,
		`13: unknown command "remark" in ip access-list extended mode`,
		`14: access-list sequence number 0 is out of range (accepted: 1-2147483647)`,
		`15: access list "x" is already defined at line 1 as a different kind (standard/extended)`,
	)
}

// proves: O1
func TestGDOIGroupServerLocal(t *testing.T) {
	src := ksBase + `  sa ipsec 2
   profile pr
   match address ipv4 tr
   replay counter window-size 1024
  sa ipsec 3
   profile pr
   match address ipv4 tr
   no replay
  rekey algorithm aes 192
  rekey lifetime seconds 3600
  rekey retransmit 20 number 5
  rekey authentication mypubkey ec E
  rekey transport unicast
  address ipv4 10.0.0.1
  authorization address ipv4 members
  authorization identity CN=gm*.example.net, OU=gm, O=groupvpn
  authorization identity CN=*,OU=gm,O=groupvpn
  sa receive-only
crypto key import ec E file ks-rekey-ec.pem
ip access-list standard members
 permit 10.0.0.0 0.255.255.255
`
	c := mustParse(t, src)
	g := c.Group("G")
	if g.Identity != 1 || g.Server == nil || len(c.KSGroups()) != 1 || len(c.GMGroups()) != 0 {
		t.Fatalf("group %+v", g)
	}
	s := g.Server
	if s.RekeyKeyBits != 192 || s.RekeyLifetime != time.Hour || s.RekeyRetransmit != 20*time.Second || s.RekeyRetransmits != 5 {
		t.Errorf("rekey settings %+v", s)
	}
	if s.Mode() != RekeyUnicast || s.RekeyKey != c.Key("E") || s.Address != netip.MustParseAddr("10.0.0.1") || !s.ReceiveOnly {
		t.Errorf("server %+v", s)
	}
	if len(s.AuthorizationIdentities) != 2 || s.AuthorizationIdentities[0] != "CN=gm*.example.net, OU=gm, O=groupvpn" {
		t.Errorf("identities %q", s.AuthorizationIdentities)
	}
	if !s.AuthorizeIdentity("cn=anything,OU=gm,O=groupvpn") || s.AuthorizeIdentity("CN=x,OU=ks,O=groupvpn") {
		t.Error("AuthorizeIdentity")
	}
	if !s.AuthorizeAddress(netip.MustParseAddr("10.9.9.9")) || s.AuthorizeAddress(netip.MustParseAddr("192.0.2.1")) {
		t.Error("AuthorizeAddress")
	}
	if len(s.SAs) != 3 {
		t.Fatalf("SAs %d", len(s.SAs))
	}
	for i, want := range []struct {
		mode ReplayMode
		win  int
	}{{ReplayCounter, 64}, {ReplayCounter, 1024}, {ReplayNone, 0}} {
		sa := s.SAs[i]
		if sa.Seq != i+1 || sa.Replay != want.mode || sa.ReplayWindow != want.win || sa.Profile != c.Profile("pr") || sa.MatchACL != c.ACL("tr") {
			t.Errorf("sa %d = %+v", i+1, sa)
		}
	}

	// Defaults, TBAR and multicast rekey from the shipped example.
	ks, err := Load("testdata/ks.conf")
	if err != nil {
		t.Fatal(err)
	}
	s = ks.Group("GETVPN-A").Server
	src4, dst, ok := s.MulticastRekey()
	if s.Mode() != RekeyMulticast || !ok || src4 != netip.MustParsePrefix("10.0.0.1/32") || dst != netip.MustParseAddr("239.192.1.1") {
		t.Errorf("multicast rekey %v %v %v %v", s.Mode(), src4, dst, ok)
	}
	if sa := s.SAs[0]; sa.Replay != ReplayTime || sa.ReplayWindow != 5 {
		t.Errorf("TBAR %+v", sa)
	}
	gmCert, err := Load("testdata/gm.conf")
	if err != nil {
		t.Fatal(err)
	}
	if dn := gmCert.PKI.Chain[0].Subject.String(); !s.AuthorizeIdentity(dn) {
		t.Errorf("the example KS refuses the example GM's subject %q", dn)
	}
	if c := mustParse(t, ksBase); c.Group("G").Server.Mode() != RekeyNone || c.Group("G").Server.RekeyLifetime != DefaultRekeyLifetime {
		t.Errorf("defaults %+v", c.Group("G").Server)
	}
}

// proves: O1
func TestGDOIGroupServerLocalRanges(t *testing.T) {
	n := ksBaseLines
	mustFail(t, ksBase+`  rekey algorithm aes 64
  rekey lifetime seconds 10
  rekey retransmit 5 number 11
  rekey retransmit 10 times 2
  rekey authentication mypubkey dsa K
  address ipv4 2001:db8::1
   replay counter window-size 100
   replay time window-size 500
  sa ipsec 70000
 identity number 0
 identity number 4294967296
`,
		itoa(n+1)+`: rekey algorithm aes key length "64" is not supported (accepted: 128, 192, 256)`,
		itoa(n+2)+`: rekey lifetime seconds 10 is out of range (accepted: 300-86400)`,
		itoa(n+3)+`: rekey retransmit interval 5 is out of range (accepted: 10-60)`,
		itoa(n+3)+`: rekey retransmit number 11 is out of range (accepted: 1-10)`,
		itoa(n+4)+`: "rekey retransmit 10 times 2": expected "number" where "times" is; usage: rekey retransmit SECONDS number COUNT`,
		itoa(n+5)+`: rekey authentication key type "dsa" is not supported (accepted: rsa, ec)`,
		itoa(n+6)+`: address ipv4 "2001:db8::1" is not an IPv4 address`,
		itoa(n+7)+`: unknown command "replay" in crypto gdoi group server local mode`,
		itoa(n+8)+`: unknown command "replay" in crypto gdoi group server local mode`,
		itoa(n+9)+`: sa ipsec sequence number 70000 is out of range (accepted: 1-65535)`,
		itoa(n+10)+`: identity number 0 is out of range (accepted: 1-4294967295)`,
		itoa(n+11)+`: identity number 4294967296 is out of range (accepted: 1-4294967295)`,
	)
	mustFail(t, ksBase+"   replay counter window-size 100\n   replay time window-size 0\n",
		itoa(n+1)+`: replay counter window-size "100" is not supported (accepted: 64, 128, 256, 512, 1024)`,
		itoa(n+2)+`: replay time window-size 0 is out of range (accepted: 1-100)`,
	)
}

// proves: O1
func TestGDOIGroupMember(t *testing.T) {
	c := mustParse(t, gmBase+`crypto gdoi group G
 server address ipv4 10.0.0.2
 client registration interface eth1
crypto gdoi group unused
 identity number 2
 server address ipv4 10.0.0.9
crypto map m 5 gdoi
 set group G
interface eth1
 crypto map m
interface lo
`)
	g := c.Group("G")
	if len(g.Servers) != 2 || g.Servers[0].Addr.String() != "10.0.0.1" || g.Servers[1].Addr.String() != "10.0.0.2" || g.RegistrationInterface != "eth1" {
		t.Errorf("group %+v", g)
	}
	gm := c.GMGroups()
	if len(gm) != 1 || gm[0] != g || len(c.KSGroups()) != 0 {
		t.Errorf("GMGroups %v", gm)
	}
	if ifs := c.InterfacesFor(g); strings.Join(ifs, ",") != "eth0,eth1" {
		t.Errorf("interfaces %v", ifs)
	}
	if len(c.CryptoMaps) != 2 || c.CryptoMaps[0].Seq != 5 || c.CryptoMaps[0].Group != g {
		t.Errorf("crypto maps %+v", c.CryptoMaps)
	}
	if ifc := c.Interfaces[1]; ifc.Name != "eth1" || len(ifc.Entries) != 2 {
		t.Errorf("eth1 %+v", ifc)
	}
	mustFail(t, gmBase+"crypto gdoi group G\n server address ipv4 10.0.0.1\n server address ipv4 host\ncrypto map m 20 ipsec-isakmp\ncrypto map n 10 gdoi\n",
		`12: server address ipv4 10.0.0.1 is already given at line 6`,
		`13: server address ipv4 "host" is not an IPv4 address`,
		`14: crypto map m 20 ipsec-isakmp: only gdoi crypto maps are supported`,
		`15: crypto map n 10: set group is required`,
	)
	c = mustParse(t, "interface GigabitEthernet 0/0\n")
	if c.Interfaces[0].Name != "GigabitEthernet0/0" {
		t.Errorf("interface name %q", c.Interfaces[0].Name)
	}
}

// proves: O1
func TestModesIndentationCommentsExitEnd(t *testing.T) {
	flat := strings.ReplaceAll(strings.ReplaceAll(ksBase, "\n ", "\n"), "\n ", "\n")
	flat = strings.ReplaceAll(flat, "\n ", "\n")
	a, b := mustParse(t, ksBase), mustParse(t, flat)
	if a.Render() != b.Render() {
		t.Errorf("indentation changed the meaning:\n%s\n---\n%s", a.Render(), b.Render())
	}
	c := mustParse(t, "! comment\r\n\r\nhostname x\r\ninterface eth0\r\n exit\r\nhostname y\r\nEND\r\n")
	if c.Hostname != "y" || c.HostnameLine != 6 {
		t.Errorf("hostname %q line %d", c.Hostname, c.HostnameLine)
	}
	// exit leaves one level: "profile" after exit from sa ipsec is unknown
	// in server local mode; end returns to global.
	mustFail(t, ksBase+"   exit\n   profile pr\nend\n  sa receive-only\n",
		itoa(ksBaseLines+2)+`: unknown command "profile" in crypto gdoi group server local mode`,
		itoa(ksBaseLines+4)+`: unknown command "sa" in global configuration mode`)
}
