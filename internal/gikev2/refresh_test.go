package gikev2

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S2 (issue 18 F4: a G-IKEv2 registration whose refresh replaces
// ks's TEK, starting a wider generation of Sender-IDs, is answered with the
// new TEK and the width ks allocated its IDs at, not the Rekeyer's cached
// group: old TEK and GWP_SENDER_ID_BITS 16 for a 17-bit ID gave two members
// identical GCM nonces)
func TestRegistrationAfterRefreshGetsFreshKeysAndWidth(t *testing.T) {
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	kwk := KWK{Alg: DefaultKWA, Key: make([]byte, 32)}
	reg := func(i int, at time.Time) (*Member, *Update) {
		m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
		r, err := ParseRequest(m.Request().Payloads())
		if err != nil {
			t.Fatal(err)
		}
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 848)
		ps, err := gcks.Register(ks.Peer{Addr: a, Identity: a.String()}, r, kwk, at)
		if err != nil {
			t.Fatal(err)
		}
		u, err := m.Registered(ps, kwk, at)
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		return m, u
	}
	reg(0, t0) // the Rekeyer exists, with the first TEK
	// Enough GDOI members that the next generation is 17 bits wide.
	for i := 1; i < 13_200; i++ {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), 848)
		if _, _, err := srv.Keys(ks.Peer{Addr: a}, isakmp.GroupID(groupID), 1, t0); err != nil {
			t.Fatal(err)
		}
	}
	late := t0.Add(55 * time.Minute) // the key's last tenth: Join refreshes it
	m, u := reg(1, late)
	st, err := srv.KeysState("G", late)
	if err != nil {
		t.Fatal(err)
	}
	sids, bits := m.SenderIDs()
	if srv.SIDBits("G") <= ks.MinSIDBits {
		t.Fatalf("ks hands out %d-bit IDs after the refresh: the test needs a wider generation", srv.SIDBits("G"))
	}
	if u.TEKs[0].SPI != st.TEKs[0].SPI {
		t.Errorf("registrant got TEK %#x, ks hands out %#x", u.TEKs[0].SPI, st.TEKs[0].SPI)
	}
	if bits != srv.SIDBits("G") {
		t.Errorf("registrant told %d-bit IDs %v, ks allocated them at %d", bits, sids, srv.SIDBits("G"))
	}
}
