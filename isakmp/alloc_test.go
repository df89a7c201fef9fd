package isakmp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
)

// proves: N1 (issue 18: the KS encodes a group policy per registration) —
// a GDOI SA payload is encoded with no allocation of its own: its length
// and body cost what its attribute payloads' do (it listed them in a new
// slice each time it was asked, several times per encoding, before).
func TestGroupSAEncodingAllocations(t *testing.T) {
	sa := goldenGroupSA()
	tek2 := *sa.TEKs[0]
	tek2.SPI++
	sa.TEKs = append(sa.TEKs, &tek2)
	buf := make([]byte, 0, 4096)
	parts := []Payload{sa.KEK, sa.GAP, sa.TEKs[0], sa.TEKs[1]}
	alone := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		for _, p := range parts {
			b, _ = AppendPayload(b, p, PayloadNone)
		}
	})
	whole := testing.AllocsPerRun(100, func() { AppendPayload(buf[:0], sa, PayloadNone) })
	t.Logf("the SA payload: %.0f allocations, its parts alone %.0f", whole, alone)
	if whole > alone {
		t.Fatalf("encoding the SA payload makes %.0f allocations, its parts %.0f", whole, alone)
	}
}

// proves: N1 (issue 18: the KS builds the selectors of its group policy
// per registration) — PrefixEndpoint is the endpoint of AddrID's or
// PrefixID's identity, for addresses and subnets of both families (the
// odd ones too), in one allocation (3 before, with the identity and the
// mask apart).
func TestPrefixEndpoint(t *testing.T) {
	for _, s := range []string{"10.1.2.3/32", "10.1.0.0/16", "10.1.2.3/16", "0.0.0.0/0", "192.0.2.1/25",
		"2001:db8::1/128", "2001:db8::/32", "::/0", "::ffff:10.0.0.1/128", "::ffff:10.0.0.0/104"} {
		p := netip.MustParsePrefix(s)
		var id *ID
		if p.Bits() == p.Addr().BitLen() {
			id = AddrID(p.Addr())
		} else {
			id = PrefixID(p, 0, 0)
		}
		e := PrefixEndpoint(p, 848)
		if e.IDType != id.IDType || e.Port != 848 || !bytes.Equal(e.Data, id.Data) {
			t.Fatalf("%s: %v, want %v %x", s, e, id.IDType, id.Data)
		}
	}
	p := netip.MustParsePrefix("10.1.0.0/16")
	if n := testing.AllocsPerRun(100, func() { PrefixEndpoint(p, 0) }); n > 2 {
		t.Fatalf("PrefixEndpoint makes %.0f allocations, want at most 2 (1 here)", n)
	}
}

// proves: N1 (issue 18: the KS names each member's identity per
// registration) — an address or subnet identity's String is what
// fmt's "%s %s" of its type and prefix wrote, with fewer allocations.
func TestIDStringWithoutFmt(t *testing.T) {
	for _, id := range []*ID{AddrID(netip.MustParseAddr("10.1.2.3")), AddrID(netip.MustParseAddr("2001:db8::7")),
		PrefixID(netip.MustParsePrefix("10.1.0.0/16"), 0, 0), PrefixID(netip.MustParsePrefix("2001:db8::/48"), 0, 0),
		PrefixID(netip.MustParsePrefix("10.1.0.0/16"), 17, 848)} {
		pfx, err := id.Prefix()
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s %s", id.IDType, pfx)
		if id.ProtocolID != 0 || id.Port != 0 {
			want += fmt.Sprintf(" proto=%d port=%d", id.ProtocolID, id.Port)
		}
		if got := id.String(); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	id := AddrID(netip.MustParseAddr("10.1.2.3"))
	pfx, _ := id.Prefix()
	viaFmt := testing.AllocsPerRun(100, func() { _ = fmt.Sprintf("%s %s", id.IDType, pfx) })
	got := testing.AllocsPerRun(100, func() { _ = id.String() })
	t.Logf("ID.String: %.0f allocations, with fmt %.0f", got, viaFmt)
	if got >= viaFmt {
		t.Fatalf("ID.String makes %.0f allocations, fmt %.0f", got, viaFmt)
	}
}

// proves: N1 (issue 18: the KS names each member's identity per
// registration) — an address or subnet identity's text is what fmt's
// "%s %s" of its type and prefix writes, in one allocation; ports and
// other types keep their texts.
func TestIDStringAddressOneAllocation(t *testing.T) {
	var ids []*ID
	for _, s := range []string{"10.1.2.3", "2001:db8::1", "::ffff:10.0.0.1"} {
		ids = append(ids, AddrID(netip.MustParseAddr(s)))
	}
	for _, s := range []string{"10.1.0.0/16", "0.0.0.0/0", "10.1.2.3/32", "2001:db8::/48"} {
		ids = append(ids, PrefixID(netip.MustParsePrefix(s), 0, 0))
	}
	for _, id := range ids {
		p, err := id.Prefix()
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s %s", id.IDType, p)
		if got := id.String(); got != want {
			t.Fatalf("String = %q, want %q", got, want)
		}
		if n := testing.AllocsPerRun(100, func() { _ = id.String() }); n > 1 {
			t.Fatalf("%s: %.0f allocations, want 1", want, n)
		}
	}
	id := AddrID(netip.MustParseAddr("10.1.2.3"))
	id.ProtocolID, id.Port = 17, 848
	if got := id.String(); got != "ID_IPV4_ADDR 10.1.2.3/32 proto=17 port=848" {
		t.Fatalf("with a port: %q", got)
	}
	if got := (&ID{IDType: IDFQDN, Data: []byte("gm.example")}).String(); got != `ID_FQDN "gm.example"` {
		t.Fatalf("FQDN: %q", got)
	}
}
