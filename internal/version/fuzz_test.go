package version

import (
	"bytes"
	"testing"
)

// FuzzFromVendorID feeds arbitrary Vendor ID payload data (what any peer
// sends in MM1/MM2) to the version recogniser.
//
// proves: S4 (issue 11: a fuzz target for the version Vendor ID)
func FuzzFromVendorID(f *testing.F) {
	f.Add(Current.VendorID())
	f.Add(Base.VendorID())
	f.Add(Version{255, 255, 255}.VendorID())
	f.Add([]byte(vidMagic))
	f.Add(append(Current.VendorID(), 0))
	f.Add([]byte("CISCO-GDOI-1.0.2"))
	f.Add([]byte{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f}) // RFC 3706 DPD
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := FromVendorID(b)
		if !ok {
			if !v.IsZero() {
				t.Fatalf("not recognised but version %v", v)
			}
			return
		}
		// recognised: exactly the encoding of the version it returns
		if !bytes.Equal(v.VendorID(), b) {
			t.Fatalf("FromVendorID(%x) = %v, which encodes as %x", b, v, v.VendorID())
		}
		if p, err := Parse(v.String()); err != nil || p != v {
			t.Fatalf("Parse(%q) = %v, %v", v.String(), p, err)
		}
	})
}

// FuzzParse feeds arbitrary text to Parse (configuration and show input).
//
// proves: S4
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.0.2", "1.0.1", "255.255.255", "1.0", "1.0.256", "a.b.c", "", "1..2", "+1.0.2", "01.0.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		if w, err := Parse(v.String()); err != nil || w != v {
			t.Fatalf("Parse(%q) = %v, which does not round-trip: %v %v", s, v, w, err)
		}
	})
}
