package node

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/mnemonic"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// COOPStatus is one KS group's cooperative key server state (SPEC C1),
// for `show crypto gdoi ks coop` and the COOP lines of `show crypto gdoi`.
type COOPStatus struct {
	Local    netip.Addr // this KS's address in the group (the election's tie-break)
	Priority uint8      // `local priority`
	Role     coop.Role  // Primary, Secondary or Electing
	Primary  netip.Addr // the primary followed (this KS's address when primary; zero: none known)
	Version  version.Version
	// Period, Dead and ElectionWait are the timers in force (defaults
	// filled in).
	Period, Dead, ElectionWait time.Duration
	// Peers are the configured peer KSs as last heard, each with the
	// version it announced (SPEC V3).
	Peers []coop.PeerStatus
	Stats coop.Stats
	// MembersGen is the generation of this KS's own member list as
	// announced to its peers.
	MembersGen uint64
	// LastSync is when this KS last adopted the policy and keys of the
	// primary; zero: never.
	LastSync time.Time
}

// Cooperative key servers (SPEC C1, docs/coop.md): one coop.Elector per
// KS group configured with redundancy; one IKEv1 phase-1 SA per peer KS
// (whatever the number of groups), over which the groups' announcements
// (ANN, exchange 240) travel, sealed and opened by gdoi.SealANN/OpenANN.
// The node carries out what the electors decide: the role to ks
// (TakeOver, StepDown), the primary's keys adopted and forwarded
// (ks.Delivery.Adopt), the member lists (coopmembers.go).

// coopGroup is one KS group's COOP state.
type coopGroup struct {
	name     string
	id       uint32
	local    netip.Addr
	red      *ks.Redundancy
	el       *coop.Elector
	timer    time.Time
	lastSync time.Time
	peers    map[netip.Addr]*coopPeer
	// keysFrom is the primary whose keys this KS holds: the one it last
	// adopted from, or itself as primary (zero: its own keys, none
	// adopted yet).
	keysFrom netip.Addr
	// removed are the member lists of the peers a reload just removed,
	// for coopInherit when the reload makes this KS primary (a removed
	// primary's GMs hold the keys this KS adopted).
	removed map[netip.Addr][]ks.MemberVersion
}

// coopPeer is what one group knows of one peer KS beyond the elector:
// its last announced policy and keys, and the member lists both ways.
type coopPeer struct {
	sa      *isakmp.GroupSA // its last announced policy (nil: none)
	kd      *isakmp.KD
	seq     uint32 // its last announced rekey sequence number
	ksSet   []byte // its last announced KS set digest (ks.KSSetDigest; nil: none)
	members memberSync
}

// peerKS is the phase-1 SA with one peer KS.
type peerKS struct {
	addr       netip.Addr
	sa         *ike.SA // established, used for ANNs both ways
	sock       *sock
	connecting *ike.SA // initiated, not yet established
	retryAt    time.Time
	backoff    time.Duration
}

// coopCounters are the node's COOP drops (the electors' are coop.Stats).
type coopCounters struct {
	notPeer      uint64 // ANN on a phase-1 SA whose peer is no configured KS
	staleSA      uint64 // ANN on another SA than the current one with that peer
	unauth       uint64 // ANN failing decryption, HASH or parsing
	unknownGroup uint64 // ANN for a group not served here with redundancy
	addrMismatch uint64 // ANN whose KS address is not the SA's peer address
	noSA         uint64 // ANN not sent: no SA with the peer
	adoptFailed  uint64 // the primary's keys could not be adopted (policy mismatch)
	membersBad   uint64 // member-list parts dropped (out of order, mismatched, over bounds)
	fullSyncs    uint64 // full member lists asked for
	fullInFlight uint64 // full-list requests answered by the list already in flight
	peerNotAuth  uint64 // SAs and ANNs from a peer's address not authenticated as that KS (coopAuthorized)
}

// coopInitWait is how long the KS of higher address waits before it
// initiates the SA with a peer (the lower one initiates at once), so that
// two KSs starting together make one SA, not two; at most half the
// election wait.
const coopInitWait = 2 * time.Second

// newCoop builds the electors of the KS groups with redundancy (New).
func (n *Node) newCoop() error {
	for _, g := range n.o.KS {
		if g.Redundancy == nil {
			continue
		}
		if err := n.addCoopGroup(g); err != nil {
			return err
		}
	}
	return nil
}

// coopConfig is the elector configuration of a group with redundancy.
func (n *Node) coopConfig(g ks.GroupConfig) coop.Config {
	r := g.Redundancy
	local := n.ks.Address(g.Name)
	if !local.IsValid() && len(n.o.Listen) > 0 {
		local = n.o.Listen[0].Addr()
	}
	return coop.Config{Group: g.Name, Local: local, Priority: max(r.Priority, 1), Peers: r.Peers,
		Version: n.version(), Period: r.Period, Dead: r.Dead, ElectionWait: r.ElectionWait}
}

// checkCoop reports whether g's redundancy can be applied (coop.New
// checks what SetPeers and Reconfigure would): UpdateKSPolicy checks it
// before it changes anything.
func (n *Node) checkCoop(g ks.GroupConfig) error {
	if g.Redundancy == nil {
		return nil
	}
	if _, err := coop.New(n.coopConfig(g)); err != nil {
		return fmt.Errorf("group %s: redundancy: %w", g.Name, err)
	}
	return nil
}

func (n *Node) addCoopGroup(g ks.GroupConfig) error {
	cfg := n.coopConfig(g)
	el, err := coop.New(cfg)
	if err != nil {
		return fmt.Errorf("group %s: redundancy: %w", g.Name, err)
	}
	local := cfg.Local
	if n.coop == nil {
		n.coop = map[string]*coopGroup{}
		n.ksPeers = map[netip.Addr]*peerKS{}
	}
	cg := &coopGroup{name: g.Name, id: g.ID, local: local.Unmap(), red: g.Redundancy.Clone(), el: el, peers: map[netip.Addr]*coopPeer{}}
	n.coop[g.Name] = cg
	n.coopPeersChanged()
	return nil
}

// coopPeersChanged keeps one peerKS per peer address of any group.
func (n *Node) coopPeersChanged() {
	want := map[netip.Addr]bool{}
	for _, cg := range n.coop {
		for _, p := range cg.el.Config().Peers {
			want[p] = true
			if cg.peers[p] == nil {
				cg.peers[p] = &coopPeer{}
			}
		}
		for a := range cg.peers {
			if !slices.Contains(cg.el.Config().Peers, a) {
				delete(cg.peers, a)
			}
		}
	}
	for a := range want {
		if n.ksPeers[a] == nil {
			n.ksPeers[a] = &peerKS{addr: a}
		}
	}
	for a, kp := range n.ksPeers {
		if !want[a] {
			delete(n.ksPeers, a)
			_ = kp // its SA lives out its lifetime like any other
		}
	}
}

// startCoop starts the electors (Run): each announces itself to the
// peers it has an SA with (none yet) and the SAs are initiated: at once
// to a peer of higher address, after coopInitWait to one of lower.
func (n *Node) startCoop(now time.Time) {
	for _, name := range n.coopNames() {
		cg := n.coop[name]
		n.coopResult(cg, cg.el.Start(now), nil, now)
	}
	// Within half the election wait: a restarted KS of higher address
	// must hear the primary before it would elect itself.
	wait := coopInitWait
	for _, cg := range n.coop {
		wait = min(wait, cg.el.Config().ElectionWait/2)
	}
	for _, kp := range n.ksPeers {
		kp.retryAt = now
		if n.coopLocalFor(kp.addr).Compare(kp.addr) > 0 {
			kp.retryAt = now.Add(wait)
		}
	}
}

func (n *Node) coopNames() []string {
	names := make([]string, 0, len(n.coop))
	for k := range n.coop {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// coopLocalFor is this KS's address toward peer (the first group that
// lists it).
func (n *Node) coopLocalFor(peer netip.Addr) netip.Addr {
	for _, name := range n.coopNames() {
		cg := n.coop[name]
		if cg.peers[peer] != nil {
			return cg.local
		}
	}
	return netip.Addr{}
}

// coopSock is the socket bound to local (else the first of its family).
func (n *Node) coopSock(local netip.Addr) *sock {
	for _, s := range n.socks {
		if s.local.Addr().Unmap() == local {
			return s
		}
	}
	for _, s := range n.socks {
		if s.local.Addr().Is4() == local.Is4() {
			return s
		}
	}
	return nil
}

// coopTick runs the electors' timers and (re)initiates the SAs with peers
// that have none.
func (n *Node) coopTick(now time.Time) {
	for _, name := range n.coopNames() {
		cg := n.coop[name]
		if !cg.timer.IsZero() && !cg.timer.After(now) {
			n.coopResult(cg, cg.el.Tick(now), nil, now)
		}
	}
	for _, kp := range n.ksPeers {
		if kp.sa == nil && kp.connecting == nil && !kp.retryAt.IsZero() && !kp.retryAt.After(now) {
			n.coopConnect(kp, now)
		}
	}
	for _, name := range n.coopNames() {
		cg := n.coop[name]
		for a, p := range cg.peers {
			if kp := n.ksPeers[a]; kp != nil && kp.sa != nil && len(p.members.queue) > 0 {
				n.coopParts(cg, a, kp, p)
			}
		}
	}
}

// coopNext is the earliest COOP deadline.
func (n *Node) coopNext() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, cg := range n.coop {
		earlier(cg.timer)
		for a, p := range cg.peers {
			if kp := n.ksPeers[a]; kp != nil && kp.sa != nil && len(p.members.queue) > 0 {
				earlier(n.o.Now()) // more parts to send: the next turn
			}
		}
	}
	for _, kp := range n.ksPeers {
		if kp.sa == nil && kp.connecting == nil {
			earlier(kp.retryAt)
		}
	}
	return next
}

// coopConnect initiates main mode with a peer KS from the socket of this
// KS's address toward it, to the same port (the KSs of a group listen on
// one port, 848 in a deployment).
func (n *Node) coopConnect(kp *peerKS, now time.Time) {
	s := n.coopSock(n.coopLocalFor(kp.addr))
	if s == nil || s.ep == nil {
		n.coopRetry(kp, now)
		return
	}
	sa, out, err := s.ep.Initiate(netip.AddrPortFrom(kp.addr, s.local.Port()), now)
	if err != nil {
		n.log.Warn("COOP: cannot initiate phase 1 with peer key server", "peer", kp.addr.String(), "err", err)
		n.coopRetry(kp, now)
		return
	}
	kp.connecting = sa
	n.process(s, out, now)
}

// coopRetry schedules the next attempt: BackoffMin doubling to
// BackoffMax, coopInitWait later on the side of higher address.
func (n *Node) coopRetry(kp *peerKS, now time.Time) {
	kp.backoff = min(max(2*kp.backoff, n.o.BackoffMin), n.o.BackoffMax)
	kp.retryAt = now.Add(kp.backoff + n.coopInitDelay(kp))
}

// coopInitDelay is how much later than its peer this KS (re)initiates
// the SA with it: coopInitWait when its address is the higher, else 0.
// The lower address initiates first every time (at start, after a
// failure or expiry, after the peer was unreachable), so that the two
// rarely initiate at once: each main mode carries INITIAL-CONTACT, and
// the responder then deletes its older SAs with the initiator (ike), the
// one in use for announcements included.
func (n *Node) coopInitDelay(kp *peerKS) time.Duration {
	if n.coopLocalFor(kp.addr).Compare(kp.addr) > 0 {
		return coopInitWait
	}
	return 0
}

// coopPhase1Up: an SA with a configured peer KS is up (either side
// initiated it). Reports whether the SA was a KS-KS one.
func (n *Node) coopPhase1Up(s *sock, sa *ike.SA, now time.Time) bool {
	kp := n.ksPeers[sa.Peer().Addr().Unmap()]
	if kp == nil {
		return false
	}
	initiated := kp.connecting == sa
	if initiated {
		kp.connecting = nil
	}
	if !n.coopAuthorized(kp.addr, sa) {
		// A GM (or anyone) holding the group's credentials at a peer
		// KS's address: its SA stays an ordinary one, never the KS-KS SA
		// (coopChoose skips it), its ANNs are dropped (onANN).
		n.cstats.peerNotAuth++
		n.unauth.Warn("COOP: phase 1 from a peer key server's address not authenticated as that key server (wildcard or prefix pre-shared key, or certificate not authorized by peer address ... identity)",
			"peer", kp.addr.String(), "peer_id", sa.Info().PeerID.String())
		if initiated && kp.sa == nil {
			n.coopRetry(kp, now)
		}
		return false
	}
	n.log.Info("COOP: phase 1 with peer key server up", "peer", kp.addr.String(), "initiator", sa.Info().Initiator)
	n.coopChoose(kp, now)
	return true
}

// coopAuthorized reports whether sa was authenticated as the peer KS at
// peer (docs/coop.md "Peer authorization"), as one of the groups listing
// that peer admits it (ks.Redundancy.PeerAuth): with a pre-shared key,
// only if a key is configured for exactly that address (a GM that holds a
// wildcard or prefix key and uses the address cannot pass); with a
// certificate, only if its subject is the peer's configured identity
// (the subject string as `authorization identity` sees it, or the
// common name). The address alone never makes a KS.
func (n *Node) coopAuthorized(peer netip.Addr, sa *ike.SA) bool {
	info := sa.Info()
	for _, cg := range n.coop {
		if cg.red == nil || !slices.Contains(cg.red.Peers, peer) {
			continue
		}
		a, ok := cg.red.PeerAuth[peer]
		switch {
		case !ok:
		case info.PeerCert == nil:
			if info.Suite.Auth == ike.AuthPSK && a.PSK {
				return true
			}
		case a.Identity != "":
			if subj := info.PeerCert.Subject; subj.String() == a.Identity || subj.CommonName == a.Identity {
				return true
			}
		}
	}
	return false
}

// coopPhase1Down: an SA with a peer KS failed, was deleted or expired.
func (n *Node) coopPhase1Down(sa *ike.SA, now time.Time) {
	kp := n.ksPeers[sa.Peer().Addr().Unmap()]
	if kp == nil {
		return
	}
	if kp.connecting == sa {
		kp.connecting = nil
	}
	n.coopChoose(kp, now)
}

// coopChoose picks the SA ANNs travel on with a peer: of the established
// SAs with it, the one of lowest initiator cookie, a choice both KSs
// make alike whoever initiated (two KSs that both hold an SA use the
// same one; the other idles until it expires or the INITIAL-CONTACT of
// a later main mode deletes it: coopInitDelay keeps initiations ordered
// so that this is rare). When the
// choice changes, every group with that peer restarts its announcement
// numbers (Session: the peer does the same when it sees the same SA).
// With none left, a new one is initiated after the backoff.
func (n *Node) coopChoose(kp *peerKS, now time.Time) {
	var best *ike.SA
	var bestSock *sock
	var bestCky isakmp.Cookie
	for _, s := range n.socks {
		if s.ep == nil || s.closed {
			continue
		}
		for _, sa := range s.ep.SAs() {
			if sa.Peer().Addr().Unmap() != kp.addr || !n.coopAuthorized(kp.addr, sa) {
				continue
			}
			if ic, _ := sa.Cookies(); best == nil || bytes.Compare(ic[:], bestCky[:]) < 0 {
				best, bestSock, bestCky = sa, s, ic
			}
		}
	}
	if best == kp.sa {
		return
	}
	kp.sa, kp.sock = best, bestSock
	if best == nil {
		if kp.connecting == nil {
			n.coopRetry(kp, now)
		}
		return
	}
	kp.backoff = 0
	for _, name := range n.coopNames() {
		cg := n.coop[name]
		if p := cg.peers[kp.addr]; p != nil {
			p.members.newSession()
			n.coopResult(cg, cg.el.Session(kp.addr, now), nil, now)
		}
	}
}

// coopUnreachable: the peer went silent for the dead interval. Its SAs
// are likely gone at the other end (restarted, or cut off): they are
// deleted and a new one is initiated, at once by the KS of lower
// address, coopInitWait later by the other (while the peer stays
// unreachable the attempts back off).
func (n *Node) coopUnreachable(peer netip.Addr, now time.Time) {
	kp := n.ksPeers[peer]
	if kp == nil || kp.sa == nil {
		return
	}
	type owned struct {
		s  *sock
		sa *ike.SA
	}
	var old []owned
	for _, s := range n.socks {
		if s.ep == nil || s.closed {
			continue
		}
		for _, sa := range s.ep.SAs() {
			if sa.Peer().Addr().Unmap() == peer {
				old = append(old, owned{s, sa})
			}
		}
	}
	kp.sa, kp.sock = nil, nil
	for _, o := range old {
		if out, err := o.s.ep.Delete(o.sa, now); err == nil {
			n.serves.dropSA(o.sa)
			n.process(o.s, out, now)
		}
	}
	if kp.sa == nil && kp.connecting == nil {
		if d := n.coopInitDelay(kp); d > 0 {
			kp.retryAt = now.Add(d)
		} else {
			n.coopConnect(kp, now)
		}
	}
}

// onANN routes an announcement that arrived on a phase-1 SA.
func (n *Node) onANN(s *sock, sa *ike.SA, m *isakmp.Message, now time.Time) {
	from := sa.Peer().Addr().Unmap()
	kp := n.ksPeers[from]
	if kp != nil && kp.sa != sa {
		if !n.coopAuthorized(from, sa) {
			n.cstats.peerNotAuth++
			n.unauth.Warn("COOP: announcement dropped: phase-1 SA not authenticated as the peer key server", "peer", from.String())
			return
		}
		n.cstats.staleSA++
		return
	}
	a, err := gdoi.OpenANN(sa, m)
	if err != nil {
		n.cstats.unauth++
		n.unauth.Debug("COOP: announcement dropped", "peer", from.String(), "err", err)
		return
	}
	var cg *coopGroup
	if len(a.Group.Data) == 4 {
		id := binary.BigEndian.Uint32(a.Group.Data)
		for _, g := range n.coop {
			if g.id == id {
				cg = g
			}
		}
	}
	if cg == nil {
		n.cstats.unknownGroup++
		return
	}
	ann := coop.Announcement{Role: coop.Role(a.COOP.Role), Priority: a.COOP.Priority,
		Version: version.Version{Major: a.COOP.Version.Major, Minor: a.COOP.Version.Minor, Mini: a.COOP.Version.Mini},
		Seq:     a.Seq, ReplyRequest: a.COOP.Flags&isakmp.COOPReplyRequest != 0}
	if kp == nil {
		// An authenticated phase-1 peer (a GM, or a KS this one does not
		// list) that announces: the elector counts it and logs
		// COOP_KS_UNAUTH, rate-limited.
		n.cstats.notPeer++
		n.coopResult(cg, cg.el.Receive(from, ann, now), nil, now)
		return
	}
	if a.COOP.Address.Unmap() != from {
		n.cstats.addrMismatch++
		return
	}
	n.coopResult(cg, cg.el.Receive(from, ann, now), a, now)
}

// coopResult carries out an elector's result: events logged and acted
// on, announcements sealed and sent. a is the announcement the result
// answers (nil: none).
func (n *Node) coopResult(cg *coopGroup, res coop.Result, a *isakmp.ANN, now time.Time) {
	cg.timer = res.Timer
	var adopt *coop.Adopt
	var accepted netip.Addr
	for _, ev := range res.Events {
		if sev, mn, text := ev.Log(); mn != "" {
			mnemonic.Log(n.log, sev, mn, "%s", text)
		}
		switch e := ev.(type) {
		case coop.Accepted:
			accepted = e.From
			n.coopTake(cg, e.From, a, now)
		case coop.RoleChanged:
			if e.To == coop.Primary {
				n.ks.TakeOver(cg.name) // the schedule runs from the next tick
				cg.keysFrom = cg.local
				n.coopInherit(cg, now)
			} else {
				n.ks.StepDown(cg.name)
			}
		case coop.Adopt:
			adopt = &e
		case coop.PeerUnreachable:
			n.coopUnreachable(e.Peer, now)
		}
	}
	if cg.el.Role() == coop.Electing {
		// No primary followed: the KS registers GMs with its own keys
		// again (a primary whose keys it could not adopt is gone).
		n.ks.FollowNone(cg.name)
	}
	n.coopPeerView(cg)
	switch {
	case adopt != nil:
		n.coopAdopt(cg, adopt.Primary, adopt.Reason == "merge", now)
	case accepted.IsValid() && a != nil && a.SA != nil && cg.el.Role() != coop.Primary && cg.el.Primary() == accepted:
		n.coopAdopt(cg, accepted, false, now)
	}
	n.coopSend(cg, res.Send, now)
}

// coopInherit: this KS became primary; the GMs of the peers it cannot
// reach (the failed primary) are rekeyed by it from now on
// (ks.Server.Inherit), at the port this KS listens on.
func (n *Node) coopInherit(cg *coopGroup, now time.Time) {
	s := n.coopSock(cg.local)
	if s == nil {
		return
	}
	for _, ps := range cg.el.Peers() {
		p := cg.peers[ps.Addr]
		if ps.Reachable || p == nil {
			continue
		}
		if k := n.ks.Inherit(cg.name, p.members.list(), s.local.Port(), now); k > 0 {
			n.log.Info("COOP: the GMs of an unreachable key server are rekeyed by this primary", "group", cg.name, "peer", ps.Addr.String(), "members", k)
		}
	}
	for a, list := range cg.removed {
		if k := n.ks.Inherit(cg.name, list, s.local.Port(), now); k > 0 {
			n.log.Info("COOP: the GMs of a key server removed from the configuration are rekeyed by this primary", "group", cg.name, "peer", a.String(), "members", k)
		}
	}
	cg.removed = nil
}

// coopTake records what an accepted announcement carries: the peer's
// policy and keys, its rekey sequence number (the primary's next rekey
// goes above it), a part of its member list.
func (n *Node) coopTake(cg *coopGroup, from netip.Addr, a *isakmp.ANN, now time.Time) {
	p := cg.peers[from]
	if p == nil || a == nil {
		return
	}
	if a.SA != nil {
		p.sa, p.kd = a.SA, a.KD
	}
	p.seq = a.COOP.RekeySeq
	// The peer's KS set digest (docs/coop.md "Sender IDs"); another
	// length (none: an older version) is no view.
	p.ksSet = nil
	if len(a.COOP.State) == ks.KSSetDigestLen {
		p.ksSet = slices.Clone(a.COOP.State)
	}
	n.ks.RaiseSeq(cg.name, a.COOP.RekeySeq)
	if a.COOP.Flags&isakmp.COOPFullSyncRequest != 0 && !p.members.fullRequested(n.ks.MembersGen(cg.name)) {
		n.cstats.fullInFlight++
	}
	if !p.members.receive(a.COOP.MembersGen, a.Members) {
		n.cstats.membersBad++
	}
}

// coopAdopt takes the primary's last announced policy and keys and
// forwards them to the GMs registered here (ks.Delivery.Adopt).
//
// merge: this KS lost a merge. A KS that follows another primary than
// the one whose keys it holds, with another KEK than that primary
// announces, forwards with merge semantics too (activation at once,
// multicast too): its GMs hold keys the new primary's GMs never had —
// the secondary of a primary that lost a merge of three or more KSs.
func (n *Node) coopAdopt(cg *coopGroup, primary netip.Addr, merge bool, now time.Time) {
	p := cg.peers[primary]
	if p == nil || p.sa == nil {
		return // adopted at its first announcement carrying them
	}
	if primary != cg.keysFrom && p.sa.KEK != nil && p.sa.KEK.SPI != n.ks.KEK(cg.name).SPI {
		merge = true
	}
	res, changed, err := n.delivery.Adopt(cg.name, p.sa, p.kd, p.seq, merge, now)
	if err != nil {
		n.cstats.adoptFailed++
		mnemonic.Log(n.unauth, mnemonic.Err, "COOP_KS_ADOPT_FAILED", "KS in group %s cannot adopt the policy and keys of Primary %s: %v", cg.name, primary, err)
		return
	}
	cg.lastSync, cg.keysFrom = now, primary
	if changed {
		n.log.Info("COOP: adopted the primary's keys", "group", cg.name, "primary", primary.String(), "seq", n.ks.Seq(cg.name), "merge", merge)
	}
	n.apply(res)
}

// coopAnnounce announces a group's new state to its peers at once (a
// rekey started: the secondaries take the new keys now).
func (n *Node) coopAnnounce(group string, now time.Time) {
	if cg := n.coop[group]; cg != nil {
		n.coopResult(cg, cg.el.Announce(now), nil, now)
	}
}

// coopSend seals and sends announcements: the COOP payload, the primary's
// policy and keys, and what each peer needs of this KS's member list (in
// further announcements when it does not fit: coopmembers.go).
func (n *Node) coopSend(cg *coopGroup, sends []coop.Send, now time.Time) {
	for _, snd := range sends {
		kp, p := n.ksPeers[snd.To], cg.peers[snd.To]
		if kp == nil || kp.sa == nil || p == nil {
			n.cstats.noSA++
			continue
		}
		// A list or delta still in flight to the peer is not queued
		// again: the announcement carries its generation, the changes
		// since go as a delta once it is through.
		if len(p.members.queue) == 0 {
			list, gen := n.ks.LocalMembers(cg.name)
			p.members.queue = p.members.outgoing(list, gen)
		}
		a := n.coopANN(cg, snd, p)
		if cg.el.Role() == coop.Primary {
			sa, kd, _, err := n.ks.Announce(cg.name, now)
			if err == nil {
				a.SA, a.KD = sa, kd
			}
		}
		n.coopSeal(kp, a)
		n.coopParts(cg, snd.To, kp, p)
	}
}

// coopPartsPerTurn bounds the member-list parts sent in one turn of the
// event loop: a long list (100,000 members: about 730 announcements)
// goes out over several turns, with the datagrams that arrive in between
// handled, so that sending it never holds the loop for long.
const coopPartsPerTurn = 32

// coopParts sends the next parts of the member list queued for a peer,
// each in an announcement of its own (coop.Elector.Extra).
func (n *Node) coopParts(cg *coopGroup, to netip.Addr, kp *peerKS, p *coopPeer) {
	for i := 0; i < coopPartsPerTurn && len(p.members.queue) > 0; i++ {
		x, ok := cg.el.Extra(to)
		if !ok {
			p.members.queue = nil
			return
		}
		part := p.members.queue[0]
		p.members.queue = p.members.queue[1:]
		b := n.coopANN(cg, x, p)
		b.Members, b.COOP.MembersGen = part, part.Gen
		n.coopSeal(kp, b)
	}
}

// coopANN is the announcement snd says, without policy or members.
func (n *Node) coopANN(cg *coopGroup, snd coop.Send, p *coopPeer) *isakmp.ANN {
	c := cg.el.Config()
	var flags isakmp.COOPFlags
	if snd.Ann.ReplyRequest {
		flags |= isakmp.COOPReplyRequest
	}
	if p.members.askFull() {
		flags |= isakmp.COOPFullSyncRequest
		n.cstats.fullSyncs++
	}
	v := snd.Ann.Version
	return &isakmp.ANN{Seq: snd.Ann.Seq, Group: &isakmp.ID{IDType: isakmp.IDKeyID, Data: binary.BigEndian.AppendUint32(nil, cg.id)},
		COOP: &isakmp.COOP{Version: isakmp.SWVersion{Major: v.Major, Minor: v.Minor, Mini: v.Mini}, Role: isakmp.COOPRole(snd.Ann.Role),
			Flags: flags, Priority: snd.Ann.Priority, Address: cg.local, PeriodMS: uint32(c.Period / time.Millisecond),
			DeadMS: uint32(c.Dead / time.Millisecond), RekeySeq: n.ks.Seq(cg.name), MembersGen: p.members.announceGen(n.ks.MembersGen(cg.name)), State: n.ks.KSSetDigest(cg.name)}}
}

func (n *Node) coopSeal(kp *peerKS, a *isakmp.ANN) {
	b, err := gdoi.SealANN(kp.sa, a, n.o.Rand)
	if err != nil {
		n.log.Warn("COOP: announcement not sealed", "peer", kp.addr.String(), "err", err)
		return
	}
	n.send(kp.sock, kp.sa.Peer(), b)
}

// coopPeerView gives ks what the peers announced (versions, members).
func (n *Node) coopPeerView(cg *coopGroup) {
	var peers []ks.PeerKS
	members := map[netip.Addr][]ks.MemberVersion{}
	for _, ps := range cg.el.Peers() {
		pk := ks.PeerKS{Addr: ps.Addr, Version: ps.Version, Reachable: ps.Reachable}
		if p := cg.peers[ps.Addr]; p != nil {
			members[ps.Addr] = p.members.list()
			pk.KSSet = p.ksSet
		}
		peers = append(peers, pk)
	}
	n.ks.SetPeerView(cg.name, peers, members)
}

// updateCoop applies a changed redundancy configuration of a running
// group (a reload): peers through SetPeers, priority and timers through
// Reconfigure; redundancy added starts an elector, removed stops it (the
// KS is then the group's lone primary).
func (n *Node) updateCoop(g ks.GroupConfig, now time.Time) error {
	cg := n.coop[g.Name]
	switch {
	case g.Redundancy == nil && cg == nil:
		return nil
	case g.Redundancy == nil:
		// ks.UpdatePolicy made the KS the group's lone primary (with
		// SeqMargin if it was a secondary).
		delete(n.coop, g.Name)
		n.coopPeersChanged()
		return nil
	case cg == nil:
		if err := n.addCoopGroup(g); err != nil {
			return err
		}
		cg = n.coop[g.Name]
		n.coopResult(cg, cg.el.Start(now), nil, now)
		for _, kp := range n.ksPeers {
			if kp.sa == nil && kp.connecting == nil && kp.retryAt.IsZero() {
				kp.retryAt = now
			}
		}
		return nil
	}
	r := g.Redundancy
	res, err := cg.el.Reconfigure(max(r.Priority, 1), r.Period, r.Dead, r.ElectionWait, now)
	if err != nil {
		return fmt.Errorf("group %s: redundancy: %w", g.Name, err)
	}
	n.coopResult(cg, res, nil, now)
	res, err = cg.el.SetPeers(r.Peers, now)
	if err != nil {
		return fmt.Errorf("group %s: redundancy: %w", g.Name, err)
	}
	cg.red = r.Clone()
	for a, p := range cg.peers {
		if !slices.Contains(cg.el.Config().Peers, a) {
			if cg.removed == nil {
				cg.removed = map[netip.Addr][]ks.MemberVersion{}
			}
			cg.removed[a] = p.members.list()
		}
	}
	n.coopPeersChanged()
	for _, kp := range n.ksPeers {
		if kp.sa == nil && kp.connecting == nil && kp.retryAt.IsZero() {
			kp.retryAt = now
		}
	}
	n.coopResult(cg, res, nil, now)
	cg.removed = nil // not primary by this reload: its own GMs re-register
	return nil
}

// COOPStatus returns, by KS group name, the COOP state of the groups
// configured with redundancy (nil without any). Use inside Do.
func (n *Node) COOPStatus() map[string]COOPStatus {
	if len(n.coop) == 0 {
		return nil
	}
	out := map[string]COOPStatus{}
	for name, cg := range n.coop {
		c := cg.el.Config()
		out[name] = COOPStatus{Local: cg.local, Priority: c.Priority, Role: cg.el.Role(), Primary: cg.el.Primary(), Version: c.Version,
			Period: c.Period, Dead: c.Dead, ElectionWait: c.ElectionWait, Peers: cg.el.Peers(), Stats: cg.el.Stats(),
			MembersGen: n.ks.MembersGen(name), LastSync: cg.lastSync}
	}
	return out
}

// COOPCounters lists the COOP counters summed over the KS groups with
// redundancy, then the node's ANN drops (nil without any group). Use
// inside Do.
func (n *Node) COOPCounters() []ike.Counter {
	if len(n.coop) == 0 {
		return nil
	}
	var s coop.Stats
	for _, cg := range n.coop {
		st := cg.el.Stats()
		s.Sent += st.Sent
		s.Accepted += st.Accepted
		s.Replayed += st.Replayed
		s.Unknown += st.Unknown
		s.Invalid += st.Invalid
		s.Incompatible += st.Incompatible
		s.Elections += st.Elections
		s.Exhausted += st.Exhausted
	}
	c := n.cstats
	return []ike.Counter{
		{Name: "ann_sent", Help: "COOP announcements sent to peer key servers", Value: s.Sent},
		{Name: "ann_accepted", Help: "COOP announcements accepted from peer key servers", Value: s.Accepted},
		{Name: "ann_replayed", Help: "COOP announcements dropped: sequence number not above the last accepted", Value: s.Replayed},
		{Name: "ann_unknown_peer", Help: "COOP announcements dropped: from an address that is not a configured peer of the group", Value: s.Unknown},
		{Name: "ann_invalid", Help: "COOP announcements dropped: bad role, priority 0 or oversized state", Value: s.Invalid},
		{Name: "ann_incompatible", Help: "COOP announcements dropped: another major or minor version", Value: s.Incompatible},
		{Name: "elections", Help: "COOP elections entered", Value: s.Elections},
		{Name: "ann_exhausted", Help: "COOP announcements not sent: the KS-KS SA's sequence numbers are used up", Value: s.Exhausted},
		{Name: "ann_not_peer_sa", Help: "COOP announcements on a phase-1 SA whose peer is not a configured key server", Value: c.notPeer},
		{Name: "ann_stale_sa", Help: "COOP announcements on an older phase-1 SA than the current one with that peer", Value: c.staleSA},
		{Name: "ann_unauthenticated", Help: "COOP announcements failing decryption, HASH or parsing", Value: c.unauth},
		{Name: "ann_unknown_group", Help: "COOP announcements for a group not served here with redundancy", Value: c.unknownGroup},
		{Name: "ann_address_mismatch", Help: "COOP announcements whose KS address is not the phase-1 peer's", Value: c.addrMismatch},
		{Name: "ann_no_sa", Help: "COOP announcements not sent: no phase-1 SA with the peer yet", Value: c.noSA},
		{Name: "adopt_failed", Help: "primary's policy and keys not adopted (policy mismatch)", Value: c.adoptFailed},
		{Name: "members_dropped", Help: "member-list parts dropped (out of order, mismatched, over bounds)", Value: c.membersBad},
		{Name: "members_full_sync_requests", Help: "full member lists asked of a peer", Value: c.fullSyncs},
		{Name: "members_full_sync_in_flight", Help: "full member lists a peer asked for while one was in flight to it (not sent again)", Value: c.fullInFlight},
		{Name: "join_refused_unadoptable", Help: "registrations refused: this secondary cannot adopt the keys of the primary it follows (GMs fail over)", Value: n.ks.RefusedUnadoptable()},
		{Name: "sid_refused_ks_set", Help: "registrations refused: no sender IDs while a peer key server announces another set of key servers", Value: n.ks.SIDRefusedKSSet()},
		{Name: "ann_peer_not_authorized", Help: "phase-1 SAs and announcements from a peer key server's address not authenticated as that key server (wildcard or prefix PSK, unauthorized certificate)", Value: c.peerNotAuth},
	}
}
