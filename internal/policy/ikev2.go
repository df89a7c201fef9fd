package policy

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// G-IKEv2 (RFC 9838) configuration, in the IOS-XE syntax of Cisco's
// "GETVPN G-IKEv2" and FlexVPN/IKEv2 configuration guides (docs/config.md,
// G-IKEv2): crypto ikev2 proposal / policy / keyring / profile, and a
// group's `client protocol gikev2 PROFILE` (a group member) or
// `gikev2 PROFILE` under server local (a key server). ikev2d serves the
// groups whose Protocol is ProtocolGIKEv2; isakmpd the others.

// Protocol is how a group's members register: GDOI (RFC 6407, isakmpd)
// or G-IKEv2 (RFC 9838, ikev2d).
type Protocol string

const (
	ProtocolGDOI   Protocol = "gdoi"
	ProtocolGIKEv2 Protocol = "gikev2"
)

// IKEv2 transform names as IOS-XE writes them in crypto ikev2 proposal.
const (
	IKEv2AESCBC128 = "aes-cbc-128"
	IKEv2AESCBC192 = "aes-cbc-192"
	IKEv2AESCBC256 = "aes-cbc-256"
	IKEv2AESGCM128 = "aes-gcm-128"
	IKEv2AESGCM256 = "aes-gcm-256"
)

// IKEv2Encryptions, IKEv2Hashes and IKEv2Groups are the values groupvpn
// accepts in a proposal (internal/ikev2's suites), in IOS's spelling.
var (
	IKEv2Encryptions = []string{IKEv2AESCBC128, IKEv2AESCBC192, IKEv2AESCBC256, IKEv2AESGCM128, IKEv2AESGCM256}
	IKEv2Hashes      = []string{"sha256", "sha384", "sha512"}
	IKEv2Groups      = []int{14, 15, 16, 19, 20, 21}
)

// IKEv2Proposal is crypto ikev2 proposal NAME: the transforms of one IKE
// SA proposal, each list in the order given (IOS offers every
// combination).
type IKEv2Proposal struct {
	Name string
	// Encryption: IKEv2AESCBC* or IKEv2AESGCM* (not both kinds in one
	// proposal, as IOS refuses).
	Encryption []string
	// Integrity: "sha256", "sha384", "sha512"; none with AES-GCM.
	Integrity []string
	// PRF: "sha256", "sha384", "sha512"; empty: the integrity
	// algorithms' (IOS's default; an AES-GCM proposal needs prf).
	PRF    []string
	Groups []int // DH groups: 14, 15, 16, 19, 20, 21
	Line   int
}

// IsAEAD reports whether the proposal's encryption is AES-GCM.
func (p *IKEv2Proposal) IsAEAD() bool {
	return len(p.Encryption) > 0 && strings.HasPrefix(p.Encryption[0], "aes-gcm-")
}

// PRFs returns the PRFs in effect: PRF, else the integrity algorithms.
func (p *IKEv2Proposal) PRFs() []string {
	if len(p.PRF) > 0 {
		return p.PRF
	}
	return p.Integrity
}

// IKEv2Suite is one combination of a proposal's transforms, in IOS's
// names: what internal/ikev2 calls a Suite (ikev2d maps the names).
type IKEv2Suite struct {
	Encryption string // e.g. "aes-gcm-256"
	KeyBits    int
	AEAD       bool
	Integrity  string // "" with AES-GCM
	PRF        string
	Group      int
}

// Suites expands the proposal into its combinations, in order: each
// encryption, then integrity, then PRF, then group (IOS sends one IKEv2
// proposal with all of them; a responder picks one of each, which is the
// same choice).
func (p *IKEv2Proposal) Suites() []IKEv2Suite {
	integ := p.Integrity
	if p.IsAEAD() || len(integ) == 0 {
		integ = []string{""}
	}
	var out []IKEv2Suite
	for _, e := range p.Encryption {
		bits := 128
		switch {
		case strings.HasSuffix(e, "-192"):
			bits = 192
		case strings.HasSuffix(e, "-256"):
			bits = 256
		}
		for _, i := range integ {
			for _, f := range p.PRFs() {
				for _, g := range p.Groups {
					out = append(out, IKEv2Suite{Encryption: e, KeyBits: bits, AEAD: strings.HasPrefix(e, "aes-gcm-"), Integrity: i, PRF: f, Group: g})
				}
			}
		}
	}
	return out
}

// IKEv2Policy is crypto ikev2 policy NAME: which proposals an IKE SA on
// the local addresses it matches may use.
type IKEv2Policy struct {
	Name          string
	ProposalNames []string
	Proposals     []*IKEv2Proposal // resolved, same order
	ProposalLine  int
	// MatchLocal is match address local A.B.C.D ...: the policy applies to
	// IKE SAs on these local addresses; empty: to every address.
	MatchLocal     []netip.Addr
	MatchLocalLine int
	Line           int
}

// IKEv2Keyring is crypto ikev2 keyring NAME: pre-shared keys by peer.
type IKEv2Keyring struct {
	Name  string
	Peers []*IKEv2KeyringPeer
	Line  int
}

// IKEv2KeyringPeer is one peer NAME block of a keyring.
type IKEv2KeyringPeer struct {
	Name string
	// Prefix is address A.B.C.D [MASK]: the peers this key is for;
	// invalid when not given.
	Prefix      netip.Prefix
	AddressLine int
	// Identity is identity {address A.B.C.D | fqdn NAME}: the peer's IKE
	// identity the key is for (looked up by the identity the peer sends);
	// zero when not given.
	Identity     IKEv2Identity
	IdentityLine int
	// Key is pre-shared-key KEY (both directions); LocalKey and RemoteKey
	// are pre-shared-key local KEY / remote KEY (what we sign with, what
	// the peer signs with). Key, when set, is both.
	Key, LocalKey, RemoteKey string
	KeyLine                  int
	Line                     int
}

// Keys returns the key we authenticate with and the key the peer
// authenticates with.
func (k *IKEv2KeyringPeer) Keys() (local, remote string) {
	local, remote = k.LocalKey, k.RemoteKey
	if local == "" {
		local = k.Key
	}
	if remote == "" {
		remote = k.Key
	}
	return local, remote
}

// IKEv2IdentityType is the type of an IKE identity in a profile or keyring.
type IKEv2IdentityType string

const (
	IKEv2IDAddress IKEv2IdentityType = "address" // ID_IPV4_ADDR
	IKEv2IDFQDN    IKEv2IdentityType = "fqdn"    // ID_FQDN
	IKEv2IDDN      IKEv2IdentityType = "dn"      // ID_DER_ASN1_DN: our certificate's subject (identity local only)
)

// IKEv2Identity is an identity: address A.B.C.D [MASK] (a single address
// when local, a prefix in a match) or fqdn [domain] NAME (Domain: NAME is
// a domain the identity ends in, match only).
type IKEv2Identity struct {
	Type   IKEv2IdentityType // "" when not configured
	Prefix netip.Prefix      // Type address
	FQDN   string            // Type fqdn, lower case
	Domain bool
}

// IsZero reports whether no identity is configured.
func (i IKEv2Identity) IsZero() bool { return i.Type == "" }

// Matches reports whether an identity the peer sent (an address, or an
// FQDN) matches this one.
func (i IKEv2Identity) Matches(addr netip.Addr, fqdn string) bool {
	switch i.Type {
	case IKEv2IDAddress:
		return addr.IsValid() && i.Prefix.Contains(addr.Unmap())
	case IKEv2IDFQDN:
		f := strings.ToLower(strings.TrimSuffix(fqdn, "."))
		if i.Domain {
			return f == i.FQDN || strings.HasSuffix(f, "."+i.FQDN)
		}
		return f != "" && f == i.FQDN
	}
	return false
}

// String is the identity as the commands write it after their keywords:
// "address 10.0.0.1", "address 10.0.0.0 255.255.255.0", "fqdn ks1.example",
// "fqdn domain example".
func (i IKEv2Identity) String() string {
	switch i.Type {
	case IKEv2IDAddress:
		if i.Prefix.Bits() == 32 {
			return "address " + i.Prefix.Addr().String()
		}
		return "address " + i.Prefix.Addr().String() + " " + mask4(i.Prefix.Bits(), false)
	case IKEv2IDFQDN:
		if i.Domain {
			return "fqdn domain " + i.FQDN
		}
		return "fqdn " + i.FQDN
	case IKEv2IDDN:
		return "dn"
	}
	return ""
}

// IKEv2Profile is crypto ikev2 profile NAME: how the IKE SAs of the
// groups that name it authenticate.
type IKEv2Profile struct {
	Name string
	// MatchRemote are the match identity remote lines: peers whose
	// identity matches one of them use this profile (a key server serving
	// several profiles picks by them); empty: any peer.
	MatchRemote     []IKEv2Identity
	MatchRemoteLine int
	// LocalIdentity is identity local ...: our IKE identity; zero: our
	// address (IOS's default), or our certificate's DN when we sign.
	LocalIdentity     IKEv2Identity
	LocalIdentityLine int
	// AuthLocal is how we authenticate (authentication local METHOD);
	// AuthRemote how the peer may (authentication remote METHOD, one or
	// more lines).
	AuthLocal      AuthMethod
	AuthLocalLine  int
	AuthRemote     []AuthMethod
	AuthRemoteLine int
	KeyringName    string
	Keyring        *IKEv2Keyring // resolved
	KeyringLine    int
	// Trustpoint is pki trustpoint NAME: the certificate, CA and key of
	// groupvpn's crypto pki lines (one identity per node) stand for it.
	Trustpoint     string
	TrustpointLine int
	// Lifetime is lifetime SECONDS, the IKE SA's; zero: DefaultIKEv2Lifetime.
	Lifetime time.Duration
	Line     int
}

// DefaultIKEv2Lifetime is IOS's IKEv2 SA lifetime.
const DefaultIKEv2Lifetime = 86400 * time.Second

// SALifetime is the IKE SA lifetime in effect.
func (p *IKEv2Profile) SALifetime() time.Duration {
	if p.Lifetime == 0 {
		return DefaultIKEv2Lifetime
	}
	return p.Lifetime
}

// RemoteAllows reports whether the peer may authenticate with m.
func (p *IKEv2Profile) RemoteAllows(m AuthMethod) bool { return slices.Contains(p.AuthRemote, m) }

// UsesPSK reports whether either side authenticates with a pre-shared key.
func (p *IKEv2Profile) UsesPSK() bool {
	return p.AuthLocal == AuthPreShare || p.RemoteAllows(AuthPreShare)
}

// UsesCertificates reports whether either side signs.
func (p *IKEv2Profile) UsesCertificates() bool {
	return p.AuthLocal == AuthRSASig || p.AuthLocal == AuthECDSASig || p.RemoteAllows(AuthRSASig) || p.RemoteAllows(AuthECDSASig)
}

// PSKFor returns the keyring peer whose key serves a peer at addr sending
// identity fqdn (or an address identity): an identity match first, then
// the longest address prefix; nil when the keyring has none.
func (p *IKEv2Profile) PSKFor(addr netip.Addr, fqdn string) *IKEv2KeyringPeer {
	if p.Keyring == nil {
		return nil
	}
	addr = addr.Unmap()
	for _, k := range p.Keyring.Peers {
		if !k.Identity.IsZero() && k.Identity.Matches(addr, fqdn) {
			return k
		}
	}
	var best *IKEv2KeyringPeer
	for _, k := range p.Keyring.Peers {
		if k.Prefix.IsValid() && k.Prefix.Contains(addr) && (best == nil || k.Prefix.Bits() > best.Prefix.Bits()) {
			best = k
		}
	}
	return best
}

// Protocol is how the group's members register: ProtocolGIKEv2 with a
// G-IKEv2 profile (client protocol gikev2 / gikev2 under server local),
// else ProtocolGDOI.
func (g *Group) Protocol() Protocol {
	if g.ClientProtocol == ProtocolGIKEv2 {
		return ProtocolGIKEv2
	}
	return ProtocolGDOI
}

// IKEv2Proposal returns the proposal named name.
func (c *Config) IKEv2Proposal(name string) *IKEv2Proposal {
	for _, p := range c.IKEv2Proposals {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// IKEv2Policy returns the policy named name.
func (c *Config) IKEv2Policy(name string) *IKEv2Policy {
	for _, p := range c.IKEv2Policies {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// IKEv2Keyring returns the keyring named name.
func (c *Config) IKEv2Keyring(name string) *IKEv2Keyring {
	for _, k := range c.IKEv2Keyrings {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// IKEv2Profile returns the profile named name.
func (c *Config) IKEv2Profile(name string) *IKEv2Profile {
	for _, p := range c.IKEv2Profiles {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// IKEv2ProposalsFor returns the proposals an IKE SA on local address addr
// uses: those of the first policy whose match address local names addr,
// else of the first policy without match address local, else nil (the
// caller's defaults: internal/ikev2's DefaultSuites, as IOS's default
// proposal).
func (c *Config) IKEv2ProposalsFor(addr netip.Addr) []*IKEv2Proposal {
	addr = addr.Unmap()
	for _, p := range c.IKEv2Policies {
		if slices.Contains(p.MatchLocal, addr) {
			return p.Proposals
		}
	}
	for _, p := range c.IKEv2Policies {
		if len(p.MatchLocal) == 0 {
			return p.Proposals
		}
	}
	return nil
}

// GroupsFor returns the groups of groups whose members register with
// protocol pr (KSGroups or GMGroups filtered).
func GroupsFor(groups []*Group, pr Protocol) []*Group {
	var out []*Group
	for _, g := range groups {
		if g.Protocol() == pr {
			out = append(out, g)
		}
	}
	return out
}

// renderIKEv2 writes the crypto ikev2 blocks as show running-config does:
// proposals, policies, keyrings, profiles, each in declaration order.
func (c *Config) renderIKEv2(w func(string, ...any), bang func()) {
	join := func(xs []string) string { return strings.Join(xs, " ") }
	for _, p := range c.IKEv2Proposals {
		w("crypto ikev2 proposal %s", p.Name)
		if len(p.Encryption) > 0 {
			w(" encryption %s", join(p.Encryption))
		}
		if len(p.Integrity) > 0 {
			w(" integrity %s", join(p.Integrity))
		}
		if len(p.PRF) > 0 {
			w(" prf %s", join(p.PRF))
		}
		if len(p.Groups) > 0 {
			var gs []string
			for _, g := range p.Groups {
				gs = append(gs, itoa(g))
			}
			w(" group %s", join(gs))
		}
		bang()
	}
	for _, p := range c.IKEv2Policies {
		w("crypto ikev2 policy %s", p.Name)
		for _, a := range p.MatchLocal {
			w(" match address local %s", a)
		}
		for _, n := range p.ProposalNames {
			w(" proposal %s", n)
		}
		bang()
	}
	for _, k := range c.IKEv2Keyrings {
		w("crypto ikev2 keyring %s", k.Name)
		for _, pe := range k.Peers {
			w(" peer %s", pe.Name)
			if pe.Prefix.IsValid() {
				w("  address %s", renderKeyPrefix(pe.Prefix))
			}
			if !pe.Identity.IsZero() {
				w("  identity %s", pe.Identity)
			}
			if pe.Key != "" {
				w("  pre-shared-key %s", pe.Key)
			}
			if pe.LocalKey != "" {
				w("  pre-shared-key local %s", pe.LocalKey)
			}
			if pe.RemoteKey != "" {
				w("  pre-shared-key remote %s", pe.RemoteKey)
			}
		}
		bang()
	}
	for _, p := range c.IKEv2Profiles {
		w("crypto ikev2 profile %s", p.Name)
		for _, id := range p.MatchRemote {
			w(" match identity remote %s", id)
		}
		if !p.LocalIdentity.IsZero() {
			w(" identity local %s", p.LocalIdentity)
		}
		if p.AuthLocal != "" {
			w(" authentication local %s", p.AuthLocal)
		}
		for _, m := range p.AuthRemote {
			w(" authentication remote %s", m)
		}
		if p.KeyringName != "" {
			w(" keyring local %s", p.KeyringName)
		}
		if p.Trustpoint != "" {
			w(" pki trustpoint %s", p.Trustpoint)
		}
		if p.Lifetime != 0 {
			w(" lifetime %s", secs(p.Lifetime))
		}
		bang()
	}
}

// protocolSummary is ", G-IKEv2 profile P (...)" for config check's
// summary of a G-IKEv2 group, "" for a GDOI one.
func (g *Group) protocolSummary() string {
	if g.Protocol() != ProtocolGIKEv2 {
		return ""
	}
	s := ", G-IKEv2 (ikev2d), crypto ikev2 profile " + g.IKEv2ProfileName
	if pr := g.IKEv2Profile; pr != nil {
		var remote []string
		for _, m := range pr.AuthRemote {
			remote = append(remote, string(m))
		}
		s += ": local " + string(pr.AuthLocal) + ", remote " + strings.Join(remote, " or ")
	}
	return s
}
