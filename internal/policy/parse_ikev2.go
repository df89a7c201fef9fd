package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The G-IKEv2 commands (docs/config.md, G-IKEv2): crypto ikev2 proposal,
// policy, keyring (peer), profile, and the groups' client protocol.

// ikev2Modes adds the crypto ikev2 modes and commands to m.
func ikev2Modes(m *modes, c, ce func(syntax string, min, max int, run func(p *parser, obj any, a []string)) *cmd) {
	m.ikev2Proposal = &mode{name: "crypto ikev2 proposal"}
	m.ikev2Policy = &mode{name: "crypto ikev2 policy"}
	m.ikev2Keyring = &mode{name: "crypto ikev2 keyring"}
	m.ikev2Peer = &mode{name: "crypto ikev2 keyring peer"}
	m.ikev2Profile = &mode{name: "crypto ikev2 profile"}

	m.global.cmds = append(m.global.cmds,
		ce("crypto ikev2 proposal NAME", 1, 1, func(p *parser, _ any, a []string) {
			p.ikev2Block(m.ikev2Proposal, a, func(n string) any {
				if o := p.cfg.IKEv2Proposal(n); o != nil {
					return o
				}
				o := &IKEv2Proposal{Name: n, Line: p.line}
				p.cfg.IKEv2Proposals = append(p.cfg.IKEv2Proposals, o)
				return o
			}, &IKEv2Proposal{Line: p.line})
		}),
		ce("crypto ikev2 policy NAME", 1, 1, func(p *parser, _ any, a []string) {
			p.ikev2Block(m.ikev2Policy, a, func(n string) any {
				if o := p.cfg.IKEv2Policy(n); o != nil {
					return o
				}
				o := &IKEv2Policy{Name: n, Line: p.line}
				p.cfg.IKEv2Policies = append(p.cfg.IKEv2Policies, o)
				return o
			}, &IKEv2Policy{Line: p.line})
		}),
		ce("crypto ikev2 keyring NAME", 1, 1, func(p *parser, _ any, a []string) {
			p.ikev2Block(m.ikev2Keyring, a, func(n string) any {
				if o := p.cfg.IKEv2Keyring(n); o != nil {
					return o
				}
				o := &IKEv2Keyring{Name: n, Line: p.line}
				p.cfg.IKEv2Keyrings = append(p.cfg.IKEv2Keyrings, o)
				return o
			}, &IKEv2Keyring{Line: p.line})
		}),
		ce("crypto ikev2 profile NAME", 1, 1, func(p *parser, _ any, a []string) {
			p.ikev2Block(m.ikev2Profile, a, func(n string) any {
				if o := p.cfg.IKEv2Profile(n); o != nil {
					return o
				}
				o := &IKEv2Profile{Name: n, Line: p.line}
				p.cfg.IKEv2Profiles = append(p.cfg.IKEv2Profiles, o)
				return o
			}, &IKEv2Profile{Line: p.line})
		}),
		ce("crypto gkm group NAME", 1, 1, func(p *parser, _ any, a []string) {
			p.group(m, a)
			if a != nil {
				p.stack[len(p.stack)-1].obj.(*Group).GKM = true
			}
		}),
		unused("crypto ikev2", "an IKEv2 global setting groupvpn does not take: ikev2d's own limits, cookies and liveness apply (docs/ikev2.md)", false),
	)

	m.ikev2Proposal.cmds = []*cmd{
		c("encryption ALGORITHM [ALGORITHM ...]", 1, 5, (*parser).ikev2Encryption),
		c("integrity ALGORITHM [ALGORITHM ...]", 1, 3, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Proposal)
			pr.Integrity = p.ikev2Hashes("integrity", pr.Integrity, a)
		}),
		c("prf ALGORITHM [ALGORITHM ...]", 1, 3, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Proposal)
			pr.PRF = p.ikev2Hashes("prf", pr.PRF, a)
		}),
		c("group GROUP [GROUP ...]", 1, 6, (*parser).ikev2Group),
	}
	m.ikev2Policy.cmds = []*cmd{
		c("proposal NAME", 1, 1, func(p *parser, o any, a []string) {
			pol := o.(*IKEv2Policy)
			if !slices.Contains(pol.ProposalNames, a[0]) {
				pol.ProposalNames = append(pol.ProposalNames, a[0])
			}
			if pol.ProposalLine == 0 {
				pol.ProposalLine = p.line
			}
		}),
		c("match address local A.B.C.D", 1, 1, func(p *parser, o any, a []string) {
			pol := o.(*IKEv2Policy)
			addr, ok := p.ipv4(a[0], "match address local")
			if !ok {
				return
			}
			if !slices.Contains(pol.MatchLocal, addr) {
				pol.MatchLocal = append(pol.MatchLocal, addr)
			}
			if pol.MatchLocalLine == 0 {
				pol.MatchLocalLine = p.line
			}
		}),
		{kw: []string{"match", "fvrf"}, syntax: "match fvrf any", min: 1, max: 1, hidden: true, run: (*parser).ikev2FVRF},
		unused("description", "a comment", false),
	}
	m.ikev2Keyring.cmds = []*cmd{
		ce("peer NAME", 1, 1, func(p *parser, o any, a []string) {
			kr := o.(*IKEv2Keyring)
			if a == nil {
				p.push(m.ikev2Peer, &IKEv2KeyringPeer{Line: p.line})
				return
			}
			for _, k := range kr.Peers {
				if k.Name == a[0] {
					p.push(m.ikev2Peer, k)
					return
				}
			}
			if len(kr.Peers) >= MaxIKEv2KeyringPeers {
				p.errorf("crypto ikev2 keyring %s: at most %d peers", kr.Name, MaxIKEv2KeyringPeers)
				p.push(m.ikev2Peer, &IKEv2KeyringPeer{Line: p.line})
				return
			}
			k := &IKEv2KeyringPeer{Name: a[0], Line: p.line}
			kr.Peers = append(kr.Peers, k)
			p.push(m.ikev2Peer, k)
		}),
	}
	m.ikev2Peer.cmds = []*cmd{
		c("address A.B.C.D [MASK]", 1, 2, (*parser).ikev2PeerAddress),
		c("identity {address A.B.C.D | fqdn NAME}", 2, 2, func(p *parser, o any, a []string) {
			k := o.(*IKEv2KeyringPeer)
			id, ok := p.ikev2Identity("identity", a, false, false)
			if ok {
				k.Identity, k.IdentityLine = id, p.line
			}
		}),
		c("pre-shared-key [local | remote] [0] KEY", 1, 3, (*parser).ikev2PSK),
		unused("description", "a comment", false),
		unused("hostname", "keys are found by the peer's address or IKE identity", false),
	}
	m.ikev2Profile.cmds = []*cmd{
		c("match identity remote {address A.B.C.D [MASK] | fqdn [domain] NAME}", 2, 3, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Profile)
			id, ok := p.ikev2Identity("match identity remote", a, true, false)
			if !ok {
				return
			}
			if slices.Contains(pr.MatchRemote, id) {
				return // IOS keeps one
			}
			if len(pr.MatchRemote) >= MaxIKEv2Matches {
				p.errorf("crypto ikev2 profile %s: at most %d match identity remote lines", pr.Name, MaxIKEv2Matches)
				return
			}
			pr.MatchRemote = append(pr.MatchRemote, id)
			if pr.MatchRemoteLine == 0 {
				pr.MatchRemoteLine = p.line
			}
		}),
		c("identity local {address A.B.C.D | fqdn NAME | dn}", 1, 2, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Profile)
			id, ok := p.ikev2Identity("identity local", a, false, true)
			if ok {
				pr.LocalIdentity, pr.LocalIdentityLine = id, p.line
			}
		}),
		c("authentication {local | remote} {pre-share | rsa-sig | ecdsa-sig}", 2, 4, (*parser).ikev2Auth),
		c("keyring local NAME", 1, 1, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Profile)
			pr.KeyringName, pr.KeyringLine = a[0], p.line
		}),
		{kw: []string{"keyring"}, syntax: "keyring local NAME", min: 1, max: -1, hidden: true,
			match: func(a []string) bool { return len(a) > 0 && !strings.EqualFold(a[0], "local") },
			run: func(p *parser, _ any, a []string) {
				p.errorf("%q: not supported: groupvpn's keyrings are local (keyring local NAME naming a crypto ikev2 keyring); AAA keyrings need a RADIUS server groupvpn does not talk to", p.text)
			}},
		c("pki trustpoint NAME [sign | verify]", 1, 2, func(p *parser, o any, a []string) {
			pr := o.(*IKEv2Profile)
			if len(a) == 2 {
				if _, ok := p.choice(a[1], "pki trustpoint", "sign", "verify"); !ok {
					return
				}
			}
			pr.Trustpoint, pr.TrustpointLine = a[0], p.line
		}),
		c("lifetime SECONDS", 1, 1, func(p *parser, o any, a []string) {
			if v, ok := p.num(a[0], "lifetime", 120, 86400); ok {
				o.(*IKEv2Profile).Lifetime = seconds(v)
			}
		}),
		{kw: []string{"match", "fvrf"}, syntax: "match fvrf any", min: 1, max: 1, hidden: true, run: (*parser).ikev2FVRF},
		unused("match address local", "a key server answers on every address it serves; a member registers from the address the kernel chooses toward the key server", false),
		unused("description", "a comment", false),
		unused("dpd", "ikev2d's IKE SAs answer liveness checks; a member finds a dead key server by its registration and rekey timers", false),
		unused("nat keepalive", "NAT keepalives are ikev2d's (docs/ikev2.md, NAT traversal)", false),
	}
	m.group.cmds = append(m.group.cmds,
		c("client protocol {gdoi | gikev2 PROFILE}", 1, 2, (*parser).clientProtocol),
	)
	m.server.cmds = append(m.server.cmds,
		c("gikev2 PROFILE", 1, 1, func(p *parser, _ any, a []string) {
			g := p.enclosingGroup()
			if g == nil {
				return
			}
			g.ClientProtocol, g.IKEv2ProfileName, g.ClientProtocolLine = ProtocolGIKEv2, a[0], p.line
		}),
	)
}

// G-IKEv2 configuration bounds: what one node's configuration may hold.
const (
	MaxIKEv2KeyringPeers = 4096
	MaxIKEv2Matches      = 64
)

// ikev2Block enters a crypto ikev2 block: get returns the named object
// (an existing one when the block is entered again); with bad arguments a
// scratch object takes the sub-commands.
func (p *parser) ikev2Block(md *mode, a []string, get func(name string) any, scratch any) {
	if a == nil {
		p.push(md, scratch)
		return
	}
	p.push(md, get(a[0]))
}

// enclosingGroup is the group of the crypto gdoi group block on the stack.
func (p *parser) enclosingGroup() *Group {
	for i := len(p.stack) - 1; i >= 0; i-- {
		if g, ok := p.stack[i].obj.(*Group); ok {
			return g
		}
	}
	return nil
}

func (p *parser) ikev2Encryption(o any, a []string) {
	pr := o.(*IKEv2Proposal)
	for _, w := range a {
		v := strings.ToLower(w)
		switch v {
		case "3des", "des":
			p.errorf("encryption %s is not supported (a 64-bit block cipher; accepted: %s)", w, strings.Join(IKEv2Encryptions, ", "))
			return
		case "aes-gcm-192":
			p.errorf("encryption %s is not supported (IOS-XE offers aes-gcm-128 and aes-gcm-256; accepted: %s)", w, strings.Join(IKEv2Encryptions, ", "))
			return
		}
		if !slices.Contains(IKEv2Encryptions, v) {
			p.errorf("encryption %q is not supported (accepted: %s)", w, strings.Join(IKEv2Encryptions, ", "))
			return
		}
		if !slices.Contains(pr.Encryption, v) {
			pr.Encryption = append(pr.Encryption, v)
		}
	}
}

func (p *parser) ikev2Hashes(what string, have, a []string) []string {
	out := slices.Clone(have)
	for _, w := range a {
		v := strings.ToLower(w)
		switch v {
		case "md5", "sha1":
			p.errorf("%s %s is not supported (groupvpn's IKEv2 offers SHA-2 only; accepted: %s)", what, w, strings.Join(IKEv2Hashes, ", "))
			return have
		}
		if !slices.Contains(IKEv2Hashes, v) {
			p.errorf("%s %q is not supported (accepted: %s)", what, w, strings.Join(IKEv2Hashes, ", "))
			return have
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) ikev2Group(o any, a []string) {
	pr := o.(*IKEv2Proposal)
	var names []string
	for _, g := range IKEv2Groups {
		names = append(names, strconv.Itoa(g))
	}
	groups := slices.Clone(pr.Groups)
	for _, w := range a {
		n, err := strconv.Atoi(w)
		if err != nil || !slices.Contains(IKEv2Groups, n) {
			why := ""
			switch n {
			case 1, 2, 5:
				why = " (a MODP group under 2048 bits)"
			case 24:
				why = " (a MODP group with a 224-bit subgroup)"
			}
			p.errorf("group %q is not supported%s (accepted: %s)", w, why, strings.Join(names, ", "))
			return
		}
		if !slices.Contains(groups, n) {
			groups = append(groups, n)
		}
	}
	pr.Groups = groups
}

func (p *parser) ikev2FVRF(_ any, a []string) {
	if strings.EqualFold(a[0], "any") {
		p.notef("%q not used by groupvpn (VRFs are not supported: every IKE SA is in the host's routing table)", p.text)
		return
	}
	p.errorf("%q: not supported: groupvpn has no VRFs (match fvrf any is accepted)", p.text)
}

func (p *parser) ikev2PeerAddress(o any, a []string) {
	k := o.(*IKEv2KeyringPeer)
	addr, ok := p.ipv4(a[0], "address")
	if !ok {
		return
	}
	bits := 32
	if len(a) == 2 {
		if bits, ok = p.netmask(a[1], "address mask", false); !ok {
			return
		}
	}
	pfx := netip.PrefixFrom(addr, bits)
	if pfx.Masked() != pfx {
		p.errorf("address %s %s has host bits set; write %s", a[0], a[1], pfx.Masked().Addr())
		return
	}
	k.Prefix, k.AddressLine = pfx, p.line
}

// ikev2Identity parses {address A.B.C.D [MASK] | fqdn [domain] NAME}
// (match: a mask and domain allowed) or, with local, also dn.
func (p *parser) ikev2Identity(what string, a []string, match, local bool) (IKEv2Identity, bool) {
	accepted := "address A.B.C.D, fqdn NAME"
	if match {
		accepted = "address A.B.C.D [MASK], fqdn [domain] NAME"
	}
	if local {
		accepted += ", dn"
	}
	switch t := strings.ToLower(a[0]); {
	case t == "dn" && local && len(a) == 1:
		return IKEv2Identity{Type: IKEv2IDDN}, true
	case t == "address" && len(a) >= 2:
		addr, ok := p.ipv4(a[1], what+" address")
		if !ok {
			return IKEv2Identity{}, false
		}
		bits := 32
		if len(a) == 3 {
			if !match {
				p.errorf("%q: %s address takes one address, no mask", p.text, what)
				return IKEv2Identity{}, false
			}
			if bits, ok = p.netmask(a[2], what+" address mask", false); !ok {
				return IKEv2Identity{}, false
			}
		}
		pfx := netip.PrefixFrom(addr, bits)
		if pfx.Masked() != pfx {
			p.errorf("%s address %s %s has host bits set; write %s", what, a[1], a[2], pfx.Masked().Addr())
			return IKEv2Identity{}, false
		}
		return IKEv2Identity{Type: IKEv2IDAddress, Prefix: pfx}, true
	case t == "fqdn" && len(a) >= 2:
		id := IKEv2Identity{Type: IKEv2IDFQDN}
		name := a[1]
		if len(a) == 3 {
			if !match || !strings.EqualFold(a[1], "domain") {
				p.errorf("%q: usage: %s {%s}", p.text, what, accepted)
				return IKEv2Identity{}, false
			}
			id.Domain, name = true, a[2]
		}
		if !validFQDN(name) {
			p.errorf("%s fqdn %q is not a domain name (letters, digits, hyphens and dots, at most 253 characters)", what, name)
			return IKEv2Identity{}, false
		}
		id.FQDN = strings.ToLower(strings.TrimSuffix(name, "."))
		return id, true
	case t == "email" || t == "key-id" || t == "certificate" || t == "any":
		p.errorf("%s %s is not supported (accepted: %s)", what, a[0], accepted)
		return IKEv2Identity{}, false
	}
	p.errorf("%q: usage: %s {%s}", p.text, what, accepted)
	return IKEv2Identity{}, false
}

// validFQDN reports whether s is a plausible DNS name.
func validFQDN(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// pre-shared-key [local | remote] [0] KEY
func (p *parser) ikev2PSK(o any, a []string) {
	k := o.(*IKEv2KeyringPeer)
	dir := ""
	if len(a) > 1 && (strings.EqualFold(a[0], "local") || strings.EqualFold(a[0], "remote")) {
		dir, a = strings.ToLower(a[0]), a[1:]
	}
	if len(a) == 2 {
		switch a[0] {
		case "0":
			a = a[1:]
		case "6", "7":
			p.errorf("pre-shared-key %s: an IOS-encrypted key is not supported (it needs the router's master key); write the key in the clear (pre-shared-key [local | remote] KEY)", a[0])
			return
		default:
			p.errorf("%q: usage: pre-shared-key [local | remote] [0] KEY", p.text)
			return
		}
	}
	if len(a) != 1 {
		p.errorf("%q: usage: pre-shared-key [local | remote] [0] KEY", p.text)
		return
	}
	switch dir {
	case "":
		k.Key = a[0]
	case "local":
		k.LocalKey = a[0]
	case "remote":
		k.RemoteKey = a[0]
	}
	k.KeyLine = p.line
}

// authentication {local | remote} {pre-share | rsa-sig | ecdsa-sig}
func (p *parser) ikev2Auth(o any, a []string) {
	pr := o.(*IKEv2Profile)
	side, ok := p.choice(a[0], "authentication", "local", "remote")
	if !ok {
		return
	}
	switch m := strings.ToLower(a[1]); {
	case m == "eap":
		p.errorf("authentication %s eap is not supported (G-IKEv2 members authenticate by pre-shared key or certificate; Cisco's G-IKEv2 does not support EAP either)", side)
		return
	case len(a) > 2 && m == "pre-share":
		p.errorf("%q: a key on the authentication line is not supported; put it in a crypto ikev2 keyring peer (pre-shared-key KEY) named by keyring local NAME", p.text)
		return
	case len(a) > 2:
		p.errorf("%q: usage: authentication {local | remote} {pre-share | rsa-sig | ecdsa-sig}", p.text)
		return
	}
	v, ok := p.choice(a[1], "authentication "+side, string(AuthPreShare), string(AuthRSASig), string(AuthECDSASig))
	if !ok {
		return
	}
	if side == "local" {
		pr.AuthLocal, pr.AuthLocalLine = AuthMethod(v), p.line
		return
	}
	if !pr.RemoteAllows(AuthMethod(v)) {
		pr.AuthRemote = append(pr.AuthRemote, AuthMethod(v))
	}
	if pr.AuthRemoteLine == 0 {
		pr.AuthRemoteLine = p.line
	}
}

// client protocol {gdoi | gikev2 PROFILE}
func (p *parser) clientProtocol(o any, a []string) {
	g := o.(*Group)
	v, ok := p.choice(a[0], "client protocol", "gdoi", "gikev2")
	if !ok {
		return
	}
	switch {
	case v == "gdoi" && len(a) == 1:
		g.ClientProtocol, g.IKEv2ProfileName, g.ClientProtocolLine = ProtocolGDOI, "", p.line
	case v == "gikev2" && len(a) == 2:
		g.ClientProtocol, g.IKEv2ProfileName, g.ClientProtocolLine = ProtocolGIKEv2, a[1], p.line
	case v == "gikev2":
		p.errorf("client protocol gikev2 needs the crypto ikev2 profile its IKE SAs use: client protocol gikev2 PROFILE")
	default:
		p.errorf("%q: usage: client protocol {gdoi | gikev2 PROFILE}", p.text)
	}
}
