package policy

import (
	"fmt"
	"strings"
	"testing"
)

// ksPaste is `show running-config` of an IOS GET VPN key server, as an
// operator copies it (the shape of Cisco's GET VPN configuration guide:
// show-run headers, an RSA key generated in exec mode and named by
// `rekey authentication mypubkey rsa`, DPD keepalives, interface addresses,
// terminal lines), with the one line groupvpn needs added: the rekey key
// imported from a file.
const ksPaste = `Building configuration...

Current configuration : 2481 bytes
!
! Last configuration change at 10:15:02 UTC Tue Mar 3 2026
!
version 15.4
service timestamps debug datetime msec
service timestamps log datetime msec
no service password-encryption
!
hostname KS1
!
boot-start-marker
boot-end-marker
!
no aaa new-model
ip cef
ip domain name example.net
!
crypto key generate rsa general-keys label GETVPN-REKEY modulus 2048
crypto key import rsa GETVPN-REKEY file ks-rekey.pem
!
crypto isakmp policy 10
 encr aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key GETVPNkey address 10.1.0.0 255.255.0.0
crypto isakmp keepalive 15 periodic
!
crypto ipsec transform-set GETVPN-TS esp-aes 256 esp-sha256-hmac
 mode tunnel
!
crypto ipsec profile GETVPN-PROFILE
 set transform-set GETVPN-TS
!
crypto gdoi group GETVPN
 identity number 1234
 server local
  rekey algorithm aes 256
  rekey lifetime seconds 86400
  rekey retransmit 10 number 2
  rekey authentication mypubkey rsa GETVPN-REKEY
  rekey address ipv4 GETVPN-REKEY-ACL
  address ipv4 10.0.0.1
  sa ipsec 1
   profile GETVPN-PROFILE
   match address ipv4 GETVPN-ACL
   replay time window-size 5
!
interface GigabitEthernet0/0
 description WAN to MPLS PE
 ip address 10.0.0.1 255.255.255.0
 duplex auto
 speed auto
!
ip forward-protocol nd
no ip http server
ip route 0.0.0.0 0.0.0.0 10.0.0.254
!
ip access-list extended GETVPN-ACL
 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255
ip access-list extended GETVPN-REKEY-ACL
 permit udp host 10.0.0.1 eq 848 host 239.192.1.1 eq 848
!
control-plane
!
line con 0
 logging synchronous
line vty 0 4
 login
 transport input ssh
!
ntp server 10.0.0.254
end
`

// gmPaste is `show running-config` of an IOS GET VPN group member.
const gmPaste = `Building configuration...

Current configuration : 1630 bytes
!
version 15.4
service timestamps log datetime msec
hostname GM1
!
boot-start-marker
boot-end-marker
!
crypto isakmp policy 10
 encr aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key GETVPNkey address 10.0.0.1
crypto isakmp keepalive 10 3 on-demand
!
crypto gdoi group GETVPN
 identity number 1234
 server address ipv4 10.0.0.1
!
crypto map GETVPN-MAP local-address GigabitEthernet0/0
crypto map GETVPN-MAP 10 gdoi
 set group GETVPN
!
interface GigabitEthernet0/0
 description WAN to MPLS PE
 ip address 10.1.1.1 255.255.255.0
 crypto map GETVPN-MAP
!
interface GigabitEthernet0/1
 description LAN
 ip address 10.1.2.1 255.255.255.0
 ip ospf 1 area 0
 no ip redirects
 mtu 1400
!
router ospf 1
 network 10.1.0.0 0.0.255.255 area 0
!
line vty 0 4
 login
end
`

// notesOf returns the notes as "LINE: text" (without the file name).
func notesOf(c *Config) []string {
	var out []string
	for _, n := range c.Notes {
		out = append(out, strings.TrimPrefix(n.Error(), name+":"))
	}
	return out
}

// wantNote checks that the line of src containing s carries a note
// containing reason.
func wantNote(t *testing.T, c *Config, src, s, reason string) {
	t.Helper()
	prefix := fmt.Sprintf("%d: note: ", line(t, src, s))
	for _, n := range notesOf(c) {
		if strings.HasPrefix(n, prefix) && strings.Contains(n, "not used by groupvpn") && strings.Contains(n, reason) {
			return
		}
	}
	t.Errorf("no note %q... for %q (%s); notes:\n%s", prefix, s, reason, strings.Join(notesOf(c), "\n"))
}

// proves: O1 (issue 14 item 2: a configuration copied from a running IOS KS
// is accepted; show-run headers, the exec-mode key generation, interface
// addresses and descriptions are notes, not errors; the DPD keepalive is
// used)
func TestPasteIOSKeyServer(t *testing.T) {
	c := mustParse(t, ksPaste)
	if len(c.KSGroups()) != 1 || c.Hostname != "KS1" || c.Key("GETVPN-REKEY") == nil {
		t.Fatalf("KS paste parsed wrongly: %s", c.Summary())
	}
	for _, n := range []struct{ line, reason string }{
		{"Building configuration", "header"},
		{"Current configuration", "header"},
		{"version 15.4", "IOS software version"},
		{"crypto key generate rsa", "crypto key import"},
		{"description WAN", "comment"},
		{"ip address 10.0.0.1", "address is the host's"},
		{"ip route", "kernel routes"},
		{"line con 0", "terminal lines"},
		{"line vty", "terminal lines"},
		{"ntp server", "time"},
	} {
		wantNote(t, c, ksPaste, n.line, n.reason)
	}
	// The lines inside an unused block are noted once, at its header.
	for _, n := range notesOf(c) {
		if strings.Contains(n, "transport input") || strings.Contains(n, "logging synchronous") {
			t.Errorf("a line of an unused block is noted on its own: %s", n)
		}
	}
	// What is noted is not rendered: show running-config is groupvpn's.
	if out := c.Render(); strings.Contains(out, "description") || strings.Contains(out, "version 15") {
		t.Errorf("noted lines rendered:\n%s", out)
	}
	if k := c.Keepalive; k != (Keepalive{Seconds: 15, Periodic: true, Line: line(t, ksPaste, "crypto isakmp keepalive")}) {
		t.Errorf("keepalive %+v", k)
	}
}

// proves: O1 (issue 14 item 2: a configuration copied from a running IOS GM
// is accepted; `crypto map NAME local-address IF` is a note with its
// reason, not "a bad sequence number")
func TestPasteIOSGroupMember(t *testing.T) {
	c := mustParse(t, gmPaste)
	if len(c.GMGroups()) != 1 || len(c.Interfaces) != 2 || c.Interfaces[0].CryptoMap != "GETVPN-MAP" {
		t.Fatalf("GM paste parsed wrongly: %s", c.Summary())
	}
	wantNote(t, c, gmPaste, "local-address", "the address the kernel chooses")
	if k := c.Keepalive; k.Seconds != 10 || k.Retry != 3 || k.Periodic {
		t.Errorf("keepalive %+v", k)
	}
	for _, n := range notesOf(c) {
		if strings.Contains(n, "keepalive") {
			t.Errorf("keepalive noted: %s", n)
		}
	}
	wantNote(t, c, gmPaste, "description LAN", "comment")
	wantNote(t, c, gmPaste, "router ospf", "routing protocols")
	wantNote(t, c, gmPaste, "ip ospf 1 area 0", "an IOS interface setting")
	wantNote(t, c, gmPaste, "no ip redirects", "an IOS interface setting")
	wantNote(t, c, gmPaste, "mtu 1400", "link setting")
	// An unindented global command after an interface is global, not
	// swallowed by the interface's catch-all ip and no.
	c = mustParse(t, gmPaste+"interface Loopback0\n ip address 10.9.9.9 255.255.255.255\nip access-list extended X\n permit ip any any\n")
	if c.ACL("X") == nil {
		t.Errorf("ip access-list after an interface was not a global command")
	}
	for _, n := range notesOf(c) {
		if strings.Contains(n, "network 10.1.0.0") {
			t.Errorf("a line of router ospf is noted on its own: %s", n)
		}
	}
}

// proves: O1 (issue 14 item 2: what groupvpn cannot honour is refused with
// the reason: a rekey key generated in IOS's NVRAM cannot sign our rekeys)
func TestPasteGeneratedKeyRefusedWithReason(t *testing.T) {
	src := strings.Replace(ksPaste, "crypto key import rsa GETVPN-REKEY file ks-rekey.pem\n", "", 1)
	list := mustFailAny(t, src)
	want := fmt.Sprintf(`%d: rekey authentication: key "GETVPN-REKEY" was generated on IOS (crypto key generate, line %d)`,
		line(t, src, "rekey authentication mypubkey"), line(t, src, "crypto key generate"))
	if len(list) != 1 || !strings.HasPrefix(strings.TrimPrefix(list[0].Error(), name+":"), want) || !strings.Contains(list[0].Msg, "crypto key import rsa GETVPN-REKEY file PATH") {
		t.Errorf("errors: %v\nwant one starting %q", list, want)
	}
}

// proves: O1 (issue 14 item 2: bad keepalive values and typos are still
// errors; a mistyped first keyword gets a "did you mean")
func TestPasteTyposAndBadValues(t *testing.T) {
	mustFail(t, "crypto isakmp keepalive 5\n", `1: crypto isakmp keepalive seconds 5 is out of range (accepted: 10-3600)`)
	mustFail(t, "crypto isakmp keepalive 10 3 sometimes\n", `1: crypto isakmp keepalive "sometimes" is not supported (accepted: periodic, on-demand)`)
	mustFail(t, "hostnme ks1\n", `1: unknown command "hostnme" in global configuration mode; did you mean "hostname"?`)
	mustFail(t, "interface eth0\n discription x\n", `2: unknown command "discription" in interface mode; did you mean "description"?`)
	if l := mustFailAny(t, "crypto gdoi group G\n identiy number 1\n"); !strings.Contains(l.Error(), `2: unknown command "identiy" in crypto gdoi group mode; did you mean "identity"?`) {
		t.Errorf("errors: %v", l)
	}
	mustFail(t, "frobnicate\n", `1: unknown command "frobnicate" in global configuration mode`)
	// A typo after known keywords is suggested too; none when nothing is close.
	mustFail(t, "ip access-list extnded X\n", `1: unknown command "ip access-list extnded" in global configuration mode; did you mean "ip access-list extended"?`)
	mustFail(t, "ip access-list frobnicate X\n", `1: unknown command "ip access-list frobnicate" in global configuration mode`)
}

func mustFailAny(t *testing.T, src string) ErrorList {
	t.Helper()
	c, err := Parse(name, []byte(src))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", c.Render())
	}
	return err.(ErrorList)
}

// proves: O1 (issue 14 item 2: numbered access lists, as an IOS GET VPN
// configuration often writes its traffic ACL, are accepted and are the
// same list as `ip access-list extended NUMBER`)
func TestPasteNumberedAccessList(t *testing.T) {
	src := strings.Replace(ksPaste, "match address ipv4 GETVPN-ACL", "match address ipv4 101", 1) +
		"access-list 101 remark GET VPN traffic\n" +
		"access-list 101 deny udp any eq 848 any eq 848\n" +
		"access-list 101 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255\n" +
		"access-list 10 permit 10.1.0.0 0.0.255.255\n"
	c := mustParse(t, src)
	acl := c.ACL("101")
	if acl == nil || acl.Standard || len(acl.Entries) != 2 || acl.Entries[0].Action != "deny" || acl.Entries[1].Seq != 20 {
		t.Fatalf("access list 101: %+v", acl)
	}
	if std := c.ACL("10"); std == nil || !std.Standard || len(std.Entries) != 1 {
		t.Fatalf("access list 10: %+v", std)
	}
	if g := c.KSGroups()[0]; g.Server.SAs[0].MatchACL != acl {
		t.Errorf("sa ipsec 1 does not match access list 101")
	}
	wantNote(t, c, src, "access-list 101 remark", "comment")
	if out := c.Render(); !strings.Contains(out, "ip access-list extended 101\n 10 deny udp any eq 848 any eq 848\n") {
		t.Errorf("rendered:\n%s", out)
	}
	mustFail(t, "access-list 250 permit ip any any\n", `1: access-list 250: not an IP access list number (accepted: 1-99 and 1300-1999 standard, 100-199 and 2000-2699 extended)`)
	mustFail(t, "access-list 101 alow ip any any\n", `1: access-list 101: "alow" is not supported (accepted: permit, deny, remark)`)
	mustFail(t, "ip access-list standard 101\naccess-list 101 permit ip any any\n", `2: access list "101" is already defined at line 1 as a different kind (standard/extended)`)
	mustFail(t, "access-list 101 permit ip 10.1.0.0 any\n", `1: access-list address 10.1.0.0 needs a wildcard mask (e.g. 10.1.0.0 0.0.0.255), or write host 10.1.0.0`)
}

// proves: O1 (issue 14 item 2: what groupvpn cannot honour safely is
// refused with the reason: a GM's own crypto map deny list, which ignored
// would encrypt the traffic it exempts)
func TestPasteGMDenyListRefused(t *testing.T) {
	src := strings.Replace(gmPaste, " set group GETVPN\n", " set group GETVPN\n match address LOCAL-DENY\n", 1) +
		"ip access-list extended LOCAL-DENY\n deny ip any any\n"
	list := mustFailAny(t, src)
	if len(list) != 1 || list[0].Line != line(t, src, "match address LOCAL-DENY") || !strings.Contains(list[0].Msg, "a group member's own deny list is not supported") {
		t.Errorf("errors: %v", list)
	}
}
