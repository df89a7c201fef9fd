package ikev2d

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: G2, G4 (issue 17: G-IKEv2 with ECDSA certificates on both sides
// and authorization: the KS's `authorization identity` (ks.GroupConfig
// Authorize on the certificate subject) admits one member, whose subject
// the KS lists, and refuses the other with AUTHORIZATION_FAILED in
// GSA_AUTH: no IKE SA, no keys)
func TestRouterCertificatesAndAuthorization(t *testing.T) {
	ctx := context.Background()
	ca := testnet.NewCA(t, "groupvpn test CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	creds := func(cn string) ike.Credentials {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c := ca.Issue(t, cn, key)
		return ike.Credentials{Chain: [][]byte{c.Cert.Raw}, Key: c.Key, Roots: roots}
	}
	g := ksGroup(t)
	g.Authorize = func(p ks.Peer) error {
		if !strings.Contains(p.CertSubject, "CN=gm-ok") {
			return errors.New("identity matches no authorization identity")
		}
		return nil
	}
	kr, err := New(Config{Creds: creds("ks"), KS: []ks.GroupConfig{g}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	member := func(addr, cn string) (*Router, sadb.Dataplane) {
		dp := sadb.NewMemory()
		gr, err := New(Config{Creds: creds(cn), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
			Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(addr)}, Dataplane: dp})
		if err != nil {
			t.Fatal(err)
		}
		run(t, gr)
		return gr, dp
	}
	status := func(r *Router) (s MemberStatus) { r.Do(ctx, func() { s = r.Members()[0] }); return }
	ok, okDP := member("127.0.0.10:0", "gm-ok")
	bad, badDP := member("127.0.0.11:0", "gm-bad")
	waitFor(t, "gm-ok registering with its certificate", func() bool { return status(ok).Registered && len(okDP.TEKs()) == 1 })
	waitFor(t, "gm-bad refused", func() bool { return status(bad).Failures > 0 })
	if s := status(bad); s.Registered || !strings.Contains(s.LastError, "AUTHORIZATION_FAILED") || len(badDP.TEKs()) != 0 {
		t.Fatalf("gm-bad: %+v, %d TEKs", s, len(badDP.TEKs()))
	}
	var listed string
	kr.Do(ctx, func() { listed = kr.showMembers() })
	if !strings.Contains(listed, "CN=gm-ok") || strings.Contains(listed, "gm-bad") {
		t.Fatalf("the KS's members:\n%s", listed)
	}
}
