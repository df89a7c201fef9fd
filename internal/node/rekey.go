package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/kswriter"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// The KS's rekey delivery is ks.Delivery (pacing, retransmission, ACKs,
// supersede, the schedule, the reserved sequence numbers, the rekey
// resumed after a restart). The node gives it ACKs and the time, sends
// what it returns from the socket of the group's KS address, logs its
// events and writes its saves (kswriter).

// LastRekey describes the last rekey delivery a KS group completed.
type LastRekey = ks.LastRekey

// rekeyTick runs the KS's rekey schedule and its deliveries.
func (n *Node) rekeyTick(now time.Time) {
	if n.delivery != nil {
		n.apply(n.delivery.Tick(now))
	}
}

// apply logs a delivery result's events, sends its datagrams and queues
// its saves.
func (n *Node) apply(res ks.Result) {
	var drop map[netip.Addr]bool
	var announce []string // groups whose new keys their COOP peers hear of now
	for _, ev := range res.Events {
		switch e := ev.(type) {
		case ks.RekeyStarted:
			var from netip.Addr
			if s, err := n.rekeySock(e.Push.Group); err == nil {
				from = s.local.Addr()
				if pol := e.Push.Policy; pol.Multicast.IsValid() {
					// Every multicast rekey, scheduled or manual, leaves
					// with its group's interface and TTL (set before the
					// sends below; the socket may serve several groups).
					// The delivery has started and its keys are saved: a
					// socket that refuses the options sends with its
					// defaults, counted and logged (a manual rekey was
					// refused before it started: prepareRekey).
					if err := setMulticastOptions(s.conn, pol.Interface, pol.TTL); err != nil {
						n.stats.mcastOptsFailed++
						n.log.Warn("multicast rekey sent without its group's interface and TTL", "group", e.Push.Group, "seq", e.Push.Seq, "err", err)
					}
				}
			}
			n.ks.LogRekey(e.Push, from)
			announce = append(announce, e.Push.Group)
		case ks.RekeySuperseded:
			n.log.Info("rekey superseded by a newer one", "group", e.Group, "seq", e.Seq, "unacknowledged", e.Unacknowledged)
		case ks.RekeyResumed:
			syslog.Log(n.log, syslog.Notice, "KS_REKEY_RESUMED", "Resending rekey with seq # %d for group %s to %d members that had not acknowledged it before the restart",
				e.Seq, e.Group, e.Members)
		case ks.RekeyFailed:
			n.log.Error("rekey failed", "group", e.Group, "err", e.Err, "retry", e.Retry)
		case ks.BadAck:
			n.unauth.Warn("dropped a bad rekey acknowledgement", "from", e.From.String(), "err", e.Err)
		case ks.Reauthenticate:
			peers := map[netip.Addr]bool{}
			for _, a := range e.Peers {
				peers[a] = true
			}
			drop = peers
		}
	}
	var s *sock
	var group string
	for _, d := range res.Send {
		if s == nil || d.Group != group {
			var err error
			if s, err = n.rekeySock(d.Group); err != nil {
				continue // held (checkServed): cannot happen
			}
			group = d.Group
		}
		n.send(s, d.To, d.Data)
	}
	if drop != nil {
		// After the removal message has left: the members' phase-1 SAs
		// go, with a Delete notification each.
		n.dropPhase1(drop, n.o.Now())
	}
	for _, g := range announce {
		n.coopAnnounce(g, n.o.Now())
	}
	if len(res.Save) > 0 {
		// The periodic save goes to the writer: the loop never waits for
		// that transaction (10,000 members: ~60 ms, BenchmarkSaveGroup).
		n.saver.Queue(res.Save...)
	}
}

// Version is the software version this node announces (SPEC V1).
func (n *Node) Version() version.Version { return n.version() }

// KSGroups lists the groups this node serves; use inside Do.
func (n *Node) KSGroups() []string {
	if n.ks == nil {
		return nil
	}
	return n.ks.Groups()
}

// Now is the node's clock.
func (n *Node) Now() time.Time { return n.o.Now() }

var errNotKS = errors.New("node: not a key server")

// prepareRekey checks that the group's rekeys can leave (its address is
// served) and sets a multicast rekey's socket options.
func (n *Node) prepareRekey(group string) error {
	if n.ks == nil {
		return errNotKS
	}
	s, err := n.rekeySock(group)
	if err != nil {
		return err
	}
	if p := n.ks.RekeyPolicy(group); p.Multicast.IsValid() {
		if err := setMulticastOptions(s.conn, p.Interface, p.TTL); err != nil {
			return fmt.Errorf("multicast rekey for group %s: %w", group, err)
		}
	}
	return nil
}

// sendRekey builds and starts sending the group's next rekey now.
func (n *Node) sendRekey(group string, now time.Time) error {
	if err := n.prepareRekey(group); err != nil {
		return err
	}
	res, err := n.delivery.Rekey(group, now)
	n.apply(res)
	return err
}

// sendReplaceRekey is `crypto gdoi ks [group NAME] rekey [replace-now]`:
// the policy-replace rekey (SPEC P2-P6).
func (n *Node) sendReplaceRekey(group string, replaceNow bool, now time.Time) (*ks.Push, error) {
	if n.ks == nil {
		return nil, errNotKS
	}
	if err := n.ks.CheckPrimaryRekey(group); err != nil {
		return nil, err
	}
	if err := n.prepareRekey(group); err != nil {
		return nil, err
	}
	p, res, err := n.delivery.ReplaceRekey(group, replaceNow, now)
	n.apply(res)
	return p, err
}

// sendRemoval is `clear crypto gdoi [group NAME] ks members [now]` (SPEC
// R1-R4): the removal message to every member, and new keys at the KS;
// the members' phase-1 SAs are deleted.
func (n *Node) sendRemoval(group string, removeNow bool, now time.Time) (*ks.Push, error) {
	if n.ks == nil {
		return nil, errNotKS
	}
	if err := n.ks.CheckPrimaryRemoval(group); err != nil {
		return nil, err
	}
	if err := n.prepareRekey(group); err != nil {
		return nil, err
	}
	p, res, err := n.delivery.Remove(group, removeNow, now)
	n.apply(res)
	return p, err
}

// dropPhase1 deletes (with a Delete notification) the phase-1 SAs that
// peers authenticated with: after a GM removal every member must
// authenticate again with the credentials configured now to get the new
// keys, so a revoked PSK or certificate keeps it out (SPEC R3).
func (n *Node) dropPhase1(peers map[netip.Addr]bool, now time.Time) {
	for _, s := range n.socks {
		if s.ep == nil {
			continue
		}
		for _, sa := range s.ep.SAs() {
			if sa.Info().Initiator || !peers[sa.Peer().Addr()] {
				continue
			}
			out, err := s.ep.Delete(sa, now)
			if err != nil {
				n.log.Debug("phase-1 SA not deleted", "peer", sa.Peer(), "err", err)
				continue
			}
			n.serves.dropSA(sa) // its served exchanges with it, not serveLinger later
			n.process(s, out, now)
		}
	}
}

// rekeySock is the socket a group's rekeys leave from: the one bound to
// the group's KS address (`address ipv4`, the SAK's source); the first
// socket only for a group that configured no address. A group whose
// address no socket serves (removed from the host, then a refresh) gets an
// error: its rekeys never leave from an address it did not configure.
func (n *Node) rekeySock(group string) (*sock, error) {
	a := n.ks.Address(group)
	if !a.IsValid() {
		return n.socks[0], nil
	}
	for _, x := range n.socks {
		if x.local.Addr().Unmap() == a.Unmap() {
			return x, nil
		}
	}
	return nil, fmt.Errorf("group %s: its key server address %s is not served by this node (not on this host?): no rekey sent", group, a)
}

// checkServed notes the groups whose configured address no socket serves
// (New and Refresh call it): each change is logged once, loudly, and
// `show crypto gdoi` shows it; rekeys of such a group are held (the
// scheduler skips it, a delivery in flight pauses) until the address is
// served again, when they resume.
func (n *Node) checkServed() {
	if n.ks == nil {
		return
	}
	now := n.o.Now()
	for _, g := range n.ks.Groups() {
		s, err := n.rekeySock(g)
		switch {
		case err != nil && !n.unserved[g].IsValid():
			if n.unserved == nil {
				n.unserved = map[string]netip.Addr{}
			}
			n.unserved[g] = n.ks.Address(g)
			syslog.Log(n.log, syslog.Err, "KS_ADDRESS_NOT_SERVED",
				"Group %s: key server address %s is not served by this node (no local socket has it): rekeys are held until it is", g, n.ks.Address(g))
		case err == nil && n.unserved[g].IsValid():
			delete(n.unserved, g)
			syslog.Log(n.log, syslog.Notice, "KS_ADDRESS_SERVED", "Group %s: key server address %s is served again: rekeys resume", g, n.ks.Address(g))
		}
		if err != nil {
			n.delivery.Hold(g)
			continue
		}
		for _, f := range n.delivery.Flights() {
			// The group's socket may be another than when its multicast
			// delivery started (a refresh closed that one).
			if f.Multicast && f.Push.Group == g {
				if err := setMulticastOptions(s.conn, f.Push.Policy.Interface, f.Push.Policy.TTL); err != nil {
					n.log.Warn("multicast rekey moved to another socket without its options", "group", g, "err", err)
				}
				break
			}
		}
		n.apply(n.delivery.Serve(g, now))
	}
}

// UnservedAddresses lists the KS groups whose configured address no socket
// serves; use inside Do.
func (n *Node) UnservedAddresses() map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for g, a := range n.unserved {
		out[g] = a
	}
	return out
}

// pullPolicy is the KS role as gdoi.Serve asks it (gdoi.Policy): it turns
// the phase-1 SA's description into the KS's neutral ks.Peer and gives
// the KS the time, which the node sets before each message it hands to
// gdoi (the exchanges carry no clock).
type pullPolicy struct {
	ks    *ks.Server
	saver *kswriter.Writer // nil without a store
	now   time.Time
}

func (p *pullPolicy) Join(peer ike.Info, group *isakmp.ID) (*isakmp.GroupSA, error) {
	return p.ks.Join(ksPeer(peer), group, p.now)
}

func (p *pullPolicy) Keys(peer ike.Info, group *isakmp.ID, sids uint16) (uint32, *isakmp.KD, error) {
	seq, kd, err := p.ks.Keys(ksPeer(peer), group, sids, p.now)
	if err != nil {
		return 0, nil, err
	}
	if err := p.writeSIDReservations(); err != nil {
		return 0, nil, err
	}
	return seq, kd, nil
}

// JoinPayload and KeysPayload make pullPolicy a gdoi.LaidOutPolicy: the
// group's policy and key packets laid out once for every member (issue
// 18), which gdoi.Serve asks rather than Join and Keys.
func (p *pullPolicy) JoinPayload(peer ike.Info, group *isakmp.ID) (gdoi.PolicyAt, error) {
	return p.ks.JoinPayload(ksPeer(peer), group, p.now)
}

func (p *pullPolicy) KeysPayload(peer ike.Info, group *isakmp.ID, sids uint16) (uint32, gdoi.KeysWith, error) {
	seq, kd, err := p.ks.KeysPayload(ksPeer(peer), group, sids, p.now)
	if err != nil {
		return 0, gdoi.KeysWith{}, err
	}
	if err := p.writeSIDReservations(); err != nil {
		return 0, gdoi.KeysWith{}, err
	}
	return seq, kd, nil
}

// writeSIDReservations writes the keys of the groups whose sender-ID
// high-water marks a registration raised (once a block of IDs,
// ks.Server.SIDReservationsUnwritten) before its answer leaves: a crash
// after the answer then never hands its IDs out again (the restarted KS
// goes on from the written mark). A keys-only write, not waiting for the
// writer's periodic save (the store never lowers a stored mark). A
// failed write refuses the registration; the next one tries again.
func (p *pullPolicy) writeSIDReservations() error {
	if p.saver == nil {
		return nil
	}
	for _, name := range p.ks.SIDReservationsUnwritten() {
		st, err := p.ks.KeysState(name, p.now)
		if err != nil {
			return err
		}
		if err := p.saver.SaveKeys(st); err != nil {
			return fmt.Errorf("node: writing group %s's sender-ID reservation: %w", name, err)
		}
		p.ks.SIDReservationWritten(st)
	}
	return nil
}

var _ gdoi.LaidOutPolicy = (*pullPolicy)(nil)

// ksPeer describes an IKEv1 phase-1 peer to the KS.
func ksPeer(i ike.Info) ks.Peer {
	p := ks.Peer{Addr: i.Peer, Version: i.PeerVersion}
	switch {
	case i.PeerCert != nil:
		p.CertSubject = i.PeerCert.Subject.String()
		p.Identity = p.CertSubject
	default: // the phase-1 identity (nil: the address), formatted by ks when it needs it
		p.ID = i.PeerID
	}
	return p
}
