package policy

import (
	"errors"
	"strings"
	"testing"
)

// proves: O1
func TestErrorUnknownCommandNamesFileLineAndMode(t *testing.T) {
	src := strings.Replace(ksBase, "  sa ipsec 1\n", "  rekey algorthm aes 128\n  sa ipsec 1\n", 1)
	_, err := Parse("ks.conf", []byte(src))
	want := `ks.conf:12: unknown command "rekey algorthm" in crypto gdoi group server local mode; did you mean "rekey algorithm"?`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "ks.conf" || e.Line != 12 || e.Msg != `unknown command "rekey algorthm" in crypto gdoi group server local mode; did you mean "rekey algorithm"?` {
		t.Fatalf("errors.As: %+v", e)
	}
	mustFail(t, "frobnicate now\ncrypto isakmp polcy 10\n",
		`1: unknown command "frobnicate" in global configuration mode`,
		`2: unknown command "crypto isakmp polcy" in global configuration mode; did you mean "crypto isakmp policy"?`)
}

// proves: O1
func TestErrorIncompleteAndWrongArguments(t *testing.T) {
	n := ksBaseLines
	mustFail(t, ksBase+"  rekey lifetime\n  rekey lifetime seconds 300 600\n  sa receive-only please\n",
		itoa(n+1)+`: incomplete command "rekey lifetime" in crypto gdoi group server local sa ipsec mode; usage: rekey lifetime seconds SECONDS`,
		itoa(n+2)+`: "rekey lifetime seconds 300 600": wrong number of arguments; usage: rekey lifetime seconds SECONDS`,
		itoa(n+3)+`: "sa receive-only please": wrong number of arguments; usage: sa receive-only`)
}

// proves: O1
func TestErrorValuesOutOfRangeAndNotNumbers(t *testing.T) {
	n := ksBaseLines
	mustFail(t, ksBase+"   replay time window-size five\n   replay time window-size 101\n",
		itoa(n+1)+`: replay time window-size "five" is not a number (accepted: 1-100)`,
		itoa(n+2)+`: replay time window-size 101 is out of range (accepted: 1-100)`)
}

// proves: O1
func TestErrorDanglingReferences(t *testing.T) {
	src := ksBase + `  sa ipsec 2
   profile gdoi-p2
   match address ipv4 nope
  rekey authentication mypubkey rsa K
  rekey address ipv4 nope2
  authorization address ipv4 nope3
crypto map m 10 gdoi
 set group nope4
interface eth0
 crypto map nope5
`
	l := func(s string) string { return itoa(line(t, src, s)) }
	mustFail(t, src,
		l("profile gdoi-p2")+`: sa ipsec 2: profile "gdoi-p2" is not defined`,
		l("match address ipv4 nope")+`: sa ipsec 2: access list "nope" is not defined`,
		l("mypubkey rsa K")+`: rekey authentication: key "K" is not defined: no crypto key import line names it (and no key store was given); generate it in the key store (groupvpn key -c 'crypto key generate rsa general-keys label K modulus 2048'; groupvpn cli once isakmpd runs), import the one the other key servers use (crypto key import rsa K pem terminal), or name a file (crypto key import rsa K file PATH)`,
		l("rekey address ipv4 nope2")+`: rekey address ipv4: access list "nope2" is not defined`,
		l("authorization address ipv4 nope3")+`: authorization address ipv4: access list "nope3" is not defined`,
		l("set group nope4")+`: crypto map m 10: group "nope4" is not defined`,
		l("crypto map nope5")+`: interface eth0: crypto map "nope5" is not defined`,
	)
}

// proves: O1
func TestErrorInconsistentGroups(t *testing.T) {
	// Identity, roles, SAs.
	mustFail(t, `crypto isakmp policy 1
 authentication pre-share
crypto isakmp key k address 10.0.0.1
crypto gdoi group A
 server local
 server address ipv4 10.0.0.1
crypto gdoi group B
 identity number 7
crypto gdoi group C
 identity number 7
 server address ipv4 10.0.0.1
crypto map m 1 gdoi
 set group A
`,
		`4: crypto gdoi group A: identity number is required`,
		`6: crypto gdoi group A: server address ipv4 (group member) and server local (key server, line 5) cannot both be configured`,
		`7: crypto gdoi group B: neither server local (key server) nor server address ipv4 (group member) is configured`,
		`10: crypto gdoi group C: identity number 7 is already used by group B (line 8)`,
		`13: crypto map m 1: group A is served here (server local); a key server cannot be a member of its own group`,
	)
	// Phase 1 missing, SA pieces missing, ACL kinds.
	mustFail(t, `ip access-list standard std
 permit any
ip access-list extended empty
 deny ip any any
crypto gdoi group G
 identity number 1
 server local
  sa ipsec 1
  sa ipsec 2
   match address ipv4 std
  sa ipsec 3
   match address ipv4 empty
`,
		`5: crypto gdoi group G: registration needs phase 1, but no crypto isakmp policy is configured`,
		`8: sa ipsec 1: profile NAME is required`,
		`8: sa ipsec 1: match address ipv4 ACL is required`,
		`9: sa ipsec 2: profile NAME is required`,
		`10: sa ipsec 2: match address needs an extended access list; "std" is standard`,
		`11: sa ipsec 3: profile NAME is required`,
		`12: sa ipsec 3: access list "empty" has no permit entry, so the SA would protect nothing`,
	)
	// Rekey consistency.
	n := ksBaseLines
	mustFail(t, ksBase+"  rekey authentication mypubkey ec R\ncrypto key import rsa R file ks-rekey.pem\n",
		itoa(n+1)+`: rekey authentication mypubkey ec R: key R (line `+itoa(n+2)+`) is rsa, not ec`,
		itoa(n+1)+`: crypto gdoi group G: rekeys have no transport; add rekey address ipv4 ACL (multicast) or rekey transport unicast`)
	mustFail(t, ksBase+"  rekey address ipv4 tr\n  rekey transport unicast\n",
		itoa(n+1)+`: rekey address ipv4 needs rekey authentication mypubkey {rsa | ec} LABEL (rekeys are signed)`,
		itoa(n+1)+`: rekey address ipv4: access list "tr" has no permit entry with a multicast host destination (e.g. permit udp host 10.0.0.1 eq 848 host 239.192.1.1 eq 848)`,
		itoa(n+2)+`: rekey transport unicast needs rekey authentication mypubkey {rsa | ec} LABEL (rekeys are signed)`)
	// Pre-shared keys.
	mustFail(t, "crypto isakmp policy 1\n authentication pre-share\n",
		`1: crypto isakmp policy 1: authentication pre-share but no crypto isakmp key is configured`)
}

// proves: O1
func TestErrorsAreCollectedAndCapped(t *testing.T) {
	// Several independent errors come back together, in line order.
	list := mustFail(t, "hostname\nbogus\ngroupvpn version x\n",
		`1: "hostname": wrong number of arguments; usage: hostname NAME`,
		`2: unknown command "bogus" in global configuration mode`,
		`3: groupvpn version "x": want major.minor.mini, e.g. 1.0.2`)
	if len(list.Unwrap()) != 3 || !strings.Contains(list.Error(), "\n") {
		t.Errorf("list %q", list.Error())
	}
	// More than MaxErrors: the first MaxErrors, then a last line saying so.
	src := strings.Repeat("bogus\n", 50)
	_, err := Parse(name, []byte(src))
	var l ErrorList
	if !errors.As(err, &l) || len(l) != MaxErrors+1 {
		t.Fatalf("got %d errors: %v", len(l), err)
	}
	if last := l[MaxErrors]; last.Line != MaxErrors+1 || last.Msg != "too many errors (more than 20); fix these and check again" {
		t.Errorf("last %+v", last)
	}
	// A bad block header does not cascade into its sub-commands.
	mustFail(t, "crypto isakmp policy 99999\n hash sha256\n group 14\ncrypto gdoi group\n identity number 5\n",
		`1: crypto isakmp policy priority 99999 is out of range (accepted: 1-10000)`,
		`4: "crypto gdoi group": wrong number of arguments; usage: crypto gdoi group NAME`)
}

// proves: O1
func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.conf")
	if err == nil || err.Error() != "testdata/nope.conf: cannot read: no such file or directory" {
		t.Fatalf("got %v", err)
	}
	c, err := Load("testdata/ks.conf")
	if err != nil || c.File != "testdata/ks.conf" || c.Dir != "testdata" {
		t.Fatalf("Load: %v %+v", err, c)
	}
}
