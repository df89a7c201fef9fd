package policy

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

// gikev2KS is a minimal G-IKEv2 key server (pre-shared keys); tests
// append to it or replace lines.
const gikev2KS = `crypto ikev2 keyring kr
 peer all
  address 0.0.0.0 0.0.0.0
  pre-shared-key s3cret
crypto ikev2 profile members
 authentication local pre-share
 authentication remote pre-share
 keyring local kr
ip access-list extended tr
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
crypto ipsec transform-set ts esp-gcm
crypto ipsec profile pr
 set transform-set ts
crypto gdoi group G
 identity number 1
 server local
  gikev2 members
  sa ipsec 1
   profile pr
   match address ipv4 tr
`

// gikev2GM is a minimal G-IKEv2 group member.
const gikev2GM = `crypto ikev2 keyring kr
 peer ks
  address 10.0.0.1
  pre-shared-key s3cret
crypto ikev2 profile ks
 authentication local pre-share
 authentication remote pre-share
 keyring local kr
crypto gkm group G
 identity number 1
 server address ipv4 10.0.0.1
 client protocol gikev2 ks
crypto map m 10 gdoi
 set group G
interface eth0
 crypto map m
`

// proves: G4 (issue 17: the IOS-XE G-IKEv2 configuration parses into the
// model ikev2d reads: proposals, policies, keyrings, profiles, the group's
// protocol and profile, on a key server and a group member)
func TestGIKEv2Examples(t *testing.T) {
	ks := loadTestdata(t, "gikev2-ks.conf")
	g := ks.Group("GETVPN-G")
	if g.Protocol() != ProtocolGIKEv2 || g.IKEv2Profile == nil || g.IKEv2Profile.Name != "gikev2-members" || g.Server == nil {
		t.Fatalf("KS group: protocol %q profile %+v", g.Protocol(), g.IKEv2Profile)
	}
	if len(GroupsFor(ks.KSGroups(), ProtocolGIKEv2)) != 1 || len(GroupsFor(ks.KSGroups(), ProtocolGDOI)) != 0 {
		t.Error("GroupsFor does not split the KS groups by protocol")
	}
	pr := g.IKEv2Profile
	if pr.AuthLocal != AuthECDSASig || !reflect.DeepEqual(pr.AuthRemote, []AuthMethod{AuthPreShare, AuthECDSASig}) || pr.Keyring == nil || pr.Trustpoint != "groupvpn-ca" || pr.LocalIdentity.Type != IKEv2IDDN || pr.SALifetime().Seconds() != 86400 {
		t.Errorf("profile: %+v", pr)
	}
	if len(pr.MatchRemote) != 2 || !pr.MatchRemote[0].Matches(netip.MustParseAddr("10.1.2.3"), "") || pr.MatchRemote[0].Matches(netip.MustParseAddr("10.2.0.1"), "") ||
		!pr.MatchRemote[1].Matches(netip.Addr{}, "GM7.Example.NET") || pr.MatchRemote[1].Matches(netip.Addr{}, "badexample.net") {
		t.Errorf("match identity remote: %+v", pr.MatchRemote)
	}
	// Keys: by identity first, else the longest address prefix.
	if k := pr.PSKFor(netip.MustParseAddr("10.1.0.9"), "gm1.example.net"); k == nil || k.Name != "gm1" {
		t.Errorf("PSKFor(gm1's FQDN) = %+v", k)
	}
	if k := pr.PSKFor(netip.MustParseAddr("10.1.7.1"), ""); k == nil || k.Name != "gm1" {
		t.Errorf("PSKFor(10.1.7.1) = %+v", k)
	}
	if k := pr.PSKFor(netip.MustParseAddr("10.1.0.9"), ""); k == nil || k.Name != "branches" {
		t.Errorf("PSKFor(10.1.0.9) = %+v", k)
	}
	if k := pr.PSKFor(netip.MustParseAddr("192.0.2.1"), ""); k != nil {
		t.Errorf("PSKFor(192.0.2.1) = %+v, want none", k)
	}
	props := ks.IKEv2ProposalsFor(netip.MustParseAddr("10.0.0.1"))
	if len(props) != 2 || props[0].Name != "gikev2-gcm" || ks.IKEv2ProposalsFor(netip.MustParseAddr("10.0.0.2")) != nil {
		t.Errorf("IKEv2ProposalsFor: %v", props)
	}
	su := props[0].Suites()
	if len(su) != 4 || su[0] != (IKEv2Suite{Encryption: "aes-gcm-256", KeyBits: 256, AEAD: true, PRF: "sha256", Group: 19}) || su[3].KeyBits != 128 || su[3].Group != 14 {
		t.Errorf("suites of gikev2-gcm: %+v", su)
	}
	if su := props[1].Suites(); len(su) != 1 || su[0] != (IKEv2Suite{Encryption: "aes-cbc-256", KeyBits: 256, Integrity: "sha256", PRF: "sha256", Group: 14}) {
		t.Errorf("suites of gikev2-cbc: %+v", su)
	}

	gm := loadTestdata(t, "gikev2-gm.conf")
	gg := gm.Group("GETVPN-G")
	if !gg.GKM || gg.Protocol() != ProtocolGIKEv2 || gg.IKEv2Profile == nil || gg.IKEv2Profile.Name != "gikev2-ks" || len(gm.GMGroups()) != 1 {
		t.Fatalf("GM group: %+v", gg)
	}
	if li := gg.IKEv2Profile.LocalIdentity; li.Type != IKEv2IDFQDN || li.FQDN != "gm1.example.net" {
		t.Errorf("identity local: %+v", li)
	}
	if s := gm.Summary(); !strings.Contains(s, "G-IKEv2 (ikev2d), crypto ikev2 profile gikev2-ks: local pre-share, remote ecdsa-sig") {
		t.Errorf("summary: %s", s)
	}
	// A GDOI group stays GDOI.
	if c := mustParse(t, gmBase); c.Groups[0].Protocol() != ProtocolGDOI || c.Groups[0].GKM {
		t.Errorf("gmBase group: %+v", c.Groups[0])
	}
}

func loadTestdata(t *testing.T, file string) *Config {
	t.Helper()
	src, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("testdata/"+file, src)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// proves: G4 (issue 17: show running-config prints the G-IKEv2
// configuration canonically and it parses back to the same model)
func TestGIKEv2RenderRoundTrip(t *testing.T) {
	ks, _ := os.ReadFile("testdata/gikev2-ks.conf")
	gm, _ := os.ReadFile("testdata/gikev2-gm.conf")
	for what, src := range map[string]string{"gikev2-ks.conf": string(ks), "gikev2-gm.conf": string(gm), "gikev2KS": gikev2KS, "gikev2GM": gikev2GM,
		"directional keys":    strings.Replace(gikev2KS, "  pre-shared-key s3cret\n", "  pre-shared-key local a\n  pre-shared-key 0 remote-is-not-a-word\n  pre-shared-key remote a\n", 1),
		"group-level on a KS": strings.Replace(gikev2KS, "  gikev2 members\n", "", 1) + " client protocol gikev2 members\n"} {
		t.Run(what, func(t *testing.T) {
			c := mustParse(t, src)
			out := c.Render()
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
	out := mustParse(t, string(ks)).Render()
	for _, want := range []string{
		"crypto ikev2 proposal gikev2-gcm\n encryption aes-gcm-256 aes-gcm-128\n prf sha256\n group 19 14\n!\n",
		"crypto ikev2 policy gikev2-pol\n match address local 10.0.0.1\n proposal gikev2-gcm\n proposal gikev2-cbc\n!\n",
		"crypto ikev2 keyring gikev2-keys\n peer branches\n  address 10.1.0.0 255.255.0.0\n  pre-shared-key branch-secret\n peer gm1\n  address 10.1.7.1\n  identity fqdn gm1.example.net\n  pre-shared-key gm1-secret\n!\n",
		" match identity remote fqdn domain example.net\n identity local dn\n authentication local ecdsa-sig\n authentication remote pre-share\n authentication remote ecdsa-sig\n keyring local gikev2-keys\n pki trustpoint groupvpn-ca\n lifetime 86400\n",
		"  sa receive-only\n",
	} {
		if want == "  sa receive-only\n" {
			if !strings.Contains(out, "  gikev2 gikev2-members\n  sa ipsec 1\n") {
				t.Errorf("render lacks gikev2 under server local:\n%s", out)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	if out := mustParse(t, string(gm)).Render(); !strings.Contains(out, "crypto gkm group GETVPN-G\n identity number 4321\n server address ipv4 10.0.0.1\n client protocol gikev2 gikev2-ks\n client registration interface eth0\n") {
		t.Errorf("GM render:\n%s", out)
	}
}

// proves: G4 (issue 17: a G-IKEv2 configuration that cannot work is refused
// with file:line and the reason: unknown profile, keyring or proposal, a
// profile without authentication, a keyring peer without key or address,
// impossible proposals, unsupported IOS-XE options)
func TestGIKEv2Errors(t *testing.T) {
	ln := func(src, s string) string { return itoa(line(t, src, s)) }
	t.Run("unknown profile", func(t *testing.T) {
		src := strings.Replace(gikev2GM, "client protocol gikev2 ks", "client protocol gikev2 nope", 1)
		mustFail(t, src, ln(src, "client protocol")+`: crypto gkm group G: crypto ikev2 profile "nope" is not defined`)
		src = strings.Replace(gikev2KS, "gikev2 members", "gikev2 nope", 1)
		mustFail(t, src, ln(src, "gikev2 nope")+`: crypto gdoi group G: crypto ikev2 profile "nope" is not defined`)
	})
	t.Run("profile without authentication", func(t *testing.T) {
		src := strings.Replace(strings.Replace(gikev2GM, " authentication local pre-share\n", "", 1), " authentication remote pre-share\n", "", 1)
		mustFail(t, src,
			ln(src, "crypto ikev2 profile")+": crypto ikev2 profile ks: authentication local {pre-share | rsa-sig | ecdsa-sig} is required",
			ln(src, "crypto ikev2 profile")+": crypto ikev2 profile ks: authentication remote {pre-share | rsa-sig | ecdsa-sig} is required")
	})
	t.Run("keyring peer without key", func(t *testing.T) {
		src := strings.Replace(gikev2GM, "  pre-shared-key s3cret\n", "", 1)
		mustFail(t, src, ln(src, "peer ks")+": crypto ikev2 keyring kr peer ks: no key (pre-shared-key KEY)")
		src = strings.Replace(gikev2GM, "  pre-shared-key s3cret\n", "  pre-shared-key local only\n", 1)
		mustFail(t, src, ln(src, "pre-shared-key local")+": crypto ikev2 keyring kr peer ks: pre-shared-key local without a remote key (add pre-shared-key remote KEY, or pre-shared-key KEY for both)")
	})
	t.Run("keyring peer without address", func(t *testing.T) {
		src := strings.Replace(gikev2GM, "  address 10.0.0.1\n", "  identity fqdn ks.example\n", 1)
		mustFail(t, src, ln(src, "peer ks")+": crypto ikev2 keyring kr peer ks: address A.B.C.D [MASK] is required: ikev2d finds a pre-shared key by the peer's address (identity alone is not supported yet)")
	})
	t.Run("keyring peer with two keys", func(t *testing.T) {
		src := strings.Replace(gikev2GM, "  pre-shared-key s3cret\n", "  pre-shared-key local a\n  pre-shared-key remote b\n", 1)
		mustFail(t, src, ln(src, "pre-shared-key remote")+": crypto ikev2 keyring kr peer ks: pre-shared-key local and remote differ: not supported (internal/ikev2 authenticates both ways with one key per peer); use pre-shared-key KEY")
	})
	t.Run("pre-share without keyring", func(t *testing.T) {
		src := strings.Replace(gikev2GM, " keyring local kr\n", "", 1)
		mustFail(t, src, ln(src, "authentication local")+": crypto ikev2 profile ks: authentication pre-share needs keyring local NAME (a crypto ikev2 keyring with the peers' keys)")
		src = strings.Replace(gikev2GM, "keyring local kr", "keyring local nope", 1)
		mustFail(t, src, ln(src, "keyring local")+`: crypto ikev2 profile ks: crypto ikev2 keyring "nope" is not defined`)
	})
	t.Run("certificates without crypto pki", func(t *testing.T) {
		src := strings.Replace(gikev2GM, "authentication remote pre-share", "authentication remote ecdsa-sig", 1)
		mustFail(t, src, ln(src, "crypto ikev2 profile")+": crypto ikev2 profile ks: certificate authentication needs crypto pki ca file (groupvpn's crypto pki lines stand for the trustpoint)")
		src = strings.Replace(gikev2GM, "authentication local pre-share", "authentication local rsa-sig", 1) + "crypto pki certificate file gm-cert.pem\ncrypto pki key file gm-key.pem\n"
		mustFail(t, src, ln(src, "authentication local")+": crypto ikev2 profile ks: authentication local rsa-sig needs an RSA key, crypto pki key file gm-key.pem is EC (use ecdsa-sig)")
	})
	t.Run("proposals", func(t *testing.T) {
		for _, tc := range []struct{ body, want string }{
			{" encryption aes-gcm-256\n group 19\n", "an AES-GCM proposal needs prf (e.g. prf sha256)"},
			{" encryption aes-gcm-256\n integrity sha256\n prf sha256\n group 19\n", "AES-GCM provides its own integrity and takes no integrity line"},
			{" encryption aes-cbc-256 aes-gcm-256\n integrity sha256\n group 19\n", "AES-GCM and AES-CBC cannot be in one proposal (as on IOS): make two proposals"},
			{" encryption aes-cbc-256\n group 19\n", "AES-CBC needs integrity (e.g. integrity sha256)"},
			{" encryption aes-cbc-256\n integrity sha256\n", "group is required (e.g. group 19)"},
			{" integrity sha256\n group 14\n", "encryption is required (e.g. encryption aes-gcm-256)"},
		} {
			src := gikev2GM + "crypto ikev2 proposal P\n" + tc.body
			mustFail(t, src, ln(src, "crypto ikev2 proposal P")+": crypto ikev2 proposal P: "+tc.want)
		}
		src := gikev2GM + "crypto ikev2 policy pol\n proposal nope\n"
		mustFail(t, src, ln(src, "proposal nope")+`: crypto ikev2 policy pol: proposal "nope" is not defined`)
		src = gikev2GM + "crypto ikev2 policy pol\n match address local 10.0.0.2\n"
		mustFail(t, src, ln(src, "crypto ikev2 policy pol")+": crypto ikev2 policy pol: proposal NAME is required")
	})
	t.Run("unsupported options", func(t *testing.T) {
		for _, tc := range []struct{ block, line, want string }{
			{"crypto ikev2 proposal P\n encryption aes-gcm-128\n prf sha256\n group 19", " encryption 3des", "encryption 3des is not supported (a 64-bit block cipher; accepted: aes-cbc-128, aes-cbc-192, aes-cbc-256, aes-gcm-128, aes-gcm-256)"},
			{"crypto ikev2 proposal P\n encryption aes-gcm-128\n prf sha256\n group 19", " integrity sha1", "integrity sha1 is not supported (groupvpn's IKEv2 offers SHA-2 only; accepted: sha256, sha384, sha512)"},
			{"crypto ikev2 proposal P\n encryption aes-gcm-128\n prf sha256\n group 19", " group 19 5", `group "5" is not supported (a MODP group under 2048 bits) (accepted: 14, 15, 16, 19, 20, 21)`},
			{"crypto ikev2 profile ks", " authentication remote eap", "authentication remote eap is not supported (G-IKEv2 members authenticate by pre-shared key or certificate; Cisco's G-IKEv2 does not support EAP either)"},
			{"crypto ikev2 profile ks", " authentication local pre-share key k", `"authentication local pre-share key k": a key on the authentication line is not supported; put it in a crypto ikev2 keyring peer (pre-shared-key KEY) named by keyring local NAME`},
			{"crypto ikev2 profile ks", " keyring aaa list", `"keyring aaa list": not supported: groupvpn's keyrings are local (keyring local NAME naming a crypto ikev2 keyring); AAA keyrings need a RADIUS server groupvpn does not talk to`},
			{"crypto ikev2 profile ks", " match identity remote email a@b.c", "match identity remote email is not supported (accepted: address A.B.C.D [MASK], fqdn [domain] NAME)"},
			{"crypto ikev2 profile ks", " match fvrf red", `"match fvrf red": not supported: groupvpn has no VRFs (match fvrf any is accepted)`},
			{"crypto ikev2 keyring kr\n peer ks", "  pre-shared-key 6 ABCDEF", "pre-shared-key 6: an IOS-encrypted key is not supported (it needs the router's master key); write the key in the clear (pre-shared-key [local | remote] KEY)"},
			{"crypto gkm group G", " client protocol gikev2", "client protocol gikev2 needs the crypto ikev2 profile its IKE SAs use: client protocol gikev2 PROFILE"},
		} {
			src := gikev2GM + tc.block + "\n" + tc.line + "\n"
			mustFail(t, src, itoa(strings.Count(src, "\n"))+": "+tc.want)
		}
	})
	t.Run("COOP needs IKEv1", func(t *testing.T) {
		src := strings.Replace(gikev2KS, "  gikev2 members\n", "  gikev2 members\n  address ipv4 10.0.0.1\n  redundancy\n   peer address ipv4 10.0.0.2\n", 1)
		mustFail(t, src, ln(src, "  redundancy")+": crypto gdoi group G: cooperative key servers talk over IKEv1 (as on IOS: G-IKEv2 has no COOP), but no crypto isakmp policy is configured")
	})
}

// proves: G4 (issue 17: IOS-XE lines groupvpn does not use are accepted and
// noted, as for the rest of a pasted configuration)
func TestGIKEv2Notes(t *testing.T) {
	src := gikev2GM + "crypto ikev2 dpd 10 2 on-demand\ncrypto ikev2 policy pol\n match fvrf any\n proposal p\ncrypto ikev2 proposal p\n encryption aes-gcm-128\n prf sha384\n group 20\ncrypto ikev2 profile ks\n dpd 10 2 periodic\n description to the key server\n"
	c := mustParse(t, src)
	if len(c.Notes) != 4 {
		t.Fatalf("notes: %v", c.Notes)
	}
	for _, n := range c.Notes {
		if !strings.Contains(n.Msg, "not used by groupvpn") {
			t.Errorf("note: %v", n)
		}
	}
}

// proves: G4 (issue 17: configure terminal edits the G-IKEv2 blocks with
// IOS-XE's prompts, and `no` removes their lines)
func TestGIKEv2Edit(t *testing.T) {
	e := NewEditor(mustParse(t, gikev2GM))
	for _, step := range []struct{ line, prompt string }{
		{"crypto ikev2 proposal p", "(config-ikev2-proposal)"},
		{"encryption aes-gcm-256", "(config-ikev2-proposal)"},
		{"prf sha256", "(config-ikev2-proposal)"},
		{"group 19", "(config-ikev2-proposal)"},
		{"crypto ikev2 keyring kr", "(config-ikev2-keyring)"},
		{"peer ks2", "(config-ikev2-keyring-peer)"},
		{"address 10.0.0.2", "(config-ikev2-keyring-peer)"},
		{"pre-shared-key other", "(config-ikev2-keyring-peer)"},
		{"crypto ikev2 profile ks", "(config-ikev2-profile)"},
		{"lifetime 3600", "(config-ikev2-profile)"},
		{"crypto gkm group G", "(config-gdoi-group)"},
		{"server address ipv4 10.0.0.2", "(config-gdoi-group)"},
	} {
		p, err := e.Apply(step.line)
		if err != nil || p != step.prompt {
			t.Fatalf("%q: prompt %q, %v; want %q", step.line, p, err, step.prompt)
		}
	}
	if _, err := e.Apply("end"); err != nil {
		t.Fatal(err)
	}
	c, err := e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	if c.IKEv2Proposal("p") == nil || len(c.IKEv2Keyring("kr").Peers) != 2 || c.IKEv2Profile("ks").Lifetime.Seconds() != 3600 || len(c.Group("G").Servers) != 2 {
		t.Fatalf("candidate:\n%s", c.Render())
	}
	e = NewEditor(c)
	for _, l := range []string{"crypto ikev2 keyring kr", "no peer ks2", "crypto gkm group G", "no client protocol"} {
		if _, err := e.Apply(l); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
	}
	// Without its client protocol the group is a GDOI group, which needs
	// phase 1 (crypto isakmp policy): end refuses, the line put back commits.
	if _, err := e.Apply("end"); err == nil || !strings.Contains(err.Error(), "registration needs phase 1") {
		t.Fatalf("end without client protocol: %v", err)
	}
	for _, l := range []string{"crypto gkm group G", "client protocol gikev2 ks", "end"} {
		if _, err := e.Apply(l); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
	}
	c, err = e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.IKEv2Keyring("kr").Peers) != 1 || c.Group("G").Protocol() != ProtocolGIKEv2 {
		t.Fatalf("after no:\n%s", c.Render())
	}
}
