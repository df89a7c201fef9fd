package gikev2

import (
	"net/netip"
	"testing"
)

// proves: G2 (issue 17: the KEK policy's destination reaches the member:
// a group rekeyed by multicast names its address and port in
// Update.RekeyDst, which the member joins)
func TestRekeyDst(t *testing.T) {
	srv := keyServer(t, nil)
	m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
	u, _, _, _, _ := register(t, srv, NewGCKS(srv, nil), m)
	if want := netip.MustParseAddrPort("239.192.0.1:848"); u.RekeyDst != want {
		t.Fatalf("RekeyDst %v, want %v", u.RekeyDst, want)
	}
}
