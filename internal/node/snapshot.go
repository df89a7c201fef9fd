package node

import (
	"context"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/version"
)

// Snapshot is a copy of everything the show commands display.
type Snapshot struct {
	Hostname string
	Now      time.Time
	Version  version.Version
	Addrs    []netip.AddrPort
	KS       []ks.GroupSnapshot
	GM       []MemberState
	TEKs     []sadb.TEK
	KEKs     []sadb.KEK
	// Phase1 lists the established phase-1 SAs (State and StatePhase1
	// only: nil in the others); Phase1Count counts them in every
	// snapshot, without copying them (issue 18: 100,000 members hold
	// 100,000 SAs).
	Phase1      []ike.Info
	Phase1Count int
	// FailModes is each GM group's fail mode.
	FailModes map[string]sadb.FailMode
	// SADB names where TEKs and KEKs were read: "" for this process,
	// else the owner (tmd), with SADBErr set when it could not be asked
	// and the daemon's own copy is shown.
	SADB    string
	SADBErr string
	// Counters by stable snake_case name (SPEC S5): phase 1 summed over
	// every socket (closed ones included), the GM role, the KS role (nil
	// when the node has no such role).
	ISAKMPCounters []ike.Counter
	GMCounters     []ike.Counter
	KSCounters     []ike.Counter
	// StoreCounters are the state store's (nil without a store),
	// LogCounters the log rate limiter's.
	StoreCounters []ike.Counter
	LogCounters   []ike.Counter
	// LastRekeys is, by KS group, the last rekey delivery completed.
	LastRekeys map[string]LastRekey
	// COOP is, by KS group name, the cooperative key server state of the
	// groups configured with redundancy (nil without any); COOPCounters
	// their counters summed (nil without any).
	COOP         map[string]COOPStatus
	COOPCounters []ike.Counter
	// Unserved are the KS groups whose configured address no local
	// socket serves: their rekeys are held.
	Unserved map[string]netip.Addr
}

// Snapshot copies the node's state; call it inside Do.
func (n *Node) Snapshot() Snapshot { return n.snapshot(true, true) }

// snapshot copies the node's state, the KS groups' members only with
// members (ks.GroupSnapshot.MemberCount counts them either way), the
// phase-1 SAs only with phase1 (Phase1Count counts them either way).
func (n *Node) snapshot(members, phase1 bool) Snapshot {
	s := Snapshot{Hostname: n.o.Hostname, Now: n.o.Now(), Version: n.o.IKE.Version, Addrs: n.Addrs(),
		GM: n.Members(), TEKs: n.dp.TEKs(), KEKs: n.keks.KEKs(), Phase1Count: n.phaseOneCount()}
	if phase1 {
		s.Phase1 = n.PhaseOneSAs()
	}
	s.FailModes = map[string]sadb.FailMode{}
	for _, r := range n.regs {
		s.FailModes[r.cfg.Name] = n.dp.FailMode(r.cfg.Name)
	}
	s.Version = s.Version.OrCurrent()
	s.ISAKMPCounters = n.ISAKMPCounters()
	s.StoreCounters = n.StoreCounters()
	s.LogCounters = n.LogCounters()
	if len(n.regs) > 0 {
		s.GMCounters = n.GMCounters()
	}
	if n.ks != nil {
		s.KS = n.ks.SnapshotOf(s.Now, members)
		s.KSCounters = n.KSCounters()
		s.Unserved = n.UnservedAddresses()
		s.LastRekeys = n.delivery.LastRekeys()
		s.COOP = n.COOPStatus()
		s.COOPCounters = n.COOPCounters()
	}
	return s
}

// State returns a Snapshot taken on the node's goroutine. When the SAs
// live in another process (tmd), they are then asked for from this
// goroutine, so that the node's event loop never waits on tmd.
func (n *Node) State(ctx context.Context) (Snapshot, error) { return n.state(ctx, true, true) }

// StateCounts is State without the KS groups' member lists (Members nil,
// MemberCount set), for the commands that only count them: at 100,000
// members the full copy holds the node's goroutine for tens of
// milliseconds, this one for microseconds (issue 18, TestSnapshotCost100k).
// Nor does it list the phase-1 SAs (Phase1 nil, Phase1Count set): a
// Prometheus scrape and the show commands other than `show crypto isakmp
// sa` cost the same with 10 or 100,000 of them.
func (n *Node) StateCounts(ctx context.Context) (Snapshot, error) { return n.state(ctx, false, false) }

// StateMembers is State without the phase-1 SAs' list (Phase1Count
// set): `show crypto gdoi ks members` (issue 18).
func (n *Node) StateMembers(ctx context.Context) (Snapshot, error) { return n.state(ctx, true, false) }

// StatePhase1 is State without the KS groups' member lists: `show crypto
// isakmp sa` (issue 18).
func (n *Node) StatePhase1(ctx context.Context) (Snapshot, error) { return n.state(ctx, false, true) }

// StateOfMember is StateCounts with, in each KS group, the member at
// addr alone in Members if it is registered there (show crypto gdoi ks
// members A.B.C.D): a lookup, not a copy of the member lists.
func (n *Node) StateOfMember(ctx context.Context, addr netip.Addr) (Snapshot, error) {
	return n.stateWith(ctx, func() Snapshot {
		s := n.snapshot(false, false)
		for i := range s.KS {
			if m, ok := n.ks.Member(s.KS[i].Name, addr); ok {
				s.KS[i].Members = []ks.Member{m}
			}
		}
		return s
	})
}

func (n *Node) state(ctx context.Context, members, phase1 bool) (Snapshot, error) {
	return n.stateWith(ctx, func() Snapshot { return n.snapshot(members, phase1) })
}

func (n *Node) stateWith(ctx context.Context, snap func() Snapshot) (Snapshot, error) {
	var s Snapshot
	if err := n.Do(ctx, func() { s = snap() }); err != nil {
		return s, err
	}
	if r, ok := n.dp.(sadb.Remote); ok {
		s.SADB = r.Where()
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		teks, keks, err := r.Fetch(ctx)
		s.TEKs, s.KEKs = teks, keks
		if err != nil {
			s.SADBErr = err.Error()
		}
	}
	return s, nil
}
