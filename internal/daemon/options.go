// Package daemon turns a parsed configuration into a running isakmpd: the
// node options for its KS and GM roles, the operator's control socket with
// the show commands, and logging.
package daemon

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// DefaultPort is the GDOI port (RFC 6407 §2). The lab and tests use
// unprivileged ports instead.
const DefaultPort = 848

var hashes = map[string]ike.HashAlg{"sha": ike.SHA1, "sha256": ike.SHA256, "sha384": ike.SHA384, "sha512": ike.SHA512}

// phase1 builds the phase-1 policy from crypto isakmp policy, keys and PKI.
func phase1(c *policy.Config) (*ike.Config, error) {
	cfg := &ike.Config{Version: c.AnnouncedVersion(), DOI: isakmp.DOIGDOI, Creds: ike.Credentials{
		PSK: c.PSKFor, Chain: c.PKI.ChainDER(), Key: c.PKI.Key, Roots: c.PKI.Roots}}
	cfg.DPD = dpd(c.Keepalive)
	switch c.Identity { // crypto isakmp identity, as IOS: whatever the authentication
	case policy.IdentityDN:
		cfg.Identity = ike.IdentityDN
	case policy.IdentityHostname:
		cfg.Identity, cfg.Hostname = ike.IdentityHostname, c.Hostname
	default:
		cfg.Identity = ike.IdentityAddress
	}
	for _, p := range c.ISAKMPPolicies {
		s := ike.Suite{KeyBits: p.KeyBits, Hash: hashes[p.Hash], Group: uint16(p.Group), Lifetime: p.Lifetime}
		switch p.Auth {
		case policy.AuthPreShare:
			s.Auth = ike.AuthPSK
		case policy.AuthRSASig:
			s.Auth = ike.AuthRSA
		case policy.AuthECDSASig:
			k, ok := c.PKI.Key.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("crypto isakmp policy %d: ecdsa-sig needs an EC key (crypto pki key file)", p.Priority)
			}
			s.Auth = map[int]ike.AuthMethod{256: ike.AuthECDSA256, 384: ike.AuthECDSA384, 521: ike.AuthECDSA521}[k.Curve.Params().BitSize]
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("crypto isakmp policy %d: %w", p.Priority, err)
		}
		cfg.Suites = append(cfg.Suites, s)
	}
	if len(cfg.Suites) == 0 {
		return nil, errors.New("no crypto isakmp policy is configured")
	}
	return cfg, nil
}

// dpd maps crypto isakmp keepalive to the endpoints' dead peer detection.
func dpd(k policy.Keepalive) ike.DPD {
	if k.Seconds == 0 {
		return ike.DPD{}
	}
	return ike.DPD{Interval: time.Duration(k.Seconds) * time.Second, Retry: time.Duration(k.RetrySeconds()) * time.Second,
		Periodic: k.Periodic}
}

var integrity = map[policy.Integrity]uint16{"sha": isakmp.AuthAlgHMACSHA1, "sha256": isakmp.AuthAlgHMACSHA256,
	"sha384": isakmp.AuthAlgHMACSHA384, "sha512": isakmp.AuthAlgHMACSHA512}

// tekPolicy maps one sa ipsec N to the KS's TEK policy: the profile's first
// transform set and the permit entries of the match ACL.
func tekPolicy(sa *policy.SAIPsec) (ks.TEKPolicy, error) {
	if sa.Profile == nil || len(sa.Profile.TransformSets) == 0 || sa.MatchACL == nil {
		return ks.TEKPolicy{}, fmt.Errorf("sa ipsec %d needs a profile with a transform set and match address", sa.Seq)
	}
	ts := sa.Profile.TransformSets[0]
	p := ks.TEKPolicy{KeyBits: ts.ESPKeyBits, Lifetime: sa.Profile.Lifetime, ReplayWindow: sa.ReplayWindow,
		ACLName: sa.MatchACL.Name, ProfileName: sa.Profile.Name}
	switch sa.Replay {
	case policy.ReplayCounter:
		p.Replay = isakmp.ReplayCounter
	case policy.ReplayTime:
		p.Replay = isakmp.ReplayTime
	case policy.ReplayNone:
		p.Replay = isakmp.ReplayNone
	}
	switch ts.ESP {
	case policy.ESPAES:
		p.Transform, p.AuthAlg = isakmp.ESPAESCBC, integrity[ts.ESPAuth]
		if p.AuthAlg == 0 {
			return p, fmt.Errorf("sa ipsec %d: transform set %s: esp-aes needs esp-sha*-hmac", sa.Seq, ts.Name)
		}
	case policy.ESPGCM:
		p.Transform = isakmp.ESPAESGCM16
	case policy.ESPGMAC:
		p.Transform = isakmp.ESPAESGMAC
	default:
		return p, fmt.Errorf("sa ipsec %d: transform set %s: only ESP is supported", sa.Seq, ts.Name)
	}
	for _, e := range sa.MatchACL.Entries {
		sel := ks.Selector{Proto: uint8(max(e.Protocol, 0)), Src: e.Src, Dst: e.Dst,
			SrcPort: uint16(e.SrcPort), DstPort: uint16(e.DstPort)}
		if e.Action == policy.Deny {
			// Passed in the clear by GMs, in ACL order (SPEC E3).
			p.Bypass = append(p.Bypass, ks.Bypass{Before: len(p.Selectors), Selector: sel})
			continue
		}
		p.Selectors = append(p.Selectors, sel)
	}
	if len(p.Selectors) == 0 {
		return p, fmt.Errorf("sa ipsec %d: access list %s permits nothing", sa.Seq, sa.MatchACL.Name)
	}
	return p, nil
}

// Options maps a configuration to isakmpd's node options: its GDOI groups
// only. The G-IKEv2 groups of the file (LeftToIKEv2d) are ikev2d's, so a
// file read by both daemons gives every group one key owner. listen are
// the addresses to bind; port is the port of the KS addresses GMs contact.
func Options(c *policy.Config, listen []netip.AddrPort, port uint16) (node.Options, error) {
	o, err := OptionsFor(c, listen, port, policy.ProtocolGDOI)
	if err != nil && len(o.KS) == 0 && len(o.GM) == 0 && len(LeftToIKEv2d(c)) > 0 {
		return o, fmt.Errorf("%w (its G-IKEv2 groups %s are ikev2d's)", err, strings.Join(LeftToIKEv2d(c), ", "))
	}
	return o, err
}

// LeftToIKEv2d returns the names of c's groups that isakmpd does not run
// because their members register by G-IKEv2 (client protocol gikev2
// PROFILE, gikev2 PROFILE under server local): ikev2d owns them.
func LeftToIKEv2d(c *policy.Config) []string {
	var names []string
	for _, g := range append(policy.GroupsFor(c.KSGroups(), policy.ProtocolGIKEv2), policy.GroupsFor(c.GMGroups(), policy.ProtocolGIKEv2)...) {
		if !slices.Contains(names, g.Name) {
			names = append(names, g.Name)
		}
	}
	return names
}

// OptionsFor maps the groups of c whose members register with protocol pr
// (policy.GroupsFor) to node options: ProtocolGDOI for isakmpd (Options),
// ProtocolGIKEv2 for ikev2d, which maps its groups' policy, rekey and
// authorization as isakmpd does.
func OptionsFor(c *policy.Config, listen []netip.AddrPort, port uint16, pr policy.Protocol) (node.Options, error) {
	ikeCfg, err := phase1(c)
	if err != nil {
		return node.Options{}, err
	}
	o := node.Options{Hostname: c.Hostname, Listen: listen, IKE: ikeCfg}
	for _, g := range policy.GroupsFor(c.KSGroups(), pr) {
		s := g.Server
		kg := ks.GroupConfig{Name: g.Name, ID: g.Identity, Address: s.Address, KEKKeyBits: s.RekeyKeyBits, KEKLifetime: s.RekeyLifetime,
			Rekey: ks.RekeyPolicy{Unicast: true, Retransmit: s.RekeyRetransmit, Retransmits: s.RekeyRetransmits}, ReceiveOnly: s.ReceiveOnly,
			Redundancy: redundancy(c, s.Redundancy)}
		if s.Mode() == policy.RekeyMulticast {
			_, grp, ok := s.MulticastRekey()
			if !ok {
				return o, fmt.Errorf("crypto gdoi group %s: rekey address ipv4 %s has no permit entry with a multicast host destination", g.Name, s.RekeyACLName)
			}
			port := uint16(DefaultPort)
			for _, e := range s.RekeyACL.Permits() {
				if e.Dst.Addr() == grp && e.DstPort != 0 {
					port = uint16(e.DstPort)
					break
				}
			}
			kg.Rekey.Unicast = false
			kg.Rekey.Multicast = netip.AddrPortFrom(grp, port)
			kg.Rekey.TTL = s.RekeyTTL
			if kg.Rekey.TTL == 0 {
				kg.Rekey.TTL = policy.DefaultRekeyTTL
			}
			kg.Rekey.Interface = s.RekeyInterface
		}
		if !kg.Address.IsValid() && len(listen) > 0 {
			kg.Address = listen[0].Addr()
		}
		if s.RekeyKey != nil {
			kg.SigningKey = s.RekeyKey.Signer
		}
		for _, sa := range s.SAs {
			p, err := tekPolicy(sa)
			if err != nil {
				return o, fmt.Errorf("crypto gdoi group %s: %w", g.Name, err)
			}
			kg.TEKs = append(kg.TEKs, p)
		}
		kg.Authorize = func(peer ks.Peer) error {
			if !s.AuthorizeAddress(peer.Addr.Addr()) {
				return fmt.Errorf("address %s is not permitted by authorization address ipv4 %s", peer.Addr.Addr(), s.AuthorizationACLName)
			}
			dn := peer.CertSubject
			if len(s.AuthorizationIdentities) > 0 && !s.AuthorizeIdentity(dn) {
				return fmt.Errorf("identity %q matches no authorization identity (%s)", dn, strings.Join(s.AuthorizationIdentities, ", "))
			}
			return nil
		}
		o.KS = append(o.KS, kg)
	}
	for _, g := range policy.GroupsFor(c.GMGroups(), pr) {
		gg := node.GMGroup{Name: g.Name, ID: g.Identity, SIDs: 1, FailClose: c.FailCloseFor(g)}
		if gg.FailClose {
			gg.FailCloseBypass = failCloseBypass(c.FailCloseDenies(g))
		}
		for _, a := range g.Servers {
			gg.Servers = append(gg.Servers, netip.AddrPortFrom(a.Addr, port))
		}
		o.GM = append(o.GM, gg)
	}
	if len(o.KS) == 0 && len(o.GM) == 0 {
		return o, errors.New("the configuration has no crypto gdoi group with server local (KS) or applied through a crypto map (GM)")
	}
	return o, nil
}

// redundancy maps `redundancy` to the KS group's COOP configuration
// (nil: a lone KS). IOS's default local priority is 1.
func redundancy(c *policy.Config, r *policy.Redundancy) *ks.Redundancy {
	if r == nil {
		return nil
	}
	auth := map[netip.Addr]ks.PeerAuth{}
	for i, a := range r.Peers {
		// How the peer is authenticated as a KS (docs/coop.md "Peer
		// authorization"): a key for exactly its address, or its
		// certificate subject.
		auth[a] = ks.PeerAuth{PSK: c.HostPSK(a), Identity: r.PeerIdentity(i)}
	}
	return &ks.Redundancy{Priority: uint8(max(min(r.LocalPriority, 255), 1)), Peers: append([]netip.Addr(nil), r.Peers...),
		Period: r.Period, Dead: r.Dead, ElectionWait: r.ElectionWait, PeerAuth: auth}
}

// failCloseBypass maps the deny entries of a fail-close ACL to the Bypass
// entries of the member's bootstrap policy (gm.Bootstrap).
func failCloseBypass(denies []*policy.ACE) []sadb.PolicyEntry {
	var out []sadb.PolicyEntry
	for _, e := range denies {
		out = append(out, sadb.PolicyEntry{Action: sadb.Bypass, IPProto: uint8(max(e.Protocol, 0)), Src: e.Src, Dst: e.Dst,
			SrcPort: uint16(e.SrcPort), DstPort: uint16(e.DstPort)})
	}
	return out
}
