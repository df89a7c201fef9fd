package policy

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/groupvpn/groupvpn/internal/keystore"
)

// resolve links references and checks what only the whole configuration
// can tell.
func (p *parser) resolve() {
	c := p.cfg
	k := &c.PKI

	// Our certificate identity.
	switch {
	case k.Chain != nil && k.Key == nil:
		p.errAt(k.CertLine, "crypto pki certificate file %s needs crypto pki key file PATH (its private key)", k.CertPath)
	case k.Chain == nil && k.Key != nil:
		p.errAt(k.KeyLine, "crypto pki key file %s needs crypto pki certificate file PATH (its certificate)", k.KeyPath)
	case k.Chain != nil && !publicKeyEqual(k.Chain[0], k.Key):
		p.errAt(k.CertLine, "crypto pki certificate file %s: the certificate is not for the key in crypto pki key file %s (line %d)", k.CertPath, k.KeyPath, k.KeyLine)
	}
	if c.Identity == IdentityDN && k.Chain == nil {
		p.errAt(c.IdentityLine, "crypto isakmp identity dn needs crypto pki certificate file PATH")
	}
	if c.Identity == IdentityHostname && c.Hostname == "" {
		p.errAt(c.IdentityLine, "crypto isakmp identity hostname needs hostname NAME")
	}

	// Phase 1.
	for _, pol := range c.ISAKMPPolicies {
		switch pol.Auth {
		case AuthPreShare:
			if len(c.ISAKMPKeys) == 0 {
				p.errAt(pol.Line, "crypto isakmp policy %d: authentication pre-share but no crypto isakmp key is configured", pol.Priority)
			}
		case AuthRSASig, AuthECDSASig:
			var missing []string
			if k.CertPath == "" {
				missing = append(missing, "crypto pki certificate file")
			}
			if k.KeyPath == "" {
				missing = append(missing, "crypto pki key file")
			}
			if k.CAPath == "" {
				missing = append(missing, "crypto pki ca file")
			}
			if len(missing) > 0 {
				p.errAt(pol.Line, "crypto isakmp policy %d: authentication %s needs %s", pol.Priority, pol.Auth, strings.Join(missing, ", "))
				continue
			}
			if k.Key == nil {
				continue // its file already failed
			}
			_, isRSA := k.Key.(*rsa.PrivateKey)
			if pol.Auth == AuthRSASig && !isRSA {
				p.errAt(pol.Line, "crypto isakmp policy %d: authentication rsa-sig needs an RSA key, crypto pki key file %s is EC (use ecdsa-sig)", pol.Priority, k.KeyPath)
			}
			if pol.Auth == AuthECDSASig && isRSA {
				p.errAt(pol.Line, "crypto isakmp policy %d: authentication ecdsa-sig needs an EC key, crypto pki key file %s is RSA (use rsa-sig)", pol.Priority, k.KeyPath)
			}
		}
	}

	// Profiles.
	for _, pr := range c.Profiles {
		pr.TransformSets = nil
		if len(pr.TransformSetNames) == 0 {
			p.errAt(pr.Line, "crypto ipsec profile %s: set transform-set is required", pr.Name)
		}
		for _, n := range pr.TransformSetNames {
			ts := c.TransformSet(n)
			if ts == nil {
				p.errAt(pr.TransformSetLine, "crypto ipsec profile %s: transform-set %q is not defined", pr.Name, n)
				continue
			}
			pr.TransformSets = append(pr.TransformSets, ts)
		}
	}

	// Groups.
	ids := map[uint32]*Group{}
	for _, g := range c.Groups {
		if g.Identity == 0 {
			if g.IdentityLine == 0 {
				p.errAt(g.Line, "crypto gdoi group %s: identity number is required", g.Name)
			}
		} else if o := ids[g.Identity]; o != nil {
			p.errAt(g.IdentityLine, "crypto gdoi group %s: identity number %d is already used by group %s (line %d)", g.Name, g.Identity, o.Name, o.IdentityLine)
		} else {
			ids[g.Identity] = g
		}
		switch {
		case g.Server != nil && len(g.Servers) > 0:
			p.errAt(g.Servers[0].Line, "crypto gdoi group %s: server address ipv4 (group member) and server local (key server, line %d) cannot both be configured", g.Name, g.Server.Line)
		case g.Server == nil && len(g.Servers) == 0:
			p.errAt(g.Line, "crypto gdoi group %s: neither server local (key server) nor server address ipv4 (group member) is configured", g.Name)
		case g.Server != nil:
			p.resolveServer(g)
		}
		if len(c.ISAKMPPolicies) == 0 && (g.Server != nil || len(g.Servers) > 0) && g.Protocol() == ProtocolGDOI {
			p.errAt(g.Line, "crypto gdoi group %s: registration needs phase 1, but no crypto isakmp policy is configured", g.Name)
		}
	}

	p.resolveIKEv2()

	// Crypto maps and interfaces.
	for _, e := range c.CryptoMaps {
		e.Group = nil
		switch g := c.Group(e.GroupName); {
		case e.GroupName == "":
			p.errAt(e.Line, "crypto map %s %d: set group is required", e.Map, e.Seq)
		case g == nil:
			p.errAt(e.GroupLine, "crypto map %s %d: group %q is not defined", e.Map, e.Seq, e.GroupName)
		case g.Server != nil:
			p.errAt(e.GroupLine, "crypto map %s %d: group %s is served here (server local); a key server cannot be a member of its own group", e.Map, e.Seq, g.Name)
		default:
			e.Group = g
		}
	}
	for _, f := range c.FailClose {
		p.resolveFailClose(f)
	}
	for _, ifc := range c.Interfaces {
		ifc.Entries = nil
		if ifc.CryptoMap == "" {
			continue
		}
		for _, e := range c.CryptoMaps {
			if e.Map == ifc.CryptoMap {
				ifc.Entries = append(ifc.Entries, e)
			}
		}
		if ifc.Entries == nil {
			p.errAt(ifc.CryptoMapLine, "interface %s: crypto map %q is not defined", ifc.Name, ifc.CryptoMap)
		}
	}
}

// resolveFailClose checks the match address ACL of a fail-close block:
// defined, extended, deny entries only (the traffic let through in the
// clear; IOS refuses a permit entry there too).
func (p *parser) resolveFailClose(f *FailClose) {
	f.MatchACL = nil
	if f.MatchACLName == "" {
		return
	}
	where := "crypto map " + f.Map + " gdoi fail-close: match address " + f.MatchACLName
	acl := p.cfg.ACL(f.MatchACLName)
	switch {
	case acl == nil:
		p.errAt(f.MatchLine, "%s: access list %q is not defined", where, f.MatchACLName)
		return
	case acl.Standard:
		p.errAt(f.MatchLine, "%s: needs an extended access list; %q is standard", where, acl.Name)
		return
	}
	bad := false
	for _, e := range acl.Permits() {
		p.errAt(f.MatchLine, "%s: entry %q (line %d) is a permit entry; a fail-close access list takes deny entries only (the traffic passed in the clear while fail-close drops the rest)", where, e.render(false), e.Line)
		bad = true
	}
	if !bad {
		f.MatchACL = acl
	}
}

// storedKey finds the rekey key of s in the key store, when no crypto
// key import line names it; nil (and the reason, as an error) otherwise.
func (p *parser) storedKey(s *ServerLocal) *KeyPair {
	label, typ := s.RekeyKeyLabel, s.RekeyKeyType
	st := p.cfg.opts.KeyStore
	var why string
	if st != nil {
		k, err := st.Get(label)
		if err == nil {
			return &KeyPair{Type: k.Type, Label: label, Path: k.Path, Signer: k.Signer, Store: st.Dir()}
		}
		if !errors.Is(err, keystore.ErrNotFound) {
			p.errAt(s.RekeyKeyLine, "rekey authentication mypubkey %s %s: the key store cannot give it: %v", typ, label, err)
			return nil
		}
		why = fmt.Sprintf("neither a crypto key import line nor the key store %s has it", st.Dir())
	} else {
		why = "no crypto key import line names it (and no key store was given)"
	}
	how := fmt.Sprintf("generate it in the key store (groupvpn key -c 'crypto key generate %s", typ)
	if typ == "ec" {
		how += " keysize 256 label " + label + "'"
	} else {
		how += " general-keys label " + label + " modulus 2048'"
	}
	how += "; groupvpn cli once isakmpd runs)"
	how += fmt.Sprintf(", import the one the other key servers use (crypto key import %s %s pem terminal), or name a file (crypto key import %s %s file PATH)", typ, label, typ, label)
	if line := p.generated[label]; line != 0 {
		p.errAt(s.RekeyKeyLine, "rekey authentication: key %q was generated on IOS (crypto key generate, line %d) and %s; a key server cannot sign rekeys without it: export it from the IOS key server (crypto key export rsa %s pem terminal 3des PASSPHRASE) and import it (crypto key import %s %s pem terminal: it asks for the passphrase), or %s", label, line, why, label, typ, label, how)
		return nil
	}
	p.errAt(s.RekeyKeyLine, "rekey authentication: key %q is not defined: %s; %s", label, why, how)
	return nil
}

func (p *parser) resolveServer(g *Group) {
	c, s := p.cfg, g.Server
	if len(s.SAs) == 0 {
		p.errAt(s.Line, "crypto gdoi group %s: server local has no sa ipsec; a key server needs at least one", g.Name)
	}
	for _, sa := range s.SAs {
		sa.Profile, sa.MatchACL = nil, nil
		switch pr := c.Profile(sa.ProfileName); {
		case sa.ProfileName == "":
			p.errAt(sa.Line, "sa ipsec %d: profile NAME is required", sa.Seq)
		case pr == nil:
			p.errAt(sa.ProfileLine, "sa ipsec %d: profile %q is not defined", sa.Seq, sa.ProfileName)
		default:
			sa.Profile = pr
		}
		switch acl := c.ACL(sa.MatchACLName); {
		case sa.MatchACLName == "":
			p.errAt(sa.Line, "sa ipsec %d: match address ipv4 ACL is required", sa.Seq)
		case acl == nil:
			p.errAt(sa.MatchLine, "sa ipsec %d: access list %q is not defined", sa.Seq, sa.MatchACLName)
		case acl.Standard:
			p.errAt(sa.MatchLine, "sa ipsec %d: match address needs an extended access list; %q is standard", sa.Seq, acl.Name)
		case len(acl.Permits()) == 0:
			p.errAt(sa.MatchLine, "sa ipsec %d: access list %q has no permit entry, so the SA would protect nothing", sa.Seq, acl.Name)
		default:
			sa.MatchACL = acl
		}
	}

	s.RekeyKey, s.RekeyACL, s.AuthorizationACL = nil, nil, nil
	if s.RekeyKeyLabel != "" {
		k := c.Key(s.RekeyKeyLabel)
		if k == nil {
			k = p.storedKey(s)
		}
		switch {
		case k == nil:
			// storedKey said why
		case k.Type != s.RekeyKeyType && k.Store != "":
			p.errAt(s.RekeyKeyLine, "rekey authentication mypubkey %s %s: key %s in the key store %s is %s, not %s", s.RekeyKeyType, s.RekeyKeyLabel, k.Label, k.Store, keystore.Upper(k.Type), keystore.Upper(s.RekeyKeyType))
		case k.Type != s.RekeyKeyType:
			p.errAt(s.RekeyKeyLine, "rekey authentication mypubkey %s %s: key %s (line %d) is %s, not %s", s.RekeyKeyType, s.RekeyKeyLabel, k.Label, k.Line, k.Type, s.RekeyKeyType)
		default:
			s.RekeyKey = k
		}
		if !s.RekeyUnicast && s.RekeyACLName == "" {
			p.errAt(s.RekeyKeyLine, "crypto gdoi group %s: rekeys have no transport; add rekey address ipv4 ACL (multicast) or rekey transport unicast", g.Name)
		}
	} else {
		if s.RekeyACLName != "" {
			p.errAt(s.RekeyACLLine, "rekey address ipv4 needs rekey authentication mypubkey {rsa | ec} LABEL (rekeys are signed)")
		}
		if s.RekeyUnicast {
			p.errAt(s.RekeyUnicastLine, "rekey transport unicast needs rekey authentication mypubkey {rsa | ec} LABEL (rekeys are signed)")
		}
	}
	if s.RekeyACLName != "" {
		switch acl := c.ACL(s.RekeyACLName); {
		case acl == nil:
			p.errAt(s.RekeyACLLine, "rekey address ipv4: access list %q is not defined", s.RekeyACLName)
		case acl.Standard:
			p.errAt(s.RekeyACLLine, "rekey address ipv4: %q is a standard access list; it must be extended (permit udp host KS eq 848 host GROUP eq 848)", acl.Name)
		default:
			s.RekeyACL = acl
			if _, _, ok := s.MulticastRekey(); !ok {
				p.errAt(s.RekeyACLLine, "rekey address ipv4: access list %q has no permit entry with a multicast host destination (e.g. permit udp host 10.0.0.1 eq 848 host 239.192.1.1 eq 848)", acl.Name)
				s.RekeyACL = nil
			}
		}
	}
	if s.Redundancy != nil {
		p.resolveRedundancy(g)
	}
	if s.AuthorizationACLName != "" {
		if acl := c.ACL(s.AuthorizationACLName); acl == nil {
			p.errAt(s.AuthorizationACLLine, "authorization address ipv4: access list %q is not defined", s.AuthorizationACLName)
		} else {
			s.AuthorizationACL = acl
		}
	}
}

// HostPSK reports whether a pre-shared key is configured for exactly
// addr (`crypto isakmp key K address A` without a mask, or a /32 or
// /128): such a key authenticates a peer key server as that KS (a
// wildcard or prefix key may be held by members too).
func (c *Config) HostPSK(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, k := range c.ISAKMPKeys {
		if k.Prefix.IsSingleIP() && k.Prefix.Addr().Unmap() == addr {
			return true
		}
	}
	return false
}

// PeerIdentity is the `identity SUBJECT` of peer i ("": none).
func (r *Redundancy) PeerIdentity(i int) string {
	if i < len(r.PeerIdentities) {
		return r.PeerIdentities[i]
	}
	return ""
}

// resolveRedundancy checks what a `redundancy` block can only be checked
// against with the rest of server local: the KS's own address among its
// peers, and the timers together (the dead interval must outlast the
// announcement period). A group whose rekeys are not signed gets a note:
// its KSs have no rekey key to share, so its members keep keys fresh by
// registering again (docs/config.md).
func (p *parser) resolveRedundancy(g *Group) {
	s := g.Server
	r := s.Redundancy
	if !s.Address.IsValid() {
		p.errAt(r.Line, "crypto gdoi group %s: redundancy needs address ipv4 A.B.C.D under server local: this key server's address, which its peers list (peer address ipv4), the key servers talk between and the election's tie-break", g.Name)
	} else {
		if i := slices.Index(r.Peers, s.Address); i >= 0 {
			p.errAt(r.PeerLines[i], "peer address ipv4 %s is this key server's own address (address ipv4, line %d); list the other key servers of group %s", s.Address, s.AddressLine, g.Name)
		}
	}
	for i, a := range r.Peers {
		if r.PeerIdentity(i) == "" && !p.cfg.HostPSK(a) {
			p.cfg.Notes = append(p.cfg.Notes, &Error{File: p.cfg.File, Line: r.PeerLines[i], Msg: fmt.Sprintf("note: peer address ipv4 %s: nothing authenticates this peer as a key server, so no KS-KS SA with it is used (counter ann_peer_not_authorized): give it a pre-shared key of its own (crypto isakmp key KEY address %s; a wildcard or prefix key, which members may hold, does not count) or, with certificates, its subject (peer address ipv4 %s identity SUBJECT); docs/coop.md \"Peer authorization\"", a, a, a)})
		}
	}
	period, dead, _ := r.Timers()
	if dead <= period {
		line := r.DeadLine
		if line == 0 {
			line = r.PeriodLine
		}
		p.errAt(line, "redundancy: timers dead %s must be longer than timers announce %s (a peer is dead after missing announcements; the default dead interval is %d announcement periods)", secs(dead), secs(period), DefaultCOOPDeadPeriods)
	}
	if s.RekeyKeyLabel == "" {
		p.cfg.Notes = append(p.cfg.Notes, &Error{File: p.cfg.File, Line: r.Line, Msg: fmt.Sprintf("note: crypto gdoi group %s: redundancy without rekey authentication: the key servers send no rekeys, so members keep their keys by registering again; with rekeys, every key server of the group must sign them with the same key (crypto key export / import, docs/config.md)", g.Name)})
	}
}
