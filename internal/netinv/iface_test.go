package netinv

import (
	"net/netip"
	"testing"
)

func TestInterfaceOfLoopback(t *testing.T) {
	if got := InterfaceOf(netip.MustParseAddr("127.0.0.1")); got != "lo" {
		t.Fatalf("InterfaceOf(127.0.0.1) = %q, want lo", got)
	}
	if got := InterfaceOf(netip.MustParseAddr("192.0.2.123")); got != "" {
		t.Fatalf("InterfaceOf(192.0.2.123) = %q, want none", got)
	}
}
