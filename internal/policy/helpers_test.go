package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// name is what test snippets are parsed as: relative key and certificate
// paths resolve in testdata/, and messages start with "testdata/t.conf:".
const name = "testdata/t.conf"

// ksBase is a minimal valid key server; tests append to it.
const ksBase = `crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 0.0.0.0 0.0.0.0
ip access-list extended tr
 permit ip 10.0.0.0 0.255.255.255 10.0.0.0 0.255.255.255
crypto ipsec transform-set ts esp-gcm
crypto ipsec profile pr
 set transform-set ts
crypto gdoi group G
 identity number 1
 server local
  sa ipsec 1
   profile pr
   match address ipv4 tr
`

// ksBaseLines is the number of lines of ksBase.
var ksBaseLines = strings.Count(ksBase, "\n")

// gmBase is a minimal valid group member.
const gmBase = `crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 10.0.0.1
crypto gdoi group G
 identity number 1
 server address ipv4 10.0.0.1
crypto map m 10 gdoi
 set group G
interface eth0
 crypto map m
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse(name, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n--- input:\n%s", err, src)
	}
	return c
}

// mustFail parses src and wants exactly the errors want (each without the
// "testdata/t.conf:" prefix, i.e. "LINE: reason").
func mustFail(t *testing.T, src string, want ...string) ErrorList {
	t.Helper()
	c, err := Parse(name, []byte(src))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s\n--- rendered:\n%s", src, c.Render())
	}
	if c != nil {
		t.Errorf("Parse returned a Config with errors")
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not an ErrorList: %v", err, err)
	}
	var got []string
	for _, e := range list {
		got = append(got, strings.TrimPrefix(e.Error(), name+":"))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n  got  %q\n  want %q", got, want)
	}
	return list
}

// line returns the 1-based number of the first line of src containing s.
func line(t *testing.T, src, s string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("no line contains %q", s)
	return 0
}
