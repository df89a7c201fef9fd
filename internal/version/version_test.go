package version

import "testing"

// proves: V2 (the version travels in a Vendor ID whose bytes are fixed)
func TestVendorIDRoundTrip(t *testing.T) {
	b := Current.VendorID()
	if string(b) != "groupvpn-version\x01\x00\x03" {
		t.Fatalf("vendor ID bytes %q", b)
	}
	v, ok := FromVendorID(b)
	if !ok || v != Current {
		t.Fatalf("FromVendorID = %v %v", v, ok)
	}
	if _, ok := FromVendorID([]byte("groupvpn-versio\x01\x00\x02\x00")); ok {
		t.Fatal("foreign vendor ID recognised")
	}
}

// proves: V1 (major.minor.mini parsing and order)
func TestParseAndOrder(t *testing.T) {
	v, err := Parse("1.0.1")
	if err != nil || v != Base || !v.Less(Current) || Current.Less(Base) {
		t.Fatalf("Parse/Less: %v %v", v, err)
	}
	for _, bad := range []string{"1.0", "1.0.256", "a.b.c", ""} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
