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
