package sadb

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
)

func TestMemory(t *testing.T) {
	m := NewMemory()
	if err := m.InstallTEK(TEK{Group: "g", SPI: 0}); err == nil {
		t.Fatal("SPI 0 accepted")
	}
	for _, spi := range []uint32{3, 1, 2} {
		if err := m.InstallTEK(TEK{Group: "g", SPI: spi}); err != nil {
			t.Fatal(err)
		}
	}
	m.InstallTEK(TEK{Group: "a", SPI: 9})
	got := m.TEKs()
	if len(got) != 4 || got[0].Group != "a" || got[1].SPI != 1 || got[3].SPI != 3 {
		t.Fatalf("order %+v", got)
	}
	if err := m.DeleteTEK("g", 7); err == nil {
		t.Fatal("deleting a missing TEK succeeded")
	}
	m.DeleteTEK("g", 1)
	m.InstallKEK(KEK{Group: "g"})
	m.InstallKEK(KEK{Group: "a"})
	if len(m.TEKs()) != 3 || len(m.KEKs()) != 2 || m.KEKs()[0].Group != "a" {
		t.Fatal("bookkeeping")
	}
	m.DeleteKEK("a")
	if len(m.KEKs()) != 1 {
		t.Fatal("KEK not deleted")
	}
}

// proves: E3 — a group's policy is kept in order next to its TEKs, the
// first matching entry decides (a deny before a permit passes its traffic
// in the clear), a packet no entry matches is not the group's, and the
// store hands out copies.
func TestPolicyFirstMatch(t *testing.T) {
	m := NewMemory()
	any4, ten := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8")
	p := []PolicyEntry{
		{Action: Bypass, IPProto: 17, Src: any4, Dst: any4, SrcPort: 848, DstPort: 848},
		{Action: Protect, Src: ten, Dst: ten, SPI: 7},
		{Action: Bypass, Src: any4, Dst: any4},
	}
	m.SetPolicy("g", p)
	p[0].Action = Protect // the caller's slice is not the store's
	got := m.Policy("g")
	got[1].SPI = 9
	a, b := netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.2.2.2")
	for _, c := range []struct {
		proto      uint8
		dst        netip.Addr
		sp, dp     uint16
		want       Action
		wantSPI    uint32
		wantsMatch bool
	}{
		{17, b, 848, 848, Bypass, 0, true},
		{17, b, 848, 849, Protect, 7, true},
		{6, netip.MustParseAddr("192.0.2.1"), 1, 2, Bypass, 0, true},
	} {
		e, ok := Lookup(m.Policy("g"), c.proto, a, c.dst, c.sp, c.dp)
		if ok != c.wantsMatch || e.Action != c.want || e.SPI != c.wantSPI {
			t.Errorf("%+v: got %+v %v", c, e, ok)
		}
	}
	if _, ok := Lookup(m.Policy("g")[:2], 6, a, netip.MustParseAddr("192.0.2.1"), 1, 2); ok {
		t.Error("a packet outside every entry matched")
	}
	if m.Policy("other") != nil {
		t.Error("policy of an unknown group")
	}
	m.SetPolicy("g", nil)
	if m.Policy("g") != nil || Bypass.String() != "deny" || Protect.String() != "permit" {
		t.Error("SetPolicy(nil) or names")
	}
}

// TestPolicyJSON: a policy survives encoding/json both ways (tmd's API
// carries it), Policies copies every group's, and an unknown action is
// refused.
//
// proves: D1 (issue 12: the ordered policy reaches tmd intact)
func TestPolicyJSON(t *testing.T) {
	any4, ten := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8")
	p := []PolicyEntry{
		{Action: Bypass, IPProto: 17, Src: any4, Dst: any4, SrcPort: 848, DstPort: 848},
		{Action: Protect, Src: ten, Dst: ten, SPI: 7},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back []PolicyEntry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !slices.Equal(back, p) {
		t.Fatalf("round trip: %+v, want %+v", back, p)
	}
	for _, bad := range []string{`[{"Action":"allow"}]`, `[{"Action":1}]`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	m := NewMemory()
	m.SetPolicy("a", p)
	m.SetPolicy("b", p[:1])
	all := m.Policies()
	all["a"][0].SPI = 99
	if len(all) != 2 || len(all["b"]) != 1 || m.Policy("a")[0].SPI != 0 {
		t.Fatalf("Policies: %+v", all)
	}
}
