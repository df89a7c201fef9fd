package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// proves: O3 (issue 14 item 1: logging host and logging buffered are
// settable in the configuration as on IOS, rendered back in show
// running-config, editable with configure terminal; what would block the
// daemon (TCP) is refused with the reason)
func TestLoggingCommands(t *testing.T) {
	src := "hostname ks1\nlogging buffered 16384\nlogging trap 4\nlogging facility LOCAL5\nlogging host 192.0.2.9\nlogging host 192.0.2.10 transport udp port 5514\nlogging host ipv6 2001:db8::9 transport udp\nlogging host 192.0.2.9 transport udp port 1514\n"
	c, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Logging
	if l.Buffered != 16384 || len(l.Hosts) != 3 || Facility(l.Facility) != 21 || l.Trap != "warnings" {
		t.Fatalf("logging %+v", l)
	}
	var dests []string
	for _, h := range l.Hosts {
		dests = append(dests, h.Dest())
	}
	if got := strings.Join(dests, " "); got != "udp://192.0.2.9:1514 udp://192.0.2.10:5514 udp://[2001:db8::9]:514" {
		t.Fatalf("destinations %s", got)
	}
	out := c.Render()
	for _, want := range []string{"logging buffered 16384 debugging\n", "logging trap warnings\n", "logging facility local5\n", "logging host 192.0.2.9 transport udp port 1514\n",
		"logging host ipv6 2001:db8::9 transport udp port 514\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	again, err := Parse("t.conf", []byte(out))
	if err != nil || len(again.Logging.Hosts) != 3 || again.Logging.Buffered != 16384 || again.Logging.Hosts[2].Addr != netip.MustParseAddr("2001:db8::9") {
		t.Fatalf("render does not parse back: %v %+v", err, again)
	}
	if d, err := Parse("t.conf", []byte("logging 192.0.2.44\n")); err != nil || len(d.Logging.Hosts) != 1 || d.Logging.Hosts[0].Dest() != "udp://192.0.2.44:514" ||
		!strings.Contains(d.Render(), "logging host 192.0.2.44 transport udp port 514\n") {
		t.Fatalf("logging A.B.C.D: %v", err)
	}
	if d, _ := Parse("t.conf", []byte("logging buffered\n")); d.Logging.Buffered != DefaultLoggingBuffered {
		t.Fatalf("logging buffered without size: %d", d.Logging.Buffered)
	}
	for line, want := range map[string][2]any{
		"logging buffered 5":              {DefaultLoggingBuffered, "notifications"},
		"logging buffered 51200 warnings": {51200, "warnings"},
		"logging buffered inf":            {DefaultLoggingBuffered, "informational"},
		"logging buffered 8192 debugging": {8192, ""},
	} {
		d, err := Parse("t.conf", []byte(line+"\n"))
		if err != nil || d.Logging.Buffered != want[0] || d.Logging.BufferedLevel != want[1] {
			t.Errorf("%s: %v %d %q", line, err, d.Logging.Buffered, d.Logging.BufferedLevel)
		}
	}

	for line, want := range map[string]string{
		"logging host 192.0.2.9 transport tcp port 601": "not supported",
		"logging host 192.0.2.9 transport udp port 0":   "logging host port",
		"logging host 2001:db8::1":                      "not a unicast IPv4 address",
		"logging host ipv6 192.0.2.1":                   "not a unicast IPv6 address",
		"logging host 224.0.0.1":                        "not a unicast",
		"logging buffered 100":                          "logging buffered",
		"logging buffered 999999999":                    "logging buffered",
		"logging buffered 8192 loud":                    "not a severity",
		"logging trap 9":                                "not a severity",
		"logging facility kern":                         "not a facility",
		"logging facility sys9":                         "not a facility",
	} {
		_, err := Parse("t.conf", []byte(line+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", line, err, want)
		}
	}

	e := NewEditor(c)
	for _, line := range []string{"no logging host 192.0.2.10", "logging host 198.51.100.7 transport udp port 6514", "no logging buffered"} {
		if _, err := e.Apply(line); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	if _, err := e.Apply("end"); err != nil {
		t.Fatal(err)
	}
	n, err := e.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	dests = nil
	for _, h := range n.Logging.Hosts {
		dests = append(dests, h.Dest())
	}
	if got := strings.Join(dests, " "); n.Logging.Buffered != 0 || got != "udp://192.0.2.9:1514 udp://[2001:db8::9]:514 udp://198.51.100.7:6514" {
		t.Fatalf("after editing: buffered %d, hosts %s\n%s", n.Logging.Buffered, got, e.Text())
	}
}
