package gm

import (
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: T3 (issue 12: fail-close drops before registration) — the
// bootstrap policy of a fail-close group: GDOI to and from each key server
// (once per address and port, IPv4 only) and the fail-close ACL's deny
// entries pass in the clear, in that order, then everything is covered
// (with no TEK and fail-close: dropped).
func TestBootstrap(t *testing.T) {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	ks1, ks2 := netip.MustParseAddrPort("192.0.2.1:848"), netip.MustParseAddrPort("192.0.2.2:848")
	deny := sadb.PolicyEntry{Action: sadb.Protect, SPI: 7, IPProto: 89, Src: any4, Dst: any4} // forced to Bypass
	p := Bootstrap([]netip.AddrPort{ks1, ks2, ks1, netip.MustParseAddrPort("[2001:db8::1]:848")}, []sadb.PolicyEntry{deny})
	want := []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: netip.MustParsePrefix("192.0.2.1/32"), DstPort: 848},
		{Action: sadb.Bypass, IPProto: 17, Src: netip.MustParsePrefix("192.0.2.1/32"), SrcPort: 848, Dst: any4},
		{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: netip.MustParsePrefix("192.0.2.2/32"), DstPort: 848},
		{Action: sadb.Bypass, IPProto: 17, Src: netip.MustParsePrefix("192.0.2.2/32"), SrcPort: 848, Dst: any4},
		{Action: sadb.Bypass, IPProto: 89, Src: any4, Dst: any4},
		{Action: sadb.Protect, Src: any4, Dst: any4},
	}
	if len(p) != len(want) {
		t.Fatalf("got %d entries: %+v", len(p), p)
	}
	for i := range want {
		if p[i] != want[i] {
			t.Errorf("entry %d: got %+v want %+v", i, p[i], want[i])
		}
	}
	// No key server, no fail-close ACL: everything is covered.
	if p := Bootstrap(nil, nil); len(p) != 1 || p[0].Action != sadb.Protect {
		t.Fatalf("empty bootstrap: %+v", p)
	}
}
