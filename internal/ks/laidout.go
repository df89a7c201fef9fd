package ks

import (
	"fmt"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// laidOut is what every registration with a group is answered, laid out
// once (gdoi.GroupPolicy: the SA payload of message 2; gdoi.KeyDownload:
// the TEKs' and the KEK's key packets of message 4), with what it was
// laid out from. Each registration checks that against the group as it
// is (current) and lays it out again when anything it says changed: a
// rekey, a GM removal, a policy replace (new TEKs, maybe a new KEK), a
// TEK or KEK replaced as it ages (refresh), a configuration change (the
// KS address, the rekey's multicast group, acknowledgements, the KEK's
// length, the rekey key), keys adopted from a COOP primary or restored,
// a rollback. Without it each registration built and encoded both again
// (issue 18: ~20 allocations and ~2 KB of the KS's registration).
type laidOut struct {
	sa *gdoi.GroupPolicy
	kd *gdoi.KeyDownload

	// What they were laid out from: the KEK's policy (Remaining zero;
	// hasKEK false: none), its key and the public rekey key the members
	// get, and the TEKs with the times they end (the only field of a
	// TEK changed in place: AdoptKeys) and SPIs.
	hasKEK  bool
	kek     gdoi.KEKPolicy
	kekExp  time.Time
	kekKey  []byte
	sigPub  []byte
	teks    []*tek
	expires []time.Time
	spis    []uint32
	// replaced: the replaced TEKs laid out after teks in the SA payload
	// (replacedTEKs.live), replacedKeys those whose keys the KD carries
	// (liveKeys); ctr, for members that take counter-mode ones.
	replaced, replacedKeys []*tek
	ctr                    bool
}

// kekPolicy is the KEK's policy with sig as the key that verifies
// rekeys, the lifetime left at now.
func (g *group) kekPolicy(now time.Time, sig sigKey) gdoi.KEKPolicy {
	return gdoi.KEKPolicy{Src: g.cfg.Address, Multicast: g.cfg.Rekey.Multicast, SPI: g.kekSPI, KeyBits: g.cfg.KEKKeyBits,
		Remaining: g.kekExp.Sub(now), SigAlg: sig.alg, SigBits: sig.bits, Ack: g.cfg.Rekey.Unicast}
}

// tekPolicy is the TEK's policy, the lifetime left at now.
func (t *tek) tekPolicy(now time.Time, pseudotime time.Duration) gdoi.TEKPolicy {
	return gdoi.TEKPolicy{Selector: t.sel.wire(), Transform: t.policy.Transform, SPI: t.spi, KeyBits: t.policy.KeyBits,
		AuthAlg: t.policy.AuthAlg, Remaining: t.expires.Sub(now), Lifetime: t.policy.Lifetime, ReceiveOnly: t.receiveOnly,
		Replay: t.policy.Replay, ReplayWindow: t.policy.ReplayWindow, Pseudotime: pseudotime,
		BypassBefore: wireAll(t.before), BypassAfter: wireAll(t.after)}
}

// sameBytes reports whether a and b are the same slice (keys are
// replaced, never changed in place).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// current reports whether l says what the group says at now.
func (l *laidOut) current(g *group, now time.Time) bool {
	if !slices.Equal(g.replaced.live(g, now, l.ctr), l.replaced) || !slices.Equal(g.replaced.liveKeys(g, now, l.ctr), l.replacedKeys) {
		return false
	}
	return l.sameKeys(g)
}

// sameKeys reports whether l lays out the group's KEK and TEKs.
func (l *laidOut) sameKeys(g *group) bool {
	hasKEK := g.sig.alg != 0
	if l.hasKEK != hasKEK || len(l.teks) != len(g.teks) {
		return false
	}
	if hasKEK {
		k := g.kekPolicy(g.kekExp, g.sig) // Remaining zero
		if k != l.kek || g.kekExp != l.kekExp || !sameBytes(g.kekKey, l.kekKey) || !sameBytes(g.sig.pub, l.sigPub) {
			return false
		}
	}
	for i, t := range g.teks {
		if t != l.teks[i] || t.expires != l.expires[i] || t.spi != l.spis[i] {
			return false
		}
	}
	return true
}

// laidOut returns the group's policy and key packets laid out, laid out
// again if anything they say changed; ctr, for a member that takes
// replaced counter-mode TEKs (Server.counterReplacedTo: a layout of its
// own while one is handed out, the others' otherwise). The key packets
// laid out before are cleared when they are replaced. It fails only if
// gdoi cannot lay out what it encodes (TestLaidOutIsWhatThePayloadsSay).
func (g *group) laidOut(now time.Time, ctr bool) (*laidOut, error) {
	live := g.replaced.counterLive(g, now)
	if o := g.out[1]; o != nil && !live { // its hand-out over: its keys go
		o.kd.Clear()
		g.out[1] = nil
	}
	ctr = ctr && live
	i := 0
	if ctr {
		i = 1
	}
	if o := g.out[i]; o != nil && o.current(g, now) {
		return o, nil
	}
	l := &laidOut{hasKEK: g.sig.alg != 0, ctr: ctr}
	var kek *gdoi.KEKPolicy
	var packets []*isakmp.KeyPacket
	for _, t := range g.teks {
		packets = append(packets, t.packet())
	}
	l.replaced, l.replacedKeys = g.replaced.live(g, now, ctr), g.replaced.liveKeys(g, now, ctr)
	for _, t := range l.replacedKeys {
		packets = append(packets, t.packet())
	}
	if l.hasKEK {
		l.kek, l.kekExp, l.kekKey, l.sigPub = g.kekPolicy(g.kekExp, g.sig), g.kekExp, g.kekKey, g.sig.pub
		kek = &l.kek
		packets = append(packets, g.kekPacket(g.sig))
	}
	teks := make([]gdoi.TEKPolicy, len(g.teks), len(g.teks)+len(l.replaced))
	for i, t := range g.teks {
		teks[i] = t.tekPolicy(t.expires, 0)
		l.teks = append(l.teks, t)
		l.expires = append(l.expires, t.expires)
		l.spis = append(l.spis, t.spi)
	}
	expires := l.expires
	if len(l.replaced) > 0 {
		// After the current TEKs, with the lifetime they have left.
		expires = slices.Clone(l.expires)
		for _, t := range l.replaced {
			teks = append(teks, t.tekPolicy(t.expires, 0))
			expires = append(expires, t.expires)
		}
	}
	sa, err := gdoi.NewGroupPolicy(kek, l.kekExp, teks, expires)
	if err != nil {
		return nil, fmt.Errorf("ks: group %s: %w", g.cfg.Name, err)
	}
	l.sa, l.kd = sa, gdoi.NewKeyDownload(packets)
	if o := g.out[i]; o != nil && o.kd.Equal(l.kd) {
		// The same key packets: the layout before's, which the answers
		// of the exchanges lingering refer to (gdoi.Serve builds a lost
		// message 4 again from it, until it is cleared).
		l.kd.Clear()
		l.kd = o.kd
	} else if o != nil {
		o.kd.Clear()
	}
	g.out[i] = l
	return l, nil
}

// dropStale forgets the layouts (both: laidOut) once the group no longer
// says what they say, their key packets cleared: a rekey, a removal, a
// TEK or the KEK refreshed as it ages, adopted or restored keys replace
// the keys they hold, which would otherwise stay in memory
// until the next registration laid the group out again (none may come
// for hours in a settled group).
func (g *group) dropStale() {
	for i, o := range g.out {
		if o != nil && !o.sameKeys(g) {
			o.kd.Clear()
			g.out[i] = nil
		}
	}
}
