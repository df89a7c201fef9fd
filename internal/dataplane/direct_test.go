package dataplane

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: T3 (issue 12: fail-close drops before registration) — of the
// policies tmd holds, the deny entries shaped like a GM's GDOI traffic
// (UDP to or from one host's port) that no earlier permit entry can match
// become rules routing by the main table; SetDirect keeps the rules in
// step and Remove deletes them. Regression: with the fail-close bootstrap
// routing everything into the TUN with the LAN source address, a GM
// registered from its LAN address and the KS refused it.
func TestDirectEntries(t *testing.T) {
	p := netip.MustParsePrefix
	any4 := p("0.0.0.0/0")
	to := sadb.PolicyEntry{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: p("192.0.2.1/32"), DstPort: 848}
	from := sadb.PolicyEntry{Action: sadb.Bypass, IPProto: 17, Src: p("192.0.2.1/32"), SrcPort: 848, Dst: any4}
	ospf := sadb.PolicyEntry{Action: sadb.Bypass, IPProto: 89, Src: any4, Dst: any4}
	all := sadb.PolicyEntry{Action: sadb.Protect, Src: any4, Dst: any4}
	ks2 := sadb.PolicyEntry{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: p("198.51.100.1/32"), DstPort: 848}
	site := sadb.PolicyEntry{Action: sadb.Protect, SPI: 9, Src: p("10.0.0.0/8"), Dst: p("10.0.0.0/8")}
	got := DirectEntries(map[string][]sadb.PolicyEntry{
		"B": {to, from, ospf, all},
		// A comes first: its permit of 10/8 cannot match traffic to the
		// KSs; B's entry to 198.51.100.1 follows B's permit of everything.
		"A": {site, to},
		"C": {ks2},
	})
	if want := []sadb.PolicyEntry{to, from}; !reflect.DeepEqual(got, want) {
		t.Fatalf("direct entries %+v, want %+v", got, want)
	}
	// A permit before the entry that can match it: not direct.
	if got := DirectEntries(map[string][]sadb.PolicyEntry{"A": {all, to}}); len(got) != 0 {
		t.Fatalf("entries after a permit of everything: %+v", got)
	}

	var cmds []string
	r := &Routes{TUN: "gvtun", Mark: 7, IP: func(args ...string) error {
		cmds = append(cmds, strings.Join(args, " "))
		if len(cmds) > 20 {
			return errAgain // the rules left behind are gone
		}
		return nil
	}}
	if err := r.SetDirect([]sadb.PolicyEntry{to, from}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetDirect([]sadb.PolicyEntry{from}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"rule add pref 1003 to 192.0.2.1/32 ipproto 17 dport 848 lookup main",
		"rule add pref 1003 from 192.0.2.1/32 ipproto 17 sport 848 lookup main",
		"rule del pref 1003 to 192.0.2.1/32 ipproto 17 dport 848 lookup main",
	}
	if !reflect.DeepEqual(cmds, want) || !reflect.DeepEqual(r.Direct, []sadb.PolicyEntry{from}) {
		t.Fatalf("ip commands %q, Direct %+v", cmds, r.Direct)
	}
	cmds = nil
	r.Remove()
	if !strings.Contains(strings.Join(cmds, "\n"), "rule del pref 1003 from 192.0.2.1/32 ipproto 17 sport 848 lookup main\nrule del pref 1003\n") || len(r.Direct) != 0 {
		t.Fatalf("Remove: %q", cmds)
	}
}

var errAgain = errors.New("RTNETLINK answers: No such file or directory")
