// Package ks is the GDOI key server: groups with their policy and keys, the
// registration decisions behind GROUPKEY-PULL (gdoi.Policy), the member
// registry and sender-ID allocation (RFC 6054). It is owned by one
// goroutine (the node's event loop); Snapshot copies state for the
// operator's show commands.
package ks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/internal/ratelog"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Selector is one traffic description of a TEK (one ACL permit entry).
type Selector struct {
	Proto            uint8
	Src, Dst         netip.Prefix
	SrcPort, DstPort uint16
}

// Bypass is one deny entry of a match ACL (see TEKPolicy.Bypass).
type Bypass struct {
	Before int
	Selector
}

// TEKPolicy is one `sa ipsec N`: a transform and the traffic it protects.
type TEKPolicy struct {
	Transform isakmp.ESPTransform // ESPAESCBC, ESPAESGCM16, ...
	KeyBits   int                 // 128, 192, 256
	AuthAlg   uint16              // isakmp.AuthAlgHMAC*; 0 for GCM/GMAC
	Lifetime  time.Duration       // default 3600 s
	Selectors []Selector
	// Bypass are the deny entries of the match ACL, each placed before
	// the Selectors entry of index Before (len(Selectors): after the
	// last), in ACL order: GMs pass that traffic in the clear and match
	// the ACL first-match in this order (SPEC E3).
	Bypass []Bypass
	// Anti-replay (SPEC T2): isakmp.ReplayCounter with Window packets
	// (default), ReplayTime (TBAR) with Window seconds, or ReplayNone.
	Replay       uint16
	ReplayWindow int
	// ACLName and ProfileName name the match address ACL and the crypto
	// ipsec profile this TEK comes from (for show; empty when built in code).
	ACLName, ProfileName string

	receiveOnly bool // copied from the group
}

// GroupConfig is a group served by this KS.
type GroupConfig struct {
	Name        string
	ID          uint32
	Address     netip.Addr    // the KS address rekeys come from (SAK SRC)
	KEKKeyBits  int           // AES key length of the KEK, default 128
	KEKLifetime time.Duration // default 86400 s
	SigningKey  crypto.Signer // rekey signature key, RSA or ECDSA
	TEKs        []TEKPolicy
	// Authorize decides whether a phase-1 peer may join; nil admits all
	// authenticated peers.
	Authorize func(peer Peer) error
	Rekey     RekeyPolicy
	// ReceiveOnly makes every TEK receiver-only at the GMs
	// (`sa receive-only`, RFC 6407 SA Direction).
	ReceiveOnly bool
	// Redundancy is `redundancy` (cooperative key servers, SPEC C1); nil:
	// a lone KS, always the group's primary. With it the group starts
	// not primary; the node's COOP elector decides the role (TakeOver,
	// StepDown).
	Redundancy *Redundancy
}

// Redundancy is a group's COOP configuration (`redundancy` under server
// local, docs/coop.md). Zero durations: the coop defaults.
type Redundancy struct {
	Priority                   uint8 // `local priority` (1 when 0)
	Peers                      []netip.Addr
	Period, Dead, ElectionWait time.Duration
	// PeerAuth is how each peer KS must have authenticated the phase-1
	// SA that carries the group's announcements (docs/coop.md "Peer
	// authorization"): a phase-1 SA from a peer's address that does not
	// match is not a KS-KS SA (a GM holding the group's credentials
	// cannot act as a peer KS). A peer missing here has none.
	PeerAuth map[netip.Addr]PeerAuth
}

// PeerAuth is how one peer KS is authenticated as a KS.
type PeerAuth struct {
	// PSK: a pre-shared key is configured for exactly the peer's
	// address (`crypto isakmp key K address A`, not a prefix or
	// 0.0.0.0), so a PSK-authenticated SA from it is the peer KS's.
	PSK bool
	// Identity is `peer address ipv4 A identity S` (a groupvpn
	// extension): a certificate-authenticated SA is the peer KS's only if
	// its certificate's subject (RFC 2253 string, e.g. CN=ks2,O=Example)
	// or subject common name is S. Empty: certificates are refused.
	Identity string
}

// Clone returns a deep copy of r (nil for nil).
func (r *Redundancy) Clone() *Redundancy {
	if r == nil {
		return nil
	}
	c := *r
	c.Peers = append([]netip.Addr(nil), r.Peers...)
	c.PeerAuth = maps.Clone(r.PeerAuth)
	return &c
}

// Options configure a Server.
type Options struct {
	Rand   io.Reader    // nil: crypto/rand
	Logger *slog.Logger // nil: discard
	// Now is the clock of the rate limiter of refused registrations' lines
	// (peerLim); nil: each line's own time.
	Now func() time.Time
	// Version is the version the KS announces (zero: version.Current): one
	// told to announce an older one behaves as one (SPEC V1).
	Version version.Version
}

// Peer is an authenticated phase-1 peer as the key server sees it,
// whatever IKE version authenticated it: members are keyed on it.
type Peer struct {
	Addr netip.AddrPort // where it registered from: unicast rekeys go to this port
	// Identity is what show lists: the certificate's subject, else the
	// phase-1 identity, else the address.
	Identity string
	// ID, when Identity is empty, is the phase-1 identity whose text is
	// Identity: formatted only when the KS needs it (issue 18: for every
	// message of a registration before, once for a refusal's log line).
	// Neither: the address.
	ID *isakmp.ID
	// CertSubject is the certificate's subject ("" when the peer
	// authenticated without one): `authorization identity` matches it.
	CertSubject string
	Version     version.Version // the groupvpn version it announced (zero: another implementation)
}

// identity is the peer's Identity (its ID's text, its address).
func (p Peer) identity() string {
	switch {
	case p.Identity != "":
		return p.Identity
	case p.ID != nil:
		return p.ID.String()
	}
	return p.Addr.Addr().String()
}

// Server is a key server for any number of groups.
type Server struct {
	dirty bool // member state changed since the last Clean
	rand  io.Reader
	log   *slog.Logger
	// peerLim rate-limits what a peer's refused registration makes the
	// KS log (peerLog): an authenticated peer is still hostile input, and
	// one refused member retrying without pause would write a line per
	// message. Keyed by the peer's address (internal/ratelog: 10 at once,
	// then 1 a second, with the count of what it suppressed), whatever
	// group number it asked for, so one peer neither buys a fresh budget
	// with each number nor silences another's refusals; lines cut at
	// 1,024 bytes (a certificate subject appears twice in them).
	peerLim *ratelog.Handler // peerLog's handler: what it suppressed
	groups  map[uint32]*group
	byName  map[string]*group
	version version.Version // announced (Options.Version)
}

// Member is one registered GM as the KS knows it.
type Member struct {
	Address       netip.Addr
	Port          uint16 // where it listens (its phase-1 port): unicast rekeys go there
	Identity      string
	Version       version.Version
	Registered    time.Time // first registration
	LastRegister  time.Time
	Registrations int
	SenderIDs     []uint32
	SIDBits       uint8 // the width of SenderIDs (0: MinSIDBits)
	// Rekey bookkeeping (unicast): acknowledgements received and missed,
	// consecutive misses, and whether the GM left the rekey list.
	AcksReceived int
	AcksMissed   int
	// RekeysSent and RekeyRetries count the unicast rekey datagrams
	// sent to it: first transmissions and retransmissions (Sent).
	RekeysSent   int
	RekeyRetries int
	Missed       int
	LastAckSeq   uint32
	Removed      bool
}

type tek struct {
	receiveOnly bool
	policy      TEKPolicy
	sel         Selector
	// bypass before and after sel in the ACL (after: last TEK of its
	// policy only), sent as IPsecBypassBefore/After.
	before, after []Selector
	spi           uint32
	encKey        []byte
	authKey       []byte
	created       time.Time
	expires       time.Time
	// sidNext is the next sender ID for this key (RFC 6054: never reused
	// with it), counted at width sidBits (the key's generation's width,
	// or the group's wider one once IDs of it were handed out under it).
	sidNext uint32
	sidBits uint8
	// sidReserved is the key's sender-ID high-water mark, at width
	// sidBits: no ID at or above it was handed out. A registration that
	// passes it raises it by a block (sidReserveBlock) and the group's
	// sidUnwritten is set: the keys must be written (the mark with them:
	// TEKState.SIDReserved) before the answer leaves, so a restarted KS
	// resumes above every ID that ever left it (Restore).
	sidReserved uint32
	// sidRaises counts the times sidReserved was raised since the key was
	// made or restored: the blocks grow with it (sidReserveBlock).
	sidRaises uint8
	// sidFloor, at width sidBits, is where the IDs members may carry
	// into this key from the keys it replaced end: none of those keys
	// handed out an ID at or above their marks and floors (carrySIDs
	// takes the highest). Written with the key (TEKState.SIDFloor): a
	// restarted KS treats every ID below it that no stored member holds
	// as held by a member the store lost (Restore), as it does below the
	// key's own mark. 0: none carried (a group without rekeys, the keys
	// after a GM removal).
	sidFloor uint32
	// sidUsed are the sender IDs in use with this key: those handed out
	// under it and those members held when it was made (they keep them
	// across rekeys: carrySIDs).
	sidUsed sidSet
}

type group struct {
	cfg    GroupConfig
	kekSPI [isakmp.KEKSPILen]byte
	kekKey []byte // IV | key
	kekExp time.Time
	teks   []*tek
	// replaced is what the last rekey replaced (replaced.go):
	// handed out with teks for receiving until the other members stop
	// accepting them.
	replaced replacedTEKs
	seq      uint32
	members  memberTable
	// sig is the rekey key the members hold: every rekey is signed with
	// it, and registrations hand out its public half. announce is the
	// configured key while it differs from sig (nil otherwise): the next
	// rekey carries its public half in a new KEK, signed with sig, and
	// then it becomes sig (RFC 6407 §4.4: a member verifies a push with
	// the key it holds; setSigningKey).
	sig              sigKey
	announce         *sigKey
	rekeys           int
	ptStart          time.Time // pseudotime zero: the first registration (TBAR)
	policyChanged    bool      // the configured policy differs from the keys in use
	kekPolicyChanged bool      // the KEK cipher, length or signing key changed
	synced           time.Time // last time GMs heard the pseudotime (registration of all or a rekey)
	// primary: the COOP role says this KS is the group's primary now
	// (meaningful with cfg.Redundancy only; TakeOver, StepDown).
	primary bool
	// adopted: the keys are a primary's (AdoptKeys): a secondary hands
	// out no keys before (coop.go).
	adopted bool
	// unadoptable: the last keys of the primary followed could not be
	// adopted (AdoptKeys failed: another policy or rekey key); until it
	// adopts, becomes primary or follows none (FollowNone), this KS
	// refuses registrations, so that GMs fail over to a KS that has the
	// primary's keys (unadoptableRefused counts them, unadoptableLog
	// rate-limits the log).
	unadoptable        bool
	unadoptableRefused uint64
	unadoptableLog     time.Time
	// sentSeq is the last sequence number this KS sent its GMs (a rekey,
	// removal or forward): a forward never repeats it.
	sentSeq uint32
	// membersGen rises whenever the local member list changes (COOP
	// member sync, LocalMembers).
	membersGen uint64
	// peerKS and remote are what the peer KSs announced (SetPeerView).
	peerKS []PeerKS
	// sidRefused counts registrations refused for want of sender IDs
	// while a peer KS announces another KS set; sidRefusedLog is when
	// that was last logged (sidViewsAgree).
	sidRefused    uint64
	sidRefusedLog time.Time
	remote        map[netip.Addr][]MemberVersion
	// sidBits is the width of the sender IDs handed out now (sid.go:
	// chosen with each generation of keys, never narrower); sidCap the
	// IDs this KS may hand out under the current keys, sidGiven those it
	// did, sidPressure when they passed half of sidCap (the next rekey is
	// due then: NextRekey). sidGiven counts a member's IDs once per
	// epoch (its first registration under the keys), so that the early
	// rekey follows distinct members' need, not one member's repeats.
	sidBits     int
	sidCap      uint32
	sidGiven    uint32
	sidPressure time.Time
	// sidEpoch rises whenever counter-mode keys change (carrySIDs) or the
	// width is set (setSIDBits): a member's sidEpochIDs count the IDs it
	// got since, at most SIDsPerMemberPerKeys. sidRefusedMember counts
	// registrations refused at that bound, sidRefusedMemberLog when that
	// was last logged.
	sidEpoch            uint32
	sidRefusedMember    uint64
	sidRefusedMemberLog time.Time
	// sidPrevForgotten counts members' previous sender IDs no longer
	// counted as held (MaxPrevSIDsPerMember: SIDPreviousForgotten).
	sidPrevForgotten uint64
	// removals counts the GM removals (Remove) since the start: each
	// gave the group a KEK that only a registration hands out. A member
	// that registered under an earlier count (memberRec.removals) gets no
	// key made since but by registering, with new IDs, so the IDs it held
	// then need not be kept (retire). A count, not a time: a clock
	// stepped back past a removal must not cut off a member that
	// registered after it (its IDs would be dropped while rekeys still
	// reach it). 0 after a restart, as every restored member's: they keep
	// their IDs (the safe side).
	removals uint16
	// sidGhost are IDs a restart skipped above restored keys' stored
	// counts (Restore): handed out, maybe, to members the store lost,
	// who carry them into later keys. Marked in every new key.
	sidGhost []sidRange
	// sidUnwritten: a key's sidReserved was raised and not yet reported
	// written (SIDReservationsUnwritten, SIDReservationWritten).
	sidUnwritten bool
	// regs, acked and missed are the members' Registrations,
	// AcksReceived and AcksMissed summed, kept as each changes, so that
	// the counters a scrape reads do not walk the members (issue 18).
	regs, acked, missed int
	// out is the group's policy and key packets laid out for every
	// registration (laidOut; nil: not yet): out[1] for members handed a
	// replaced counter-mode TEK (replaced.go) while one is, out[0] for
	// the rest.
	out [2]*laidOut
}

// MaxSIDsPerMember bounds the sender IDs one registration gets, whatever
// its SENDER_ID_REQUEST asks: without it, one authenticated member asking
// for 65,535 would use up the group's sender IDs and every later
// registration under the same keys would be refused.
const MaxSIDsPerMember = 16

// SIDsPerMemberPerKeys bounds the sender IDs one member gets under the
// same counter-mode keys over all its registrations (each gets fresh IDs:
// a GM that lost its counters must not start again under an ID it used):
// four full registrations. A member that re-registers past it is refused
// until the keys change (a rekey), counted (SIDRefusedMemberBound) and
// logged at most once a minute per group, so that one authenticated
// member pulling again and again neither uses up the IDs nor drives the
// group's early rekeys.
const SIDsPerMemberPerKeys = 4 * MaxSIDsPerMember

// New returns a key server.
func New(o Options) *Server {
	r := o.Rand
	if r == nil {
		r = rand.Reader
	}
	l := o.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Server{rand: r, log: l, peerLim: ratelog.New(l.Handler(), ratelog.Options{MaxLen: 1024, Now: o.Now}), groups: map[uint32]*group{}, byName: map[string]*group{},
		version: o.Version.OrCurrent()}
}

// peerLog is the logger of what peer's refused registration causes.
func (s *Server) peerLog(peer Peer) *slog.Logger {
	return slog.New(s.peerLim.Keyed(peer.Addr.Addr().String()))
}

// LogSuppressed is how many lines of refused registrations the rate
// limiter of peerLog suppressed.
func (s *Server) LogSuppressed() uint64 { return s.peerLim.Suppressed() }

// AddGroup creates a group and its first keys.
func (s *Server) AddGroup(cfg GroupConfig, now time.Time) error {
	if _, dup := s.groups[cfg.ID]; dup {
		return fmt.Errorf("ks: group identity %d is configured twice", cfg.ID)
	}
	if cfg.KEKKeyBits == 0 {
		cfg.KEKKeyBits = 128
	}
	if cfg.KEKLifetime == 0 {
		cfg.KEKLifetime = 86400 * time.Second
	}
	if len(cfg.TEKs) == 0 {
		return fmt.Errorf("ks: group %s has no sa ipsec policy", cfg.Name)
	}
	g := &group{cfg: cfg, members: newMembers()}
	if cfg.SigningKey != nil {
		k, err := newSigKey(cfg.SigningKey)
		if err != nil {
			return fmt.Errorf("ks: group %s: %w", cfg.Name, err)
		}
		g.sig = k
	}
	for _, p := range cfg.TEKs {
		if p.Lifetime == 0 {
			p.Lifetime = 3600 * time.Second
		}
		p.receiveOnly = cfg.ReceiveOnly
		ts, err := s.policyTEKs(p, now)
		if err != nil {
			return err
		}
		g.teks = append(g.teks, ts...)
	}
	if g.sig.alg != 0 {
		if err := s.newKEK(g, now); err != nil {
			return err
		}
	}
	g.newGeneration(g.teks)
	s.groups[cfg.ID] = g
	s.byName[cfg.Name] = g
	return nil
}

// sigKey is a rekey signing key with what the KEK policy says of it.
type sigKey struct {
	signer crypto.Signer
	pub    []byte // DER SubjectPublicKeyInfo (the KEK key packet's SIG key)
	alg    isakmp.SigAlg
	bits   int
}

// newSigKey describes a rekey signing key: RSA or ECDSA on P-256, P-384
// or P-521.
func newSigKey(signer crypto.Signer) (sigKey, error) {
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return sigKey{}, fmt.Errorf("rekey key: %w", err)
	}
	k := sigKey{signer: signer, pub: pub}
	switch p := signer.Public().(type) {
	case *rsa.PublicKey:
		k.alg, k.bits = isakmp.SigAlgRSA, p.N.BitLen()
	case *ecdsa.PublicKey:
		k.bits = p.Curve.Params().BitSize
		k.alg = map[int]isakmp.SigAlg{256: isakmp.SigAlgECDSA256, 384: isakmp.SigAlgECDSA384, 521: isakmp.SigAlgECDSA521}[k.bits]
		if k.alg == 0 {
			return sigKey{}, fmt.Errorf("ECDSA rekey key on an unsupported curve")
		}
	default:
		return sigKey{}, fmt.Errorf("rekey key must be RSA or ECDSA, not %T", p)
	}
	return k, nil
}

// same reports whether k and o are the same key.
func (k sigKey) same(o sigKey) bool { return string(k.pub) == string(o.pub) }

// setSigningKey takes the configured rekey signing key (a reload). A group
// without one has no KEK: its GMs get no rekeys and re-register before
// their TEKs expire. A key that replaces the one the members hold is not
// used at once: members verify a rekey with the key of their registration
// or of the last rekey they accepted (RFC 6407 §4.4, §5.6.2), so the next
// rekey announces the new key in a new KEK and is signed with the old one,
// and only the rekeys after it are signed with the new one. Until then
// registrations hand out the old key too, so that every member verifies
// the announcement.
func (s *Server) setSigningKey(g *group) error {
	cfg := g.cfg
	if cfg.SigningKey == nil {
		g.announce = nil
		return nil
	}
	k, err := newSigKey(cfg.SigningKey)
	if err != nil {
		return fmt.Errorf("ks: group %s: %w", cfg.Name, err)
	}
	switch {
	case g.sig.alg == 0: // no key before: no member holds one
		g.sig, g.announce = k, nil
	case g.sig.same(k):
		g.sig.signer, g.announce = k.signer, nil // the same key (read again)
	default:
		if g.announce == nil || !g.announce.same(k) {
			s.log.Info("rekey key changed: the next rekey announces it to the members, signed with the key they hold", "group", cfg.Name)
		}
		g.announce = &k
	}
	return nil
}

func (s *Server) read(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, fmt.Errorf("ks: random: %w", err)
	}
	return b, nil
}

func (s *Server) newKEK(g *group, now time.Time) error {
	spi, err := s.read(isakmp.KEKSPILen)
	if err != nil {
		return err
	}
	copy(g.kekSPI[:], spi)
	// KEK_ALGORITHM_KEY carries the explicit IV before the key (§5.6.2.1).
	if g.kekKey, err = s.read(16 + g.cfg.KEKKeyBits/8); err != nil {
		return err
	}
	g.kekExp = now.Add(g.cfg.KEKLifetime)
	return nil
}

// teKeyLens returns the cipher and integrity key lengths of a policy
// (RFC 4106 §8.1: GCM keys carry a 4-octet salt).
func tekKeyLens(p TEKPolicy) (enc, auth int, err error) {
	switch p.Transform {
	case isakmp.ESPAESCBC:
		enc = p.KeyBits / 8
		auth = map[uint16]int{isakmp.AuthAlgHMACSHA1: 20, isakmp.AuthAlgHMACSHA256: 32,
			isakmp.AuthAlgHMACSHA384: 48, isakmp.AuthAlgHMACSHA512: 64}[p.AuthAlg]
		if auth == 0 {
			return 0, 0, fmt.Errorf("ks: AES-CBC needs an HMAC authentication algorithm")
		}
	case isakmp.ESPAESGCM8, isakmp.ESPAESGCM12, isakmp.ESPAESGCM16, isakmp.ESPAESGMAC:
		enc = p.KeyBits/8 + 4
	default:
		return 0, 0, fmt.Errorf("ks: transform %s is not supported", p.Transform)
	}
	if p.KeyBits != 128 && p.KeyBits != 192 && p.KeyBits != 256 {
		return 0, 0, fmt.Errorf("ks: AES key length %d", p.KeyBits)
	}
	return enc, auth, nil
}

// policyTEKs makes one fresh TEK per permit entry of p, each carrying the
// deny entries around it.
func (s *Server) policyTEKs(p TEKPolicy, now time.Time) ([]*tek, error) {
	var out []*tek
	for i, sel := range p.Selectors {
		t, err := s.newTEK(p, sel, now)
		if err != nil {
			return nil, err
		}
		for _, b := range p.Bypass {
			switch {
			case b.Before == i:
				t.before = append(t.before, b.Selector)
			case b.Before >= len(p.Selectors) && i == len(p.Selectors)-1:
				t.after = append(t.after, b.Selector)
			}
		}
		if len(bypassList(t.before)) > 0xffff || len(bypassList(t.after)) > 0xffff {
			return nil, fmt.Errorf("ks: sa ipsec: the deny entries around one permit entry need more than 65,535 octets (an attribute's limit); split them with permit entries or shorten the access list")
		}
		out = append(out, t)
	}
	return out, nil
}

func (s *Server) newTEK(p TEKPolicy, sel Selector, now time.Time) (*tek, error) {
	encLen, authLen, err := tekKeyLens(p)
	if err != nil {
		return nil, err
	}
	t := &tek{policy: p, sel: sel, created: now, expires: now.Add(p.Lifetime), sidNext: 1, sidReserved: 1, sidBits: MinSIDBits, receiveOnly: p.receiveOnly}
	for t.spi < 256 { // SPIs 1-255 are reserved (RFC 4303 §2.1)
		b, err := s.read(4)
		if err != nil {
			return nil, err
		}
		t.spi = binary.BigEndian.Uint32(b)
	}
	if t.encKey, err = s.read(encLen); err != nil {
		return nil, err
	}
	if authLen > 0 {
		if t.authKey, err = s.read(authLen); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// refresh replaces keys that have used up most of their life, so that a
// GM registering now gets keys that outlive its re-registration window.
// (Pushing new keys to registered GMs is the rekey's job.)
func (s *Server) refresh(g *group, now time.Time) error {
	var fresh []*tek
	var at []int         // fresh[i] replaces g.teks[at[i]]
	keptCounter := false // a counter-mode key stays: its holders split IVs at the current width
	for i, t := range g.teks {
		if now.Add(t.policy.Lifetime / 10).Before(t.expires) {
			keptCounter = keptCounter || t.counter()
			continue
		}
		n, err := s.newTEK(t.policy, t.sel, now)
		if err != nil {
			return err
		}
		n.before, n.after = t.before, t.after
		fresh, at = append(fresh, n), append(at, i)
	}
	if len(fresh) > 0 {
		// The keys replaced stay the group's until the new ones carry
		// their IDs (carrySIDs: the floor).
		if keptCounter {
			// Some keys alone: the group's width stays, no new generation.
			for _, n := range fresh {
				if n.counter() {
					n.sidBits = uint8(max(g.sidBits, MinSIDBits))
				}
				g.carrySIDs(n)
			}
		} else {
			// Every counter-mode key is new: a new generation, sized for
			// the group (a group without a KEK widens only here: it cannot
			// rekey early).
			g.newGeneration(fresh)
		}
		for i, n := range fresh {
			g.teks[at[i]] = n
		}
		g.dropStale() // both layouts: the registration lays out its own again
	}
	if g.sig.alg != 0 && !now.Add(g.cfg.KEKLifetime/10).Before(g.kekExp) {
		err := s.newKEK(g, now)
		g.dropStale()
		return err
	}
	return nil
}

func (s *Server) lookup(id *isakmp.ID) (*group, error) {
	if id.IDType != isakmp.IDKeyID || len(id.Data) != 4 {
		return nil, &gdoi.Refusal{Notify: isakmp.NotifyInvalidIDInformation, Reason: fmt.Sprintf("group identity %s is not a 4-octet ID_KEY_ID", id)}
	}
	n := binary.BigEndian.Uint32(id.Data)
	g, ok := s.groups[n]
	if !ok {
		return nil, &gdoi.Refusal{Notify: isakmp.NotifyInvalidIDInformation, Reason: fmt.Sprintf("no group with identity number %d", n)}
	}
	return g, nil
}

// Join admits an authenticated phase-1 peer to a group it is authorized
// for and returns the group's policy (GROUPKEY-PULL message 2).
func (s *Server) Join(peer Peer, id *isakmp.ID, now time.Time) (*isakmp.GroupSA, error) {
	g, err := s.join(peer, id, now)
	if err != nil {
		return nil, err
	}
	return g.joinPolicy(now, s.counterReplacedTo(peer)), nil
}

// JoinPayload is Join's answer as the SA payload laid out for every
// member (gdoi.GroupPolicy): the same octets, built once per change of
// the group (laidOut).
func (s *Server) JoinPayload(peer Peer, id *isakmp.ID, now time.Time) (gdoi.PolicyAt, error) {
	g, err := s.join(peer, id, now)
	if err != nil {
		return gdoi.PolicyAt{}, err
	}
	l, err := g.laidOut(now, s.counterReplacedTo(peer))
	if err != nil {
		return gdoi.PolicyAt{}, err
	}
	if len(l.replaced) > 0 {
		g.replaced.handedOut++
	}
	return l.sa.At(now, g.pseudotime(now)), nil
}

// join admits a peer to a group (Join) and returns the group.
func (s *Server) join(peer Peer, id *isakmp.ID, now time.Time) (*group, error) {
	g, err := s.lookup(id)
	if err != nil {
		mnemonic.Log(s.peerLog(peer), mnemonic.Warning, "GM_REJECTING_SA_PAYLOAD", "Registration from %s for %s refused: %v", peer.Addr.Addr(), id, err)
		return nil, err
	}
	if g.cfg.Authorize != nil {
		if err := g.cfg.Authorize(peer); err != nil {
			mnemonic.Log(s.peerLog(peer), mnemonic.Alert, "UNAUTHORIZED_IDENTITY", "Group %s received registration from unauthorized identity: %s (%s): %v",
				g.cfg.Name, peer.Addr.Addr(), peer.identity(), err)
			return nil, &gdoi.Refusal{Notify: isakmp.NotifyAuthenticationFailed, Reason: fmt.Sprintf("%s is not authorized for group %s", peer.Addr.Addr(), g.cfg.Name)}
		}
	}
	if !g.isPrimary() && g.unadoptable {
		g.unadoptableRefused++
		if g.unadoptableLog.IsZero() || now.Sub(g.unadoptableLog) >= time.Minute {
			g.unadoptableLog = now
			mnemonic.Log(s.log, mnemonic.Err, "COOP_KS_JOIN_REFUSED", "KS in group %s refuses registrations: it cannot adopt the keys of the primary it follows (configure the same policy and rekey key on every KS)", g.cfg.Name)
		}
		return nil, &gdoi.Refusal{Notify: isakmp.NotifyInvalidIDInformation,
			Reason: fmt.Sprintf("group %s: this secondary KS cannot adopt the primary's keys: register with another KS", g.cfg.Name)}
	}
	if g.isPrimary() || !g.adopted {
		// A secondary hands out the primary's keys as adopted, never
		// keys of its own. A KS that has heard no primary yet (starting,
		// its peers down) serves its own keys: once it adopts a
		// primary's, it forwards them to the GMs it registered
		// (docs/coop.md).
		if err := s.refresh(g, now); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// pseudotime is the group's TBAR clock: time since the first registration
// (Cisco's key servers start it then), in the KS's real time.
func (g *group) pseudotime(now time.Time) time.Duration {
	if g.ptStart.IsZero() {
		return 0
	}
	return now.Sub(g.ptStart)
}

// tbar reports whether any of the group's TEKs uses time-based anti-replay.
func (g *group) tbar() bool {
	for _, t := range g.teks {
		if t.policy.Replay == isakmp.ReplayTime {
			return true
		}
	}
	return false
}

// policy builds the group's SA payload: SAK, then one SAT per TEK.
func (g *group) policy(now time.Time) *isakmp.GroupSA {
	sa := &isakmp.GroupSA{}
	if g.sig.alg != 0 {
		sa.KEK = g.sak(now, g.sig)
	}
	for _, t := range g.teks {
		sa.TEKs = append(sa.TEKs, t.sat(now, g.pseudotime(now)))
	}
	return sa
}

// joinPolicy is policy as a registration at now gets it: the TEKs the
// last rekey replaced after the group's, while handed out (replaced.go;
// ctr: the counter-mode ones too).
func (g *group) joinPolicy(now time.Time, ctr bool) *isakmp.GroupSA {
	sa := g.policy(now)
	for _, t := range g.replaced.live(g, now, ctr) {
		sa.TEKs = append(sa.TEKs, t.sat(now, g.pseudotime(now)))
	}
	return sa
}

// sak is the KEK policy with sig as the key that verifies rekeys.
func (g *group) sak(now time.Time, sig sigKey) *isakmp.SAK { return g.kekPolicy(now, sig).SAK() }

func (t *tek) sat(now time.Time, pseudotime time.Duration) *isakmp.SAT {
	return t.tekPolicy(now, pseudotime).SAT()
}

// wire is the selector as a SAK/SAT carries it.
func (s Selector) wire() isakmp.Selector {
	return isakmp.Selector{Protocol: s.Proto, Src: isakmp.PrefixEndpoint(s.Src, s.SrcPort), Dst: isakmp.PrefixEndpoint(s.Dst, s.DstPort)}
}

func wireAll(ss []Selector) []isakmp.Selector {
	ws := make([]isakmp.Selector, len(ss))
	for i, s := range ss {
		ws[i] = s.wire()
	}
	return ws
}

// bypassList is the value of IPsecBypassBefore/After.
func bypassList(ss []Selector) []byte { return gdoi.BypassList(wireAll(ss)) }

// Keys returns the key download for a GM and records it as a member
// (GROUPKEY-PULL message 4).
func (s *Server) Keys(peer Peer, id *isakmp.ID, sids uint16, now time.Time) (uint32, *isakmp.KD, error) {
	g, bits, ids, err := s.keys(peer, id, sids, now)
	if err != nil {
		return 0, nil, err
	}
	return g.seq, g.keyDownload(bits, ids, now, s.counterReplacedTo(peer)), nil
}

// KeysPayload is Keys' answer as the KD payload laid out for every
// member (gdoi.KeyDownload) with the member's sender IDs: the same
// octets, the key packets built once per change of the group (laidOut).
func (s *Server) KeysPayload(peer Peer, id *isakmp.ID, sids uint16, now time.Time) (uint32, gdoi.KeysWith, error) {
	g, bits, ids, err := s.keys(peer, id, sids, now)
	if err != nil {
		return 0, gdoi.KeysWith{}, err
	}
	l, err := g.laidOut(now, s.counterReplacedTo(peer))
	if err != nil {
		return 0, gdoi.KeysWith{}, err
	}
	return g.seq, l.kd.With(bits, ids), nil
}

// keyDownload is the group's KD payload at now with the sender IDs ids at
// bits bits (nil: none): the TEKs' key packets (the replaced ones handed
// out too; ctr: the counter-mode ones), the KEK's, the IDs'.
func (g *group) keyDownload(bits int, ids []uint32, now time.Time, ctr bool) *isakmp.KD {
	kd := &isakmp.KD{}
	for _, t := range g.teks {
		kd.Packets = append(kd.Packets, t.packet())
	}
	for _, t := range g.replaced.liveKeys(g, now, ctr) {
		kd.Packets = append(kd.Packets, t.packet())
	}
	if g.sig.alg != 0 {
		kd.Packets = append(kd.Packets, g.kekPacket(g.sig))
	}
	if ids != nil {
		kd.Packets = append(kd.Packets, gdoi.SIDKeyPacket(bits, ids))
	}
	return kd
}

// keys records a GM's registration (Keys) and returns its group and, if
// the group's keys need them, the sender IDs it gets at bits bits (nil:
// none).
func (s *Server) keys(peer Peer, id *isakmp.ID, sids uint16, now time.Time) (g *group, bits int, ids []uint32, err error) {
	g, err = s.lookup(id)
	if err != nil {
		return nil, 0, nil, err
	}
	for _, t := range g.teks {
		if t.authKey != nil {
			continue
		}
		// Counter-mode keys need sender IDs: refused before the GM is
		// recorded while the KSs split them differently (coop.go).
		if err := g.sidViewsAgree(s.log, now); err != nil {
			return nil, 0, nil, err
		}
		break
	}
	m, mi := g.members.getAt(peer.Addr.Addr())
	if m == nil {
		m, mi = g.members.addAt(peer.Addr.Addr())
		m.registered = unixNano(now)
		g.membersGen++
	} else if m.removed || m.version != peer.Version {
		g.membersGen++
	}
	m.setIdentity(peer.identity())
	// Removed by a GM removal since it last registered: no rekey reaches
	// the IDs it holds (retire).
	cutOff := m.removals != g.removals
	m.removals = g.removals
	m.version, m.lastRegister, m.port = peer.Version, unixNano(now), peer.Addr.Port()
	m.registrations++
	g.regs++
	m.removed, m.missed = false, 0
	s.dirty = true
	g.members.touchAt(m, mi) // stored again (its sender IDs set below with it): Server.DeltaState
	if g.ptStart.IsZero() {
		g.ptStart, g.synced = now, now
	}
	needSIDs := false
	for _, t := range g.teks {
		if t.authKey == nil {
			needSIDs = true
		}
	}
	if needSIDs {
		// RFC 6407 §5.6.4: counter-mode keys need a SID key packet. A GM
		// that asked for none still gets one, and one that asks for more
		// than MaxSIDsPerMember gets that many: the ID space is shared by
		// the whole group until the keys change (less the IDs members
		// carry into the new keys: carrySIDs). Its width is the group's
		// now (sid.go), in NUMBER_OF_SID_BITS.
		n := min(max(int(sids), 1), MaxSIDsPerMember)
		first := m.sidEpoch != g.sidEpoch
		if first {
			m.sidEpoch, m.sidEpochIDs = g.sidEpoch, 0
		}
		if int(m.sidEpochIDs)+n > SIDsPerMemberPerKeys {
			g.sidRefusedMember++
			if g.sidRefusedMemberLog.IsZero() || now.Sub(g.sidRefusedMemberLog) >= time.Minute {
				g.sidRefusedMemberLog = now
				mnemonic.Log(s.log, mnemonic.Warning, "GM_SID_BOUND", "Group %s refuses registration of GM %s: it had %d sender IDs under the current keys (at most %d until a rekey)",
					g.cfg.Name, m.addr, m.sidEpochIDs, SIDsPerMemberPerKeys)
			}
			return nil, 0, nil, &gdoi.Refusal{Notify: isakmp.NotifyAttributesNotSupported,
				Reason: fmt.Sprintf("group %s: GM %s had %d sender IDs under the current keys (at most %d until a rekey)", g.cfg.Name, m.addr, m.sidEpochIDs, SIDsPerMemberPerKeys)}
		}
		ids = make([]uint32, 0, n)
		for i := 0; i < n; i++ {
			sid, err := g.allocSID(now, first)
			if err != nil {
				return nil, 0, nil, err
			}
			ids = append(ids, sid)
		}
		m.sidEpochIDs += uint8(n)
		switch {
		case cutOff:
			// A GM removal since its last registration: the KEK it
			// holds gets no more rekeys, and the keys it holds already
			// count its IDs as used.
			delete(g.members.prevSIDs, m.addr)
		case g.sig.alg != 0:
			// The GM may never get this answer and go on with the IDs
			// it has, into the next rekey's keys: they stay counted as
			// held (retire). Without rekeys a GM gets new keys only by
			// registering, with new IDs.
			g.sidPrevForgotten += uint64(g.members.retire(m))
		}
		g.members.setSIDs(m, ids)
		m.sidBits = uint8(max(g.sidBits, MinSIDBits))
		bits = int(m.sidBits)
	}
	logRegsComplete(s.log, g.cfg.Name, m.addr)
	return g, bits, ids, nil
}

// logRegsComplete logs KS_REGS_COMPLETE, "KS completed successful
// registration in group %s with GM %s.", formatted on the stack: a line
// per registration, whose arguments boxed into ...any were two
// allocations (issue 18).
func logRegsComplete(l *slog.Logger, group string, addr netip.Addr) {
	const format = "KS completed successful registration in group %s with GM %s."
	if !addr.IsValid() {
		mnemonic.Log(l, mnemonic.Notice, "KS_REGS_COMPLETE", format, group, addr) // fmt's text of an invalid address
		return
	}
	var buf [160]byte
	b := append(buf[:0], "KS completed successful registration in group "...)
	b = append(b, group...)
	b = append(b, " with GM "...)
	b = addr.AppendTo(b)
	mnemonic.LogText(l, mnemonic.Notice, "KS_REGS_COMPLETE", append(b, '.'))
}

// GroupSnapshot is a copy of one group's state for show commands.
type GroupSnapshot struct {
	Pseudotime time.Duration // TBAR clock now
	NextResync time.Time     // the next TBAR resynchronisation rekey
	Rekeys     int           // rekeys sent
	Unicast    bool          // rekeys go to each member
	// Secondary: this KS is not the group's primary now (COOP decides;
	// a group without Redundancy is always primary).
	Secondary bool
	// Redundancy is the group's COOP configuration (nil: a lone KS).
	Redundancy  *Redundancy
	Retransmit  time.Duration // RekeyPolicy.Retransmit
	Retransmits int           // RekeyPolicy.Retransmits
	Name        string
	ID          uint32
	Seq         uint32
	KEKSPI      [isakmp.KEKSPILen]byte
	KEKExpire   time.Time
	KEKLifetime time.Duration
	KEKBits     int
	SigAlg      isakmp.SigAlg
	TEKs        []TEKSnapshot
	Members     []Member
	// MemberCount is the number of members, also when Members is left
	// out (SnapshotOf without members).
	MemberCount int
	// Registrations, AcksReceived and AcksMissed are the members'
	// counters summed (Member's), also when Members is left out.
	Registrations, AcksReceived, AcksMissed int
}

// TEKSnapshot describes one TEK without its keys.
type TEKSnapshot struct {
	SPI          uint32
	Transform    isakmp.ESPTransform
	KeyBits      int
	AuthAlg      uint16
	Selector     Selector
	Expires      time.Time
	Lifetime     time.Duration
	Replay       uint16
	ReplayWindow int
	ACLName      string // the match address ACL (TEKPolicy.ACLName)
	ProfileName  string // the crypto ipsec profile (TEKPolicy.ProfileName)
	// BypassBefore and BypassAfter are the match ACL's deny entries
	// around Selector, in ACL order (TEKPolicy.Bypass).
	BypassBefore, BypassAfter []Selector
}

// Snapshot copies every group's state at now (the TBAR pseudotime), by
// group name; members by address. It changes nothing.
func (s *Server) Snapshot(now time.Time) []GroupSnapshot { return s.SnapshotOf(now, true) }

// Member is a copy of the group's member at addr (show crypto gdoi ks
// members A.B.C.D: one lookup, not a copy of every member).
func (s *Server) Member(name string, addr netip.Addr) (Member, bool) {
	g := s.byName[name]
	if g == nil {
		return Member{}, false
	}
	m := g.members.get(addr)
	if m == nil {
		return Member{}, false
	}
	return g.members.export(m), true
}

// MemberCount is the number of members of group name (0 for no such
// group), without copying them.
func (s *Server) MemberCount(name string) int {
	if g := s.byName[name]; g != nil {
		return g.members.len()
	}
	return 0
}

// SnapshotOf is Snapshot, with the members copied only when members is
// set (issue 18: copying and sorting 100,000 members takes the node's
// loop for tens of milliseconds; the commands that only count them do
// not need them).
func (s *Server) SnapshotOf(now time.Time, members bool) []GroupSnapshot {
	var out []GroupSnapshot
	for _, g := range s.groups {
		gs := GroupSnapshot{Pseudotime: g.pseudotime(now), NextResync: g.synced.Add(TBARResync), Name: g.cfg.Name, ID: g.cfg.ID, Seq: g.seq, Rekeys: g.rekeys, Unicast: g.cfg.Rekey.Unicast, Secondary: !g.isPrimary(), Redundancy: g.cfg.Redundancy.Clone(), Retransmit: g.cfg.Rekey.withDefaults().Retransmit, Retransmits: g.cfg.Rekey.withDefaults().Retransmits, KEKSPI: g.kekSPI, KEKExpire: g.kekExp, KEKLifetime: g.cfg.KEKLifetime,
			KEKBits: g.cfg.KEKKeyBits, SigAlg: g.sig.alg}
		for _, t := range g.teks {
			gs.TEKs = append(gs.TEKs, TEKSnapshot{SPI: t.spi, Transform: t.policy.Transform, KeyBits: t.policy.KeyBits,
				AuthAlg: t.policy.AuthAlg, Selector: t.sel, Expires: t.expires, Lifetime: t.policy.Lifetime,
				Replay: t.policy.Replay, ReplayWindow: t.policy.ReplayWindow, ACLName: t.policy.ACLName, ProfileName: t.policy.ProfileName, BypassBefore: t.before, BypassAfter: t.after})
		}
		gs.MemberCount = g.members.len()
		gs.Registrations, gs.AcksReceived, gs.AcksMissed = g.regs, g.acked, g.missed
		if members {
			gs.Members = make([]Member, 0, g.members.len())
			for i := range int32(g.members.len()) {
				gs.Members = append(gs.Members, g.members.export(g.members.at(i)))
			}
			sort.Slice(gs.Members, func(i, j int) bool { return gs.Members[i].Address.Less(gs.Members[j].Address) })
		}
		out = append(out, gs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
