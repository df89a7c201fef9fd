package ikev2d

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// proves: S5 (issue 17: every datagram the router drops before an
// endpoint or a role is counted and shown: not an IKEv2 header (an IKEv1
// one, a short one), a GSA_REKEY for no group held, anything but a
// GSA_REKEY on a multicast rekey socket)
func TestRouterDropsCounted(t *testing.T) {
	ctx := context.Background()
	r, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.99:848")}}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.14:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	hdr := func(version byte, exch wire.ExchangeType) []byte {
		b := make([]byte, 28)
		b[0] = 1 // SPIi
		b[17], b[18] = version, byte(exch)
		binary.BigEndian.PutUint32(b[24:], 28)
		return b
	}
	from := netip.MustParseAddrPort("127.0.0.99:848")
	var text string
	r.Do(ctx, func() {
		s := r.socks[0]
		r.handle(datagram{s: s, from: from, data: hdr(0x10, 32)})                    // IKEv1
		r.handle(datagram{s: s, from: from, data: []byte{1, 2, 3}})                  // short
		r.handle(datagram{s: s, from: from, data: hdr(0x20, wire.ExchangeGSARekey)}) // no Rekey SA held
		m := &sock{local: netip.MustParseAddrPort("239.192.0.9:848"), mcast: true}
		r.handle(datagram{s: m, from: from, data: hdr(0x20, wire.ExchangeIKESAInit)})
		text = r.showStats()
	})
	for _, want := range []string{"router_not_ikev2             2", "rekey_no_member_group        1", "multicast_not_rekey          1"} {
		if !strings.Contains(text, want) {
			t.Fatalf("missing %q in:\n%s", want, text)
		}
	}
}
