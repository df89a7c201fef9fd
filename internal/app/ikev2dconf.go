package app

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2d"
	"github.com/groupvpn/groupvpn/internal/policy"
)

// ikev2dConfig maps a configuration file to ikev2d's roles.
//
// ikev2d runs the G-IKEv2 groups of the file (client protocol gikev2
// PROFILE on a member, gikev2 PROFILE under server local; docs/config.md)
// and only those: the others are isakmpd's. The IKE SAs authenticate as
// the first such group's crypto ikev2 profile says (its keyring's
// pre-shared keys by peer address, or crypto pki's certificate and key),
// with the proposals of the crypto ikev2 policy matching the first local
// address. A file without any G-IKEv2 group is refused. The key-server
// groups' policy, rekey and authorization are isakmpd's mapping
// (daemon.Options).
func ikev2dConfig(cfg *policy.Config, addrs []netip.AddrPort, port uint16) (ikev2d.Config, error) {
	// The G-IKEv2 addresses only: those of the ordinary IKEv2 port
	// (-ikev2-port) carry no group.
	var g2 []netip.AddrPort
	for _, a := range addrs {
		if port == 0 || a.Port() == port || a.Port() == 0 {
			g2 = append(g2, a)
		}
	}
	addrs = g2
	v2KS := policy.GroupsFor(cfg.KSGroups(), policy.ProtocolGIKEv2)
	v2GM := policy.GroupsFor(cfg.GMGroups(), policy.ProtocolGIKEv2)
	if len(v2KS)+len(v2GM) == 0 {
		return ikev2d.Config{}, errors.New("no group of the file is served by G-IKEv2 (client protocol gikev2 PROFILE on a member, gikev2 PROFILE under server local: docs/config.md); the others are isakmpd's")
	}
	c := cfg
	if len(cfg.ISAKMPPolicies) == 0 {
		// daemon.Options builds isakmpd's phase 1 too, which ikev2d does
		// not use: give it one so that a G-IKEv2-only file maps.
		cc := *cfg
		cc.ISAKMPPolicies = []*policy.ISAKMPPolicy{{Priority: 1, KeyBits: 256, Hash: "sha256", Auth: policy.AuthPreShare, Group: 14, Lifetime: 24 * time.Hour}}
		c = &cc
	}
	o, err := daemon.OptionsFor(c, addrs, port, policy.ProtocolGIKEv2)
	if err != nil {
		return ikev2d.Config{}, err
	}
	rc := ikev2d.Config{Hostname: o.Hostname, Creds: o.IKE.Creds}
	keep := func(name string, gs []*policy.Group) bool {
		for _, g := range gs {
			if g.Name == name {
				return true
			}
		}
		return false
	}
	for _, g := range o.KS {
		if keep(g.Name, v2KS) {
			rc.KS = append(rc.KS, g)
		}
	}
	for _, g := range o.GM {
		if keep(g.Name, v2GM) {
			rc.GM = append(rc.GM, ikev2d.GMGroup{Name: g.Name, ID: g.ID, Servers: g.Servers, Sender: true})
		}
	}
	prof := append(v2KS, v2GM...)[0].IKEv2Profile
	if prof == nil {
		return rc, errors.New("the G-IKEv2 group names no crypto ikev2 profile")
	}
	rc.Creds = ike.Credentials{}
	if prof.UsesPSK() {
		rc.Creds.PSK = func(a netip.Addr) ([]byte, bool) {
			k := prof.PSKFor(a, "")
			if k == nil {
				return nil, false
			}
			// internal/ikev2 has one key per peer: the local one (IOS's
			// pre-shared-key local/remote differing is not supported).
			local, _ := k.Keys()
			return []byte(local), local != ""
		}
	}
	if prof.UsesCertificates() || prof.AuthLocal == policy.AuthECDSASig || prof.AuthLocal == policy.AuthRSASig {
		rc.Creds.Chain, rc.Creds.Roots = cfg.PKI.ChainDER(), cfg.PKI.Roots
		rc.CACerts = cfg.PKI.CACerts
		if prof.AuthLocal != policy.AuthPreShare {
			rc.Creds.Key = cfg.PKI.Key
		}
	}
	if prof.LocalIdentity.Type == "fqdn" {
		rc.LocalID = &ikev2.Identity{Type: wire.IDFQDN, Data: []byte(prof.LocalIdentity.FQDN)}
	}
	rc.Lifetime = prof.SALifetime()
	if len(addrs) > 0 {
		for _, p := range cfg.IKEv2ProposalsFor(addrs[0].Addr()) {
			for _, s := range p.Suites() {
				su, err := ikev2Suite(s)
				if err != nil {
					return rc, fmt.Errorf("crypto ikev2 proposal %s: %w", p.Name, err)
				}
				rc.Suites = append(rc.Suites, su)
			}
		}
	}
	return rc, nil
}

var ikev2Hash = map[string][2]uint16{ // PRF, INTEG
	"sha256": {wire.PRFHMACSHA2256, wire.IntegHMACSHA2256128},
	"sha384": {wire.PRFHMACSHA2384, wire.IntegHMACSHA2384192},
	"sha512": {wire.PRFHMACSHA2512, wire.IntegHMACSHA2512256},
}

// ikev2Suite maps one IOS-XE proposal combination to internal/ikev2's.
func ikev2Suite(s policy.IKEv2Suite) (ikev2.Suite, error) {
	out := ikev2.Suite{KeyBits: s.KeyBits, Group: uint16(s.Group)}
	switch {
	case s.AEAD:
		out.Encr = wire.EncrAESGCM16
	case strings.HasPrefix(s.Encryption, "aes-cbc-"):
		out.Encr = wire.EncrAESCBC
		h, ok := ikev2Hash[s.Integrity]
		if !ok {
			return out, fmt.Errorf("integrity %q", s.Integrity)
		}
		out.Integ = h[1]
	default:
		return out, fmt.Errorf("encryption %q", s.Encryption)
	}
	h, ok := ikev2Hash[s.PRF]
	if !ok {
		return out, fmt.Errorf("prf %q", s.PRF)
	}
	out.PRF = h[0]
	return out, nil
}
