// Package sadb is the group SA database of a group member: the KEKs and
// TEKs it holds. A data plane (userspace ESP, Linux XFRM) sees only the
// Dataplane interface (TEKs, fail modes) and PolicyStore; KEKs are kept
// for the GM role (gm.KEKStore). Memory is the in-memory implementation
// of all of them, used in isakmpd without tmd, in tmd and in tests.
package sadb

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// TEK is one traffic-encryption SA of a group (RFC 6407 §5.5, §5.6.1).
type TEK struct {
	Group     string
	GroupID   uint32
	SPI       uint32
	Protocol  isakmp.TEKProtocol
	Transform uint8 // isakmp.ESPTransform or AHTransform
	KeyBits   int
	AuthAlg   uint16 // isakmp.AuthAlg* for CBC/AH, 0 for AEAD
	EncKey    []byte // TEK_ALGORITHM_KEY (GCM: key | 4-octet salt)
	AuthKey   []byte // TEK_INTEGRITY_KEY
	Src, Dst  netip.Prefix
	IPProto   uint8
	SrcPort   uint16
	DstPort   uint16
	SenderIDs []uint32 // RFC 6054 sender IDs allocated to this member
	SIDBits   int
	Installed time.Time
	Expires   time.Time
	Lifetime  time.Duration // as received: what remained at the KS
	// Configured is the lifetime configured on the KS (TEK_CLT of the
	// shortening formula); Lifetime when the KS did not send it.
	Configured time.Duration
	// SendFrom is when the GM starts sending with the TEK (its install
	// time plus the rekey's ATD); a receiver accepts it at once.
	SendFrom time.Time
	// Deactivate, when set, is when the GM stops accepting the TEK: a
	// rekey replaced it, DTD after its arrival (and never after Expires).
	Deactivate time.Time
	// ReceiveOnly: install for decryption only (SA Direction
	// Receiver-Only, RFC 6407 §5.5.1.1.2; `sa receive-only`).
	ReceiveOnly bool
	// Anti-replay (SPEC T2): isakmp.ReplayCounter (Window packets),
	// ReplayTime (Window seconds of pseudotime) or ReplayNone.
	ReplayMethod uint16
	ReplayWindow int
	// Pseudotime is the KS's pseudotime when the SA arrived (TBAR);
	// the GM's pseudotime at t is Pseudotime + (t - PseudotimeAt).
	Pseudotime   time.Duration
	PseudotimeAt time.Time
}

// Ends is when the TEK's lifetime ends: its Deactivate when set and
// before Expires (RFC 6407 §4.5: a replaced TEK is kept only until DTD),
// else Expires. A zero time never ends.
func (t TEK) Ends() time.Time {
	if !t.Deactivate.IsZero() && (t.Expires.IsZero() || t.Deactivate.Before(t.Expires)) {
		return t.Deactivate
	}
	return t.Expires
}

// Ended reports whether the TEK's lifetime ended at now.
func (t TEK) Ended(now time.Time) bool { return ended(t.Ends(), now) }

// Ended reports whether the KEK's lifetime ended at now (zero: never).
func (k KEK) Ended(now time.Time) bool { return ended(k.Expires, now) }

func ended(end, now time.Time) bool { return !end.IsZero() && !now.Before(end) }

// PseudotimeNow returns the TBAR pseudotime of the TEK at now.
func (t TEK) PseudotimeNow(now time.Time) time.Duration {
	return t.Pseudotime + now.Sub(t.PseudotimeAt)
}

// FailMode is what a GM does with traffic its policy covers while it holds
// no TEK for it (SPEC T3): FailOpen passes it in the clear, FailClose
// drops it.
type FailMode int

const (
	FailOpen FailMode = iota
	FailClose
)

func (f FailMode) String() string {
	if f == FailClose {
		return "fail-close"
	}
	return "fail-open"
}

// KEK is the rekey SA of a group (RFC 6407 §5.3, §5.6.2).
type KEK struct {
	Group   string
	GroupID uint32
	SPI     [isakmp.KEKSPILen]byte
	Alg     isakmp.KEKAlg
	KeyBits int
	Key     []byte // IV | key as downloaded (§5.6.2.1)
	SigAlg  isakmp.SigAlg
	SigKey  []byte // the KS's public rekey key, DER SubjectPublicKeyInfo
	Ack     bool   // the KS asked for RFC 8263 acknowledgements
	// Multicast is the group rekeys arrive on (the SAK's multicast
	// destination); invalid for unicast rekeys.
	Multicast netip.AddrPort
	Installed time.Time
	Expires   time.Time
}

// Dataplane is what a data plane needs of a GM's SA database: SA and
// policy operations only (the TEKs and the group's fail mode; the ordered
// policy through PolicyStore). KEKs are not here: a KEK opens rekeys and
// never a packet, so it belongs to the GM role and the store
// (gm.KEKStore, which Memory and tmd's client implement too).
type Dataplane interface {
	InstallTEK(TEK) error
	DeleteTEK(group string, spi uint32) error
	TEKs() []TEK
	// SetFailMode records the group's fail mode for the data plane to
	// enforce when the group has no TEK.
	SetFailMode(group string, m FailMode)
	FailMode(group string) FailMode
}

// Action is what a group's policy does with the traffic an entry selects.
type Action uint8

const (
	// Protect: encrypt with the group's TEK for the entry's selector
	// (an ACL permit entry).
	Protect Action = iota + 1
	// Bypass: pass in the clear, never encrypted (an ACL deny entry:
	// routing protocols, GDOI itself).
	Bypass
)

func (a Action) String() string {
	switch a {
	case Protect:
		return "permit"
	case Bypass:
		return "deny"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// MarshalText shows the action as the ACL keyword ("permit", "deny").
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses the ACL keyword MarshalText writes, so that a
// policy travels as JSON (tmd's API) and comes back; any other text is
// an error.
func (a *Action) UnmarshalText(b []byte) error {
	switch string(b) {
	case "permit":
		*a = Protect
	case "deny":
		*a = Bypass
	default:
		return fmt.Errorf("sadb: unknown policy action %q (want permit or deny)", b)
	}
	return nil
}

// PolicyEntry is one entry of a group's downloaded policy: the KS's match
// ACL, in its order. The first entry that matches a packet decides
// (IOS semantics); a packet no entry matches is not the group's.
type PolicyEntry struct {
	Action           Action
	IPProto          uint8 // 0: any
	Src, Dst         netip.Prefix
	SrcPort, DstPort uint16 // 0: any
	// SPI is the TEK a Protect entry was last downloaded with; 0 for
	// Bypass. Around a rekey the group holds older TEKs with the same
	// selector: the data plane sends with the one whose SendFrom has
	// come and accepts each until its Deactivate.
	SPI uint32
}

// Matches reports whether a packet with these fields is the entry's.
func (e PolicyEntry) Matches(proto uint8, src, dst netip.Addr, srcPort, dstPort uint16) bool {
	return (e.IPProto == 0 || e.IPProto == proto) && e.Src.Contains(src) && e.Dst.Contains(dst) &&
		(e.SrcPort == 0 || e.SrcPort == srcPort) && (e.DstPort == 0 || e.DstPort == dstPort)
}

// Lookup returns the first entry of p matching the packet, and false when
// none does (the packet is not the group's: it passes as routed).
func Lookup(p []PolicyEntry, proto uint8, src, dst netip.Addr, srcPort, dstPort uint16) (PolicyEntry, bool) {
	for _, e := range p {
		if e.Matches(proto, src, dst, srcPort, dstPort) {
			return e, true
		}
	}
	return PolicyEntry{}, false
}

// PolicyStore keeps each group's ordered policy next to its TEKs. It is
// separate from Dataplane so that an SA database that does not keep a
// policy yet still serves; Memory implements it.
type PolicyStore interface {
	// SetPolicy replaces the group's policy (nil removes it).
	SetPolicy(group string, p []PolicyEntry)
	// Policy returns a copy of the group's policy, in order.
	Policy(group string) []PolicyEntry
}

// Remote is a Dataplane kept by another process (tmd, SPEC D1): TEKs
// and FailMode (and its KEKs) answer from a local copy, fast enough for a node's
// every turn; Fetch asks the owner and is what the show commands use.
type Remote interface {
	Dataplane
	Fetch(ctx context.Context) ([]TEK, []KEK, error)
	// Where names the owner ("tmd at /run/groupvpn/tmd.sock").
	Where() string
}

var (
	_ Dataplane   = (*Memory)(nil)
	_ PolicyStore = (*Memory)(nil)
	_ Expirer     = (*Memory)(nil)
)

// Expirer is an SA database that enforces its SAs' lifetimes: Expire is
// the one place an SA is deleted because its lifetime ended (isakmpd's
// node only tells its database the time; tmd's sweep expires tmd's). It
// deletes every TEK and KEK that Ended at now, returns them, and the next
// time one ends (zero: none).
type Expirer interface {
	Expire(now time.Time) (teks []TEK, keks []KEK, next time.Time)
}

// Memory is a Dataplane that only remembers. Safe for concurrent use (the
// operator's show commands read it while the node writes it).
type Memory struct {
	mu   sync.Mutex
	teks map[string]map[uint32]TEK
	keks map[string]KEK
	fail map[string]FailMode
	pol  map[string][]PolicyEntry
}

// NewMemory returns an empty in-memory SA database.
func NewMemory() *Memory {
	return &Memory{teks: map[string]map[uint32]TEK{}, keks: map[string]KEK{}, fail: map[string]FailMode{}, pol: map[string][]PolicyEntry{}}
}

func (m *Memory) InstallTEK(t TEK) error {
	if t.SPI == 0 {
		return fmt.Errorf("sadb: TEK of group %s has SPI 0", t.Group)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.teks[t.Group] == nil {
		m.teks[t.Group] = map[uint32]TEK{}
	}
	m.teks[t.Group][t.SPI] = t
	return nil
}

func (m *Memory) DeleteTEK(group string, spi uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.teks[group][spi]; !ok {
		return fmt.Errorf("sadb: group %s has no TEK with SPI 0x%08x", group, spi)
	}
	delete(m.teks[group], spi)
	return nil
}

func (m *Memory) InstallKEK(k KEK) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keks[k.Group] = k
	return nil
}

func (m *Memory) DeleteKEK(group string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keks, group)
	return nil
}

// Expire deletes every TEK and KEK whose lifetime ended at now (TEK.Ended,
// KEK.Ended), atomically: a KEK a rekey replaced meanwhile is not the one
// deleted. It returns what it deleted and the next end, zero when none.
func (m *Memory) Expire(now time.Time) (teks []TEK, keks []KEK, next time.Time) {
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for g, byspi := range m.teks {
		for spi, t := range byspi {
			if t.Ended(now) {
				delete(byspi, spi)
				teks = append(teks, t)
			} else {
				earliest(t.Ends())
			}
		}
		if len(byspi) == 0 {
			delete(m.teks, g)
		}
	}
	for g, k := range m.keks {
		if k.Ended(now) {
			delete(m.keks, g)
			keks = append(keks, k)
		} else {
			earliest(k.Expires)
		}
	}
	slices.SortFunc(teks, func(a, b TEK) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return cmp.Compare(a.SPI, b.SPI)
	})
	slices.SortFunc(keks, func(a, b KEK) int { return strings.Compare(a.Group, b.Group) })
	return teks, keks, next
}

// TEKs returns every TEK, by group then SPI.
func (m *Memory) TEKs() []TEK {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []TEK
	for _, g := range m.teks {
		for _, t := range g {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b TEK) int {
		if a.Group != b.Group {
			if a.Group < b.Group {
				return -1
			}
			return 1
		}
		return int(int64(a.SPI) - int64(b.SPI))
	})
	return out
}

// KEKs returns every KEK, by group.
func (m *Memory) KEKs() []KEK {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []KEK
	for _, k := range m.keks {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b KEK) int {
		switch {
		case a.Group < b.Group:
			return -1
		case a.Group > b.Group:
			return 1
		}
		return 0
	})
	return out
}

func (m *Memory) SetFailMode(group string, f FailMode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail[group] = f
}

func (m *Memory) FailMode(group string) FailMode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fail[group]
}

func (m *Memory) SetPolicy(group string, p []PolicyEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == nil {
		delete(m.pol, group)
		return
	}
	m.pol[group] = slices.Clone(p)
}

func (m *Memory) Policy(group string) []PolicyEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pol[group])
}

// Policies returns a copy of every group's policy (tmd lists them all and
// a client writes them all back after a tmd restart).
func (m *Memory) Policies() map[string][]PolicyEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]PolicyEntry, len(m.pol))
	for g, p := range m.pol {
		out[g] = slices.Clone(p)
	}
	return out
}
