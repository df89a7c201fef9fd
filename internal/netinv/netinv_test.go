package netinv

import (
	"net/netip"
	"slices"
	"testing"
)

// proves: D3 (the loopback address of an up interface is in the inventory)
func TestInventoryHasLoopback(t *testing.T) {
	addrs, err := WithPorts(848, 500)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, netip.MustParseAddrPort("127.0.0.1:848")) || !slices.Contains(addrs, netip.MustParseAddrPort("127.0.0.1:500")) {
		t.Fatalf("inventory %v lacks 127.0.0.1 on both ports", addrs)
	}
}

// proves: D4 (refresh opens what is new and closes what is gone)
func TestDiff(t *testing.T) {
	p := netip.MustParseAddrPort
	cur := []netip.AddrPort{p("10.0.0.1:848"), p("10.0.0.2:848")}
	next := []netip.AddrPort{p("10.0.0.1:848"), p("[2001:db8::5]:848")}
	added, removed := Diff(cur, next)
	if Join(added) != "[2001:db8::5]:848" || Join(removed) != "10.0.0.2:848" {
		t.Fatalf("added %v removed %v", added, removed)
	}
	if Join(nil) != "none" {
		t.Fatal(Join(nil))
	}
}
