package policy

import (
	"strings"
	"testing"
)

// proves: T3 — `crypto map NAME gdoi fail-close` with `activate` makes the
// map's groups fail-close, survives a render round trip, and an unknown
// sub-command is refused with its line.
func TestFailClose(t *testing.T) {
	src := `crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 192.0.2.1
crypto gdoi group G
 identity number 5
 server address ipv4 192.0.2.1
crypto map M 10 gdoi
 set group G
crypto map M gdoi fail-close
 activate
interface eth0
 crypto map M
`
	c, err := Parse("gm.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !c.FailCloseFor(c.Group("G")) {
		t.Fatal("group G is not fail-close")
	}
	again, err := Parse("rendered", []byte(c.Render()))
	if err != nil || !again.FailCloseFor(again.Group("G")) {
		t.Fatalf("render round trip lost fail-close: %v\n%s", err, c.Render())
	}
	off, err := Parse("gm.conf", []byte(strings.Replace(src, " activate\n", "", 1)))
	if err != nil || off.FailCloseFor(off.Group("G")) {
		t.Fatalf("fail-close without activate is on: %v", err)
	}
	_, err = Parse("gm.conf", []byte(strings.Replace(src, " activate\n", " activat now\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "gm.conf:10:") {
		t.Fatalf("bad sub-command: %v", err)
	}
}

// fcGM is a member with fail-close activated and a fail-close ACL.
const fcGM = `crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 192.0.2.1
ip access-list extended FC
 deny udp any any eq 520
 deny ip 10.1.1.0 0.0.0.255 10.1.2.0 0.0.0.255
crypto gdoi group G
 identity number 5
 server address ipv4 192.0.2.1
crypto map M 10 gdoi
 set group G
crypto map M gdoi fail-close
 match address FC
 activate
interface eth0
 crypto map M
`

// proves: T3 (issue 12: fail-close drops before registration) — the
// fail-close ACL (match address in crypto map NAME gdoi fail-close) is
// parsed, resolved to its deny entries for the map's groups, rendered back
// in IOS order and survives the round trip.
func TestFailCloseMatchAddress(t *testing.T) {
	c, err := Parse("gm.conf", []byte(fcGM))
	if err != nil {
		t.Fatal(err)
	}
	d := c.FailCloseDenies(c.Group("G"))
	if len(d) != 2 || d[0].DstPort != 520 || d[1].Src.String() != "10.1.1.0/24" {
		t.Fatalf("deny entries: %+v", d)
	}
	r := c.Render()
	if !strings.Contains(r, "crypto map M gdoi fail-close\n match address FC\n activate\n") {
		t.Fatalf("rendered:\n%s", r)
	}
	again, err := Parse("rendered", []byte(r))
	if err != nil || again.Render() != r || len(again.FailCloseDenies(again.Group("G"))) != 2 {
		t.Fatalf("round trip: %v\n%s", err, r)
	}
	// Not activated: no deny entries apply (the GM is fail-open).
	off := mustParse(t, strings.Replace(fcGM, " activate\n", "", 1))
	if d := off.FailCloseDenies(off.Group("G")); len(d) != 0 {
		t.Fatalf("inactive fail-close gives %d entries", len(d))
	}
}

// proves: T3 — a fail-close ACL with a permit entry, an undefined or a
// standard ACL is refused with its line and an exact, greppable reason.
func TestFailCloseMatchAddressRefused(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"permit", " deny udp any any eq 520\n", " deny udp any any eq 520\n permit ip any any\n",
			`gm.conf:14: crypto map M gdoi fail-close: match address FC: entry "20 permit ip any any" (line 6) is a permit entry; a fail-close access list takes deny entries only (the traffic passed in the clear while fail-close drops the rest)`},
		{"undefined", " match address FC\n", " match address NOPE\n",
			`gm.conf:13: crypto map M gdoi fail-close: match address NOPE: access list "NOPE" is not defined`},
		{"standard", "ip access-list extended FC\n deny udp any any eq 520\n deny ip 10.1.1.0 0.0.0.255 10.1.2.0 0.0.0.255\n",
			"ip access-list standard FC\n deny 10.1.1.0 0.0.0.255\n",
			`gm.conf:12: crypto map M gdoi fail-close: match address FC: needs an extended access list; "FC" is standard`},
		{"arguments", " match address FC\n", " match address FC FD\n", "gm.conf:13:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(fcGM, tc.old) {
				t.Fatalf("fixture lacks %q", tc.old)
			}
			_, err := Parse("gm.conf", []byte(strings.Replace(fcGM, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// proves: T3 — configure terminal edits the one fail-close block of a map
// (entering it again does not add a second one), and `no match address`
// removes the ACL.
// Regression: entering `crypto map M gdoi fail-close` in configuration
// mode appended a second block for the same map.
func TestFailCloseEdit(t *testing.T) {
	c := mustParse(t, fcGM)
	e := NewEditor(c)
	apply(t, e,
		[2]string{"crypto map M gdoi fail-close", "(crypto-map-fail-close)"},
		[2]string{"no match address FC", "(crypto-map-fail-close)"},
	)
	if n := strings.Count(e.Text(), "gdoi fail-close"); n != 1 {
		t.Fatalf("%d fail-close blocks:\n%s", n, e.Text())
	}
	if strings.Contains(e.Text(), "match address FC") || !strings.Contains(e.Text(), " activate\n") {
		t.Fatalf("candidate:\n%s", e.Text())
	}
	apply(t, e, [2]string{"match address FC", "(crypto-map-fail-close)"}, [2]string{"end", ""})
	got, err := e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.FailClose) != 1 || len(got.FailCloseDenies(got.Group("G"))) != 2 {
		t.Fatalf("after edit: %+v\n%s", got.FailClose, e.Text())
	}
}
