// Package policy is the configuration of a groupvpn node (SPEC O1): a
// model of what a key server (KS) and a group member (GM) need, a parser for
// the IOS GET VPN subset that writes it (docs/config.md), and a renderer
// that prints it back in canonical IOS syntax (show running-config).
//
// Parse and Load resolve every reference (profile → transform-set, sa ipsec
// → profile and ACL, rekey → key, crypto map → group, interface → crypto
// map), load the key and certificate files the configuration names, and
// report every problem as `file:line: reason`.
package policy

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/version"
)

// Config is one node's configuration. Slices keep declaration order except
// where noted; every element carries the Line it was declared on.
type Config struct {
	// File is the name the configuration was parsed under; Dir is the
	// directory relative key and certificate paths are resolved from.
	File, Dir string

	Hostname     string
	HostnameLine int

	// Version is the version this node announces (SPEC V1, V2); zero
	// when not configured: use AnnouncedVersion.
	Version     version.Version
	VersionLine int

	Logging Logging // logging host, logging buffered

	ISAKMPPolicies []*ISAKMPPolicy // ordered by Priority
	ISAKMPKeys     []*ISAKMPKey
	// Identity is what phase 1 sends as our ID (crypto isakmp identity).
	Identity     IdentityType
	IdentityLine int
	// Keepalive is dead peer detection (crypto isakmp keepalive); zero
	// Seconds: none.
	Keepalive Keepalive

	Keys []*KeyPair // crypto key import, for rekey signatures
	PKI  PKI

	TransformSets []*TransformSet
	Profiles      []*IPsecProfile
	ACLs          []*ACL
	Groups        []*Group
	CryptoMaps    []*CryptoMapEntry // ordered by map name, then Seq
	FailClose     []*FailClose      // crypto map NAME gdoi fail-close
	Interfaces    []*Interface

	// G-IKEv2 (ikev2.go): crypto ikev2 proposal, policy, keyring and
	// profile blocks, in declaration order.
	IKEv2Proposals []*IKEv2Proposal
	IKEv2Policies  []*IKEv2Policy
	IKEv2Keyrings  []*IKEv2Keyring
	IKEv2Profiles  []*IKEv2Profile

	// Notes are the lines accepted but not used (a pasted IOS
	// configuration's show-run headers, interface addresses, ...), each
	// `file:line: note: ... not used by groupvpn (why)`, in line order;
	// `config check` prints them. They are not rendered.
	Notes ErrorList

	// opts are what the configuration was parsed with (the key store):
	// an Editor's candidate and a reload are parsed with them too.
	opts Options
}

// Options are what a configuration is parsed against besides its text.
type Options struct {
	// KeyStore is where a `rekey authentication mypubkey {rsa | ec} X`
	// that no `crypto key import` line names finds its key: the daemon's
	// key store (internal/keystore; CLI crypto key generate). Nil: none.
	KeyStore *keystore.Store
}

// Options are the options the configuration was parsed with.
func (c *Config) Options() Options { return c.opts }

// Logging is where isakmpd sends its messages besides stderr and -syslog
// (docs/operations.md, Logging).
type Logging struct {
	Hosts []*LogHost // logging host: RFC 5424 over UDP
	// Buffered is the size in bytes of the buffer of the last messages
	// (logging buffered [SIZE], show logging); 0: no buffer.
	Buffered     int
	BufferedLine int
	// BufferedLevel is the most verbose severity the buffer keeps
	// (logging buffered ... LEVEL); "" is debugging. Trap is the one the
	// hosts get (logging trap LEVEL); "" is informational. Both are IOS
	// severity names (Severities).
	BufferedLevel string
	Trap          string
	TrapLine      int
	// Facility is the facility of the messages to the hosts (logging
	// facility NAME); "" is local7.
	Facility     string
	FacilityLine int
}

// Facilities are the syslog facility names (RFC 5424 §6.2.1) IOS's
// logging facility takes, by code; "" where IOS has none.
var Facilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "", "", "", "", "", "",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// Facility is the code of a facility name; "" (and an unknown name) is
// local7 (23).
func Facility(name string) int {
	for i, n := range Facilities {
		if n != "" && n == name {
			return i
		}
	}
	return 23
}

// FacilityName is the name of a facility code.
func FacilityName(code int) string {
	if code >= 0 && code < len(Facilities) && Facilities[code] != "" {
		return Facilities[code]
	}
	return "local7"
}

// Severities are the IOS severity names, by number.
var Severities = []string{"emergencies", "alerts", "critical", "errors", "warnings", "notifications", "informational", "debugging"}

// Severity is the number of an IOS severity name ("" is def).
func Severity(name string, def int) int {
	for i, n := range Severities {
		if n == name {
			return i
		}
	}
	return def
}

// LogHost is one logging host A.B.C.D [transport udp [port N]].
type LogHost struct {
	Addr netip.Addr
	Port uint16
	Line int
}

// Dest is the host as a syslog destination (syslog.Dial).
func (h *LogHost) Dest() string { return "udp://" + netip.AddrPortFrom(h.Addr, h.Port).String() }

// Logging defaults and bounds (IOS: logging buffered 4096-2147483647,
// default 4096; groupvpn bounds the buffer to 16 MiB).
const (
	DefaultLoggingBuffered = 4096
	MaxLoggingBuffered     = 16 << 20
	DefaultLoggingPort     = 514
	MaxLoggingHosts        = 16
)

// IdentityType is the phase-1 identity we send.
type IdentityType string

const (
	IdentityAddress  IdentityType = "address"  // our IP address (default)
	IdentityDN       IdentityType = "dn"       // our certificate's subject DN
	IdentityHostname IdentityType = "hostname" // our hostname (hostname NAME) as an FQDN
)

// AuthMethod is a phase-1 authentication method.
type AuthMethod string

const (
	AuthPreShare AuthMethod = "pre-share"
	AuthRSASig   AuthMethod = "rsa-sig"
	AuthECDSASig AuthMethod = "ecdsa-sig" // the curve of PKI.Key chooses ECDSA-256/384/521
)

// Defaults the parser fills in, so the model always holds effective values.
const (
	DefaultISAKMPKeyBits  = 128
	DefaultISAKMPHash     = "sha"
	DefaultISAKMPAuth     = AuthRSASig // IOS's default
	DefaultISAKMPGroup    = 14
	DefaultISAKMPLifetime = 86400 * time.Second
	DefaultESPKeyBits     = 128
	DefaultSALifetime     = 3600 * time.Second // TEK lifetime
	DefaultRekeyKeyBits   = 128
	DefaultRekeyLifetime  = 86400 * time.Second // KEK lifetime
	DefaultRetransmit     = 10 * time.Second
	DefaultRetransmits    = 2
	DefaultReplayWindow   = 64 // counter-based, packets
	DefaultRekeyTTL       = 1  // multicast rekeys stay on the KS's segment unless routed on purpose
)

// ISAKMPPolicy is one phase-1 proposal (crypto isakmp policy N).
type ISAKMPPolicy struct {
	Priority int    // 1-10000; lower is offered first
	KeyBits  int    // AES-CBC: 128, 192 or 256
	Hash     string // "sha" (SHA-1), "sha256", "sha384", "sha512"
	Auth     AuthMethod
	Group    int // DH group: 14, 15, 16, 19, 20, 21
	Lifetime time.Duration
	Line     int
}

// Keepalive is crypto isakmp keepalive SECONDS [RETRY] [periodic |
// on-demand]: IOS's dead peer detection timer (RFC 3706).
type Keepalive struct {
	Seconds  int  // 10-3600; 0: not configured
	Retry    int  // 3-60; 0: DefaultKeepaliveRetry (2, also when given)
	Periodic bool // periodic; else on-demand (IOS's default)
	Line     int
}

// DefaultKeepaliveRetry is IOS's retry interval when none is given.
const DefaultKeepaliveRetry = 2

// RetrySeconds is the retry interval in effect.
func (k Keepalive) RetrySeconds() int {
	if k.Retry == 0 {
		return DefaultKeepaliveRetry
	}
	return k.Retry
}

// String is the command as show running-config writes it ("" when not
// configured): the retry only when not IOS's default, on-demand (the
// default) not at all.
func (k Keepalive) String() string {
	if k.Seconds == 0 {
		return ""
	}
	s := fmt.Sprintf("crypto isakmp keepalive %d", k.Seconds)
	if k.Retry != 0 {
		s += fmt.Sprintf(" %d", k.Retry)
	}
	if k.Periodic {
		s += " periodic"
	}
	return s
}

// ISAKMPKey is a pre-shared key for peers in Prefix
// (crypto isakmp key KEY address ...).
type ISAKMPKey struct {
	Key    string
	Prefix netip.Prefix
	Line   int
}

// KeyPair is a private key imported from a PEM file under a label
// (crypto key import rsa|ec LABEL file PATH); rekeys are signed with it.
type KeyPair struct {
	Type   string // "rsa" or "ec"
	Label  string
	Path   string // as written, relative to Config.Dir unless absolute; a stored key's file
	Signer crypto.Signer
	Line   int // 0 for a stored key
	// Store is the key store directory the key was found in, when no
	// crypto key import line names it (CLI crypto key generate or
	// import); such a key is not in Config.Keys and is not rendered.
	Store string
}

// PKI is our certificate identity for rsa-sig / ecdsa-sig phase 1.
type PKI struct {
	CertPath string
	Chain    []*x509.Certificate // leaf first
	CertLine int

	CAPath  string
	CACerts []*x509.Certificate
	Roots   *x509.CertPool
	CALine  int

	KeyPath string
	Key     crypto.Signer
	KeyLine int
}

// ChainDER returns the certificate chain as DER, leaf first.
func (p *PKI) ChainDER() [][]byte {
	var out [][]byte
	for _, c := range p.Chain {
		out = append(out, c.Raw)
	}
	return out
}

// ESPCipher is the ESP encryption of a transform set.
type ESPCipher string

const (
	ESPAES  ESPCipher = "esp-aes"  // AES-CBC, needs an HMAC
	ESPGCM  ESPCipher = "esp-gcm"  // AES-GCM (RFC 4106), 16-octet ICV
	ESPGMAC ESPCipher = "esp-gmac" // AES-GMAC (RFC 4543), integrity only
)

// Integrity is an HMAC transform: "sha" (HMAC-SHA1-96), "sha256",
// "sha384" or "sha512" (RFC 4868).
type Integrity string

// TransformSet is crypto ipsec transform-set NAME ....
type TransformSet struct {
	Name       string
	ESP        ESPCipher // "" when AH only
	ESPKeyBits int       // 128, 192 or 256 when ESP is set
	ESPAuth    Integrity // "" for none (always "" with GCM/GMAC)
	AHAuth     Integrity // "" for no AH
	Mode       string    // "tunnel" (default) or "transport"
	Line       int
}

// Transforms returns the transforms in canonical IOS order and spelling.
func (t *TransformSet) Transforms() []string {
	var out []string
	if t.AHAuth != "" {
		out = append(out, "ah-"+string(t.AHAuth)+"-hmac")
	}
	if t.ESP != "" {
		out = append(out, string(t.ESP)+" "+itoa(t.ESPKeyBits))
	}
	if t.ESPAuth != "" {
		out = append(out, "esp-"+string(t.ESPAuth)+"-hmac")
	}
	return out
}

// IPsecProfile is crypto ipsec profile NAME.
type IPsecProfile struct {
	Name              string
	TransformSetNames []string
	TransformSets     []*TransformSet // resolved, same order
	TransformSetLine  int
	Lifetime          time.Duration // TEK lifetime
	Line              int
}

// Action of an access-list entry.
type Action string

const (
	Permit Action = "permit"
	Deny   Action = "deny"
)

// AnyProtocol is ACE.Protocol for the keyword "ip".
const AnyProtocol = -1

// ACL is ip access-list extended|standard NAME.
type ACL struct {
	Name     string
	Standard bool   // standard ACLs match the source only
	Entries  []*ACE // ordered by Seq
	Line     int
}

// ACE is one access-list entry. An any source or destination is the
// prefix 0.0.0.0/0, a host a /32. Ports are 0 when not given.
type ACE struct {
	Seq      int
	Action   Action
	Protocol int // IP protocol number, or AnyProtocol
	Src, Dst netip.Prefix
	SrcPort  int // eq PORT after the source; tcp/udp only
	DstPort  int
	Line     int
}

// PermitsSource reports whether the first entry whose source contains a
// permits it (destination, protocol and ports are ignored; the implicit
// final entry denies). Authorization ACLs are read this way.
func (a *ACL) PermitsSource(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, e := range a.Entries {
		if e.Src.Contains(addr) {
			return e.Action == Permit
		}
	}
	return false
}

// Permits returns the permit entries, in order.
func (a *ACL) Permits() []*ACE {
	var out []*ACE
	for _, e := range a.Entries {
		if e.Action == Permit {
			out = append(out, e)
		}
	}
	return out
}

// Group is crypto gdoi group NAME. Server is set on a key server, Servers
// on a group member; the parser refuses both.
type Group struct {
	Name         string
	Identity     uint32 // identity number
	IdentityLine int

	Server *ServerLocal

	Servers               []ServerAddr // GM: key servers in try order
	RegistrationInterface string       // GM: client registration interface
	RegistrationIfaceLine int

	// ClientProtocol is how members register: ProtocolGDOI (the default,
	// also client protocol gdoi) or ProtocolGIKEv2 (client protocol gikev2
	// PROFILE on a GM group; gikev2 PROFILE under server local on a KS).
	// IKEv2ProfileName names the crypto ikev2 profile the members' IKE
	// SAs authenticate by; IKEv2Profile is it, resolved.
	ClientProtocol     Protocol
	IKEv2ProfileName   string
	IKEv2Profile       *IKEv2Profile
	ClientProtocolLine int
	// GKM: the group was declared crypto gkm group NAME (IOS-XE's name for
	// a group that may use G-IKEv2); rendered so.
	GKM  bool
	Line int
}

// ServerAddr is one server address ipv4 A of a GM group.
type ServerAddr struct {
	Addr netip.Addr
	Line int
}

// ServerLocal is the key-server side of a group (server local).
type ServerLocal struct {
	RekeyKeyBits            int           // KEK cipher: AES-CBC 128, 192 or 256
	RekeyLifetime           time.Duration // KEK lifetime
	RekeyRetransmit         time.Duration // wait between retransmissions
	RekeyRetransmits        int           // retransmissions of a rekey
	RekeyKeyType            string        // "rsa" or "ec"; "" when rekeys are not configured
	RekeyKeyLabel           string
	RekeyKey                *KeyPair // resolved
	RekeyKeyLine            int
	RekeyACLName            string // multicast rekey destination ACL
	RekeyACL                *ACL   // resolved
	RekeyACLLine            int
	RekeyUnicast            bool   // rekey transport unicast
	RekeyTTL                int    // rekey multicast ttl (groupvpn); 0: DefaultRekeyTTL
	RekeyInterface          string // rekey multicast interface (groupvpn): where multicast rekeys leave
	RekeyUnicastLine        int
	Address                 netip.Addr
	AddressLine             int
	AuthorizationACLName    string
	AuthorizationACL        *ACL // resolved
	AuthorizationACLLine    int
	AuthorizationIdentities []string
	ReceiveOnly             bool
	Redundancy              *Redundancy // cooperative key servers; nil: a lone KS
	SAs                     []*SAIPsec  // ordered by Seq
	Line                    int
}

// Redundancy is `redundancy` under server local: cooperative key servers
// (SPEC C1, docs/coop.md). The group's KSs elect a primary (highest
// priority, then highest address); a secondary refuses the primary-only
// commands (SPEC R6, P5).
type Redundancy struct {
	// LocalPriority is `local priority N` (1-100); 0: not configured, the
	// IOS default 1 applies (DefaultLocalPriority).
	LocalPriority     int
	LocalPriorityLine int
	// Peers are the `peer address ipv4` lines, in order (at most MaxCOOPPeers,
	// none twice, never the KS's own address).
	Peers     []netip.Addr
	PeerLines []int
	// PeerIdentities are the peers' `identity SUBJECT` (a groupvpn
	// extension of `peer address ipv4`), by index of Peers; "": none (the
	// peer is then authenticated as a KS by a pre-shared key for exactly
	// its address only, docs/coop.md "Peer authorization").
	PeerIdentities []string
	// Period, Dead and ElectionWait are the groupvpn extensions `timers
	// announce S`, `timers dead S` and `timers election-wait S`; zero: the
	// default (DefaultCOOPPeriod, three periods, DefaultCOOPElectionWait).
	Period, Dead, ElectionWait             time.Duration
	PeriodLine, DeadLine, ElectionWaitLine int
	Line                                   int
}

// COOP configuration limits and defaults (docs/config.md; the timers are
// coop's defaults, internal/coop).
const (
	DefaultLocalPriority    = 1 // IOS's default `local priority`
	MaxLocalPriority        = 100
	MaxCOOPPeers            = 64 // coop.MaxPeers
	DefaultCOOPPeriod       = 20 * time.Second
	DefaultCOOPDeadPeriods  = 3
	DefaultCOOPElectionWait = 20 * time.Second
)

// Priority is the local priority in effect (the IOS default 1 when none
// is configured).
func (r *Redundancy) Priority() int {
	if r.LocalPriority == 0 {
		return DefaultLocalPriority
	}
	return r.LocalPriority
}

// Timers returns the announcement period, dead interval and election wait
// in effect (the defaults for those not configured).
func (r *Redundancy) Timers() (period, dead, electionWait time.Duration) {
	period, dead, electionWait = r.Period, r.Dead, r.ElectionWait
	if period == 0 {
		period = DefaultCOOPPeriod
	}
	if dead == 0 {
		dead = DefaultCOOPDeadPeriods * period
	}
	if electionWait == 0 {
		electionWait = DefaultCOOPElectionWait
	}
	return period, dead, electionWait
}

// RekeyMode is how rekeys reach the GMs.
type RekeyMode string

const (
	RekeyNone      RekeyMode = "none" // no rekey authentication: GMs re-register
	RekeyUnicast   RekeyMode = "unicast"
	RekeyMulticast RekeyMode = "multicast"
)

// Mode reports how rekeys are sent.
func (s *ServerLocal) Mode() RekeyMode {
	switch {
	case s.RekeyKeyLabel == "":
		return RekeyNone
	case s.RekeyUnicast:
		return RekeyUnicast
	default:
		return RekeyMulticast
	}
}

// MulticastRekey returns the source and destination of multicast rekeys:
// the first permit entry of the rekey address ACL.
func (s *ServerLocal) MulticastRekey() (src netip.Prefix, dst netip.Addr, ok bool) {
	if s.RekeyACL == nil {
		return netip.Prefix{}, netip.Addr{}, false
	}
	for _, e := range s.RekeyACL.Permits() {
		if e.Dst.IsSingleIP() && e.Dst.Addr().IsMulticast() {
			return e.Src, e.Dst.Addr(), true
		}
	}
	return netip.Prefix{}, netip.Addr{}, false
}

// AuthorizeAddress reports whether a GM at addr may register: true when no
// authorization address ACL is configured.
func (s *ServerLocal) AuthorizeAddress(addr netip.Addr) bool {
	if s.AuthorizationACL == nil {
		return true
	}
	return s.AuthorizationACL.PermitsSource(addr)
}

// AuthorizeIdentity reports whether a GM whose certificate subject is dn
// (as x509's pkix.Name.String renders it, e.g. "CN=gm1,O=Example") may
// register: true when no authorization identity is configured, else when
// some pattern matches (MatchIdentity).
func (s *ServerLocal) AuthorizeIdentity(dn string) bool {
	if len(s.AuthorizationIdentities) == 0 {
		return true
	}
	for _, p := range s.AuthorizationIdentities {
		if MatchIdentity(p, dn) {
			return true
		}
	}
	return false
}

// MatchIdentity matches a DN against a glob pattern, ignoring case: "*"
// matches any run of characters, "?" any one character, everything else
// itself.
func MatchIdentity(pattern, dn string) bool {
	p, s := []rune(strings.ToLower(pattern)), []rune(strings.ToLower(dn))
	// Iterative glob with one backtrack point for the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ReplayMode is the anti-replay of a TEK.
type ReplayMode string

const (
	ReplayCounter ReplayMode = "counter" // sequence-number window (default)
	ReplayTime    ReplayMode = "time"    // TBAR, window in seconds
	ReplayNone    ReplayMode = "none"
)

// SAIPsec is one sa ipsec N of a key server: one TEK policy.
type SAIPsec struct {
	Seq          int
	ProfileName  string
	Profile      *IPsecProfile // resolved
	ProfileLine  int
	MatchACLName string
	MatchACL     *ACL // resolved: the traffic this TEK protects
	MatchLine    int
	Replay       ReplayMode
	ReplayWindow int // packets (counter) or seconds (time); 0 with ReplayNone
	Line         int
}

// FailClose is crypto map NAME gdoi fail-close: once activated, a GM drops
// the traffic its groups' policy covers while it holds no keys for it,
// instead of sending it in the clear (SPEC T3). Before its first
// registration the GM has no policy from a key server yet: it then drops
// everything except the deny entries of MatchACL and its own GDOI traffic
// to and from the key servers (the bootstrap policy, internal/gm).
type FailClose struct {
	Map       string
	Activated bool
	// MatchACLName is match address ACL: an extended access list of deny
	// entries only, the traffic passed in the clear while fail-close is in
	// force before the first registration. Empty: nothing but the GDOI
	// traffic passes.
	MatchACLName string
	MatchACL     *ACL // resolved
	MatchLine    int
	Line         int
}

// FailCloseFor reports whether group g is fail-close: a crypto map with an
// activated fail-close carries it.
func (c *Config) FailCloseFor(g *Group) bool {
	for _, f := range c.FailClose {
		if !f.Activated {
			continue
		}
		for _, e := range c.CryptoMaps {
			if e.Map == f.Map && e.Group == g {
				return true
			}
		}
	}
	return false
}

// FailCloseDenies returns the deny entries of the match address ACLs of
// the activated fail-close blocks whose crypto map carries group g, in
// order: the traffic a fail-close GM passes in the clear before its first
// registration. The parser refuses a permit entry in such an ACL.
func (c *Config) FailCloseDenies(g *Group) []*ACE {
	var out []*ACE
	for _, f := range c.FailClose {
		if !f.Activated || f.MatchACL == nil {
			continue
		}
		if !slices.ContainsFunc(c.CryptoMaps, func(e *CryptoMapEntry) bool { return e.Map == f.Map && e.Group == g }) {
			continue
		}
		for _, e := range f.MatchACL.Entries {
			if e.Action == Deny {
				out = append(out, e)
			}
		}
	}
	return out
}

// CryptoMapEntry is crypto map NAME SEQ gdoi with its set group.
type CryptoMapEntry struct {
	Map       string
	Seq       int
	GroupName string
	Group     *Group // resolved
	GroupLine int
	Line      int
}

// Interface is interface NAME; CryptoMap the map it carries, if any.
type Interface struct {
	Name          string
	CryptoMap     string
	Entries       []*CryptoMapEntry // resolved: that map's entries
	CryptoMapLine int
	Line          int
}

// AnnouncedVersion is the version this node announces: the configured
// groupvpn version, else version.Current.
func (c *Config) AnnouncedVersion() version.Version { return c.Version.OrCurrent() }

// KSGroups returns the groups this node is key server for (server local).
func (c *Config) KSGroups() []*Group {
	var out []*Group
	for _, g := range c.Groups {
		if g.Server != nil {
			out = append(out, g)
		}
	}
	return out
}

// GMGroups returns the groups this node is a member of: groups with server
// addresses that a crypto map applied to an interface names.
func (c *Config) GMGroups() []*Group {
	var out []*Group
	seen := map[*Group]bool{}
	for _, ifc := range c.Interfaces {
		for _, e := range ifc.Entries {
			g := e.Group
			if g != nil && len(g.Servers) > 0 && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// InterfacesFor returns the names of the interfaces whose crypto map names
// group g.
func (c *Config) InterfacesFor(g *Group) []string {
	var out []string
	for _, ifc := range c.Interfaces {
		for _, e := range ifc.Entries {
			if e.Group == g {
				out = append(out, ifc.Name)
				break
			}
		}
	}
	return out
}

// PSKFor returns the pre-shared key for a peer: the crypto isakmp key with
// the longest prefix containing addr.
func (c *Config) PSKFor(addr netip.Addr) ([]byte, bool) {
	addr = addr.Unmap()
	var best *ISAKMPKey
	for _, k := range c.ISAKMPKeys {
		if k.Prefix.Contains(addr) && (best == nil || k.Prefix.Bits() > best.Prefix.Bits()) {
			best = k
		}
	}
	if best == nil {
		return nil, false
	}
	return []byte(best.Key), true
}

// Group returns the group named name.
func (c *Config) Group(name string) *Group {
	for _, g := range c.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// ACL returns the access list named name.
func (c *Config) ACL(name string) *ACL {
	for _, a := range c.ACLs {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// TransformSet returns the transform set named name.
func (c *Config) TransformSet(name string) *TransformSet {
	for _, t := range c.TransformSets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Profile returns the IPsec profile named name.
func (c *Config) Profile(name string) *IPsecProfile {
	for _, p := range c.Profiles {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// RekeyKeys lists where the rekey keys of the key-server groups come
// from, one line each, for config check: "group G: rekey key X (RSA
// 2048) from crypto key import, line N (file F)" or "... from the key
// store DIR (F)".
func (c *Config) RekeyKeys() []string {
	var out []string
	for _, g := range c.KSGroups() {
		k := g.Server.RekeyKey
		if k == nil {
			continue
		}
		from := fmt.Sprintf("crypto key import, line %d (file %s)", k.Line, k.Path)
		if k.Store != "" {
			from = fmt.Sprintf("the key store %s (%s)", k.Store, k.Path)
		}
		out = append(out, fmt.Sprintf("crypto gdoi group %s: rekey authentication mypubkey %s %s: %s key from %s", g.Name, k.Type, k.Label, keystore.Describe(k.Signer), from))
	}
	return out
}

// Key returns the imported key with label.
func (c *Config) Key(label string) *KeyPair {
	for _, k := range c.Keys {
		if k.Label == label {
			return k
		}
	}
	return nil
}

// Summary is a one-line description of the node's roles and groups.
func (c *Config) Summary() string {
	var parts []string
	if c.Hostname != "" {
		parts = append(parts, "hostname "+c.Hostname)
	}
	ks := c.KSGroups()
	if len(ks) > 0 {
		var gs []string
		for _, g := range ks {
			coop := ""
			if r := g.Server.Redundancy; r != nil {
				var ps []string
				for _, a := range r.Peers {
					ps = append(ps, a.String())
				}
				coop = ", cooperative: priority " + itoa(r.Priority()) + ", peers " + strings.Join(ps, " ")
				if len(ps) == 0 {
					coop += "none"
				}
			}
			gs = append(gs, g.Name+" (identity "+utoa(g.Identity)+", "+itoa(len(g.Server.SAs))+" sa ipsec, rekey "+string(g.Server.Mode())+coop+g.protocolSummary()+")")
		}
		parts = append(parts, "key server for "+strings.Join(gs, ", "))
	}
	gm := c.GMGroups()
	if len(gm) > 0 {
		var gs []string
		for _, g := range gm {
			var ss []string
			for _, s := range g.Servers {
				ss = append(ss, s.Addr.String())
			}
			gs = append(gs, g.Name+" (identity "+utoa(g.Identity)+", key servers "+strings.Join(ss, " ")+", on "+strings.Join(c.InterfacesFor(g), " ")+g.protocolSummary()+")")
		}
		parts = append(parts, "group member of "+strings.Join(gs, ", "))
	}
	if len(ks) == 0 && len(gm) == 0 {
		parts = append(parts, "no role: no server local group and no crypto map on an interface")
	}
	parts = append(parts, "version "+c.AnnouncedVersion().String())
	return strings.Join(parts, "; ")
}
