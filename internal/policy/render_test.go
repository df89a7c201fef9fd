package policy

import (
	"crypto"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// kitchenSink uses every command: KS for one group, GM of another.
const kitchenSink = `hostname both
groupvpn version 1.0.1
crypto isakmp policy 10
 encr aes 192
 hash sha384
 authentication ecdsa-sig
 group 20
 lifetime 600
crypto isakmp policy 5
 authentication pre-share
crypto isakmp key k1 address 10.0.0.0 255.0.0.0
crypto isakmp key k2 address 10.0.0.1
crypto isakmp key k3 address ipv6 ::/0
crypto isakmp identity dn
crypto key import rsa R file ks-rekey.pem
crypto key import ec E file ks-rekey-ec.pem
crypto pki certificate file ks-cert.pem
crypto pki ca file ca.pem
crypto pki key file ks-key.pem
ip access-list extended tr
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
 7 deny tcp host 10.0.0.1 eq 179 any
 permit 47 any any
ip access-list extended rk
 permit udp host 10.0.0.1 eq 848 host 239.1.1.1 eq 848
ip access-list standard who
 permit 10.0.0.0 0.255.255.255
 deny 10.1.1.1
crypto ipsec transform-set a esp-gcm 256
crypto ipsec transform-set b ah-sha512-hmac esp-aes 192 esp-sha384-hmac
 mode transport
crypto ipsec transform-set c esp-gmac
crypto ipsec profile p
 set transform-set a b c
 set security-association lifetime seconds 1200
crypto gdoi group KS
 identity number 4000000000
 server local
  rekey algorithm aes 192
  rekey lifetime seconds 7200
  rekey retransmit 15 number 3
  rekey authentication mypubkey rsa R
  rekey address ipv4 rk
  rekey transport unicast
  address ipv4 10.0.0.1
  authorization address ipv4 who
  authorization identity CN=gm?.example.net, O=groupvpn
  authorization identity *
  sa receive-only
  sa ipsec 20
   profile p
   match address ipv4 tr
   no replay
  sa ipsec 10
   profile p
   match address ipv4 tr
   replay counter window-size 256
  sa ipsec 30
   profile p
   match address ipv4 tr
   replay time window-size 100
crypto gdoi group GM
 identity number 2
 server address ipv4 192.0.2.1
 server address ipv4 192.0.2.2
 client registration interface eth9
crypto map z 20 gdoi
 set group GM
crypto map a 10 gdoi
 set group GM
interface eth0
 crypto map z
interface eth1
 crypto map a
interface lo
end
`

// comparable strips what a round trip may change (line numbers) and
// checks the crypto objects, which reflect cannot compare, by value.
func comparable(t *testing.T, a, b *Config) (any, any) {
	t.Helper()
	eqKey := func(x, y crypto.Signer) bool {
		if x == nil || y == nil {
			return x == y
		}
		pub, ok := x.Public().(interface{ Equal(crypto.PublicKey) bool })
		return ok && pub.Equal(y.Public())
	}
	if len(a.Keys) != len(b.Keys) {
		t.Fatalf("keys: %d vs %d", len(a.Keys), len(b.Keys))
	}
	for i := range a.Keys {
		if !eqKey(a.Keys[i].Signer, b.Keys[i].Signer) {
			t.Errorf("key %s differs", a.Keys[i].Label)
		}
		a.Keys[i].Signer, b.Keys[i].Signer = nil, nil
	}
	if !eqKey(a.PKI.Key, b.PKI.Key) || len(a.PKI.Chain) != len(b.PKI.Chain) || len(a.PKI.CACerts) != len(b.PKI.CACerts) ||
		(a.PKI.Roots == nil) != (b.PKI.Roots == nil) || (a.PKI.Roots != nil && !a.PKI.Roots.Equal(b.PKI.Roots)) {
		t.Errorf("PKI differs")
	}
	for i := range a.PKI.Chain {
		if !a.PKI.Chain[i].Equal(b.PKI.Chain[i]) {
			t.Errorf("certificate %d differs", i)
		}
	}
	for _, c := range []*Config{a, b} {
		c.PKI.Key, c.PKI.Chain, c.PKI.CACerts, c.PKI.Roots = nil, nil, nil, nil
		c.Notes = nil // lines groupvpn does not use are not rendered
	}
	zeroLines(reflect.ValueOf(a), map[uintptr]bool{})
	zeroLines(reflect.ValueOf(b), map[uintptr]bool{})
	return a, b
}

// zeroLines sets every int field named Line or ending in Line to 0, and
// every []int field ending in Lines (Redundancy.PeerLines) to nil.
func zeroLines(v reflect.Value, seen map[uintptr]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		zeroLines(v.Elem(), seen)
	case reflect.Slice:
		for i := range v.Len() {
			zeroLines(v.Index(i), seen)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			if strings.HasSuffix(sf.Name, "Line") && f.Kind() == reflect.Int {
				f.SetInt(0)
				continue
			}
			if strings.HasSuffix(sf.Name, "Lines") && f.Type() == reflect.TypeFor[[]int]() {
				f.SetZero()
				continue
			}
			zeroLines(f, seen)
		}
	}
}

// proves: O1
func TestRenderRoundTrip(t *testing.T) {
	ks, _ := os.ReadFile("testdata/ks.conf")
	gm, _ := os.ReadFile("testdata/gm.conf")
	for what, src := range map[string]string{"ks.conf": string(ks), "gm.conf": string(gm), "kitchen sink": kitchenSink, "ksBase": ksBase, "gmBase": gmBase, "cooperative KS": coopKS("   local priority 7\n   peer address ipv4 10.0.0.9\n   timers election-wait 40\n")} {
		t.Run(what, func(t *testing.T) {
			c := mustParse(t, src)
			out := c.Render()
			if c.String() != out {
				t.Fatal("String differs from Render")
			}
			c2 := mustParse(t, out)
			if out2 := c2.Render(); out2 != out {
				t.Fatalf("Render is not stable:\n%s\n---\n%s", out, out2)
			}
			x, y := comparable(t, c, c2)
			if !reflect.DeepEqual(x, y) {
				t.Fatalf("parse(Render(c)) != c:\n%s", out)
			}
		})
	}
	// The canonical form of the kitchen sink, spot-checked.
	out := mustParse(t, kitchenSink).Render()
	for _, want := range []string{
		"crypto isakmp policy 5\n encryption aes 128\n hash sha\n authentication pre-share\n group 14\n lifetime 86400\n!\ncrypto isakmp policy 10\n",
		"crypto isakmp key k3 address ipv6 ::/0\n",
		"ip access-list extended tr\n 7 deny tcp host 10.0.0.1 eq 179 any\n 10 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255\n 20 permit 47 any any\n!\n",
		"ip access-list standard who\n 10 permit 10.0.0.0 0.255.255.255\n 20 deny host 10.1.1.1\n",
		"crypto ipsec transform-set b ah-sha512-hmac esp-aes 192 esp-sha384-hmac\n mode transport\n",
		"crypto ipsec transform-set c esp-gmac 128\n mode tunnel\n",
		"  sa ipsec 10\n   profile p\n   match address ipv4 tr\n   replay counter window-size 256\n  sa ipsec 20\n   profile p\n   match address ipv4 tr\n   no replay\n",
		"crypto map a 10 gdoi\n set group GM\n!\ncrypto map z 20 gdoi\n",
		"interface lo\n!\nend\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	if c := mustParse(t, kitchenSink); len(c.KSGroups()) != 1 || len(c.GMGroups()) != 1 {
		t.Errorf("roles: %s", c.Summary())
	}
}

var fence = regexp.MustCompile("(?s)```ios (\\S+)\n(.*?)```")

// proves: O1
func TestDocsExamplesAreTestdataAndParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, m := range fence.FindAllStringSubmatch(string(doc), -1) {
		file, body := m[1], m[2]
		found[file] = true
		want, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatalf("docs/config.md has an example %s with no testdata/%s: %v", file, file, err)
		}
		if body != string(want) {
			t.Errorf("docs/config.md example %s differs from testdata/%s", file, file)
		}
		c, err := Parse("testdata/"+file, []byte(body))
		if err != nil {
			t.Errorf("docs/config.md example %s: %v", file, err)
			continue
		}
		switch file {
		case "ks.conf":
			if len(c.KSGroups()) != 1 || len(c.GMGroups()) != 0 {
				t.Errorf("ks.conf roles: %s", c.Summary())
			}
		case "gm.conf":
			if len(c.KSGroups()) != 0 || len(c.GMGroups()) != 1 {
				t.Errorf("gm.conf roles: %s", c.Summary())
			}
		case "ks1-coop.conf", "ks2-coop.conf":
			if len(c.KSGroups()) != 1 || c.KSGroups()[0].Server.Redundancy == nil || len(c.Notes) != 0 {
				t.Errorf("%s: not a cooperative KS without notes: %s %v", file, c.Summary(), c.Notes)
			}
		}
	}
	if !found["ks.conf"] || !found["gm.conf"] || !found["ks1-coop.conf"] || !found["ks2-coop.conf"] {
		t.Fatalf("docs/config.md lacks the ks.conf or gm.conf example: %v", found)
	}
}

// proves: O1
func TestDocsDescribeEveryCommand(t *testing.T) {
	raw, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(string(raw), `\|`, "|")
	m := buildModes()
	for _, md := range []*mode{m.global, m.isakmp, m.transform, m.profile, m.aclExt, m.aclStd, m.group, m.server, m.redundancy, m.sa, m.cmap, m.iface, m.ikev2Proposal, m.ikev2Policy, m.ikev2Keyring, m.ikev2Peer, m.ikev2Profile} {
		for _, c := range md.cmds {
			if !strings.Contains(doc, "`"+c.syntax+"`") {
				t.Errorf("docs/config.md does not document %s mode command `%s`", md.name, c.syntax)
			}
		}
	}
}
