package ike

import (
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: O1 (issue 11 item 11) — crypto isakmp identity address|dn|hostname
// chooses the ID we send whatever the authentication, as IOS does, and the
// peer verifies it against our certificate.
func TestIdentityKinds(t *testing.T) {
	ec := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthECDSA256}
	psk := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	cases := []struct {
		name  string
		suite Suite
		kind  Identity
		want  string
	}{
		{"ecdsa-auto", ec, IdentityAuto, "ID_DER_ASN1_DN"},
		{"ecdsa-address", ec, IdentityAddress, "ID_IPV4_ADDR 127.0.0.1/32"},
		{"ecdsa-dn", ec, IdentityDN, "ID_DER_ASN1_DN"},
		{"ecdsa-hostname", ec, IdentityHostname, "ID_FQDN"},
		{"psk-auto", psk, IdentityAuto, "ID_IPV4_ADDR 127.0.0.1/32"},
		{"psk-hostname", psk, IdentityHostname, "ID_FQDN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			creds := authCreds(t, AuthECDSA256)
			creds.PSK = pskFor("k")
			cfgI := &Config{Suites: []Suite{c.suite}, Creds: creds, Identity: c.kind, Hostname: "gm-ecdsa-256.example"}
			cfgR := &Config{Suites: []Suite{c.suite}, Creds: creds}
			p := handshake(t, cfgI, cfgR)
			ir := p.established(p.r)
			if ir == nil {
				t.Fatalf("not established: %v / %v", p.failure(p.i), p.failure(p.r))
			}
			if got := ir.PeerID.String(); len(got) < len(c.want) || got[:len(c.want)] != c.want {
				t.Fatalf("responder saw %s, want %s", got, c.want)
			}
			if c.kind == IdentityHostname && string(ir.PeerID.Data) != "gm-ecdsa-256.example" {
				t.Fatalf("FQDN %q", ir.PeerID.Data)
			}
			if c.want == "ID_DER_ASN1_DN" && ir.PeerID.IDType != isakmp.IDDERASN1DN {
				t.Fatal("not a DN")
			}
		})
	}
}
