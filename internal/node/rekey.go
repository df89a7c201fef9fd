package node

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// pacing: at most rekeyBurst unicast rekeys leave per rekeyPace, so that
// thousands of GMs are not hit in the same millisecond (and the KS's
// socket buffer does not overflow).
const (
	rekeyBurst = 50
	rekeyPace  = 5 * time.Millisecond
)

// delivery is one unicast rekey on its way to the members.
type delivery struct {
	multicast bool // to a group: no ACKs, every retransmission sent
	push      *ks.Push
	sock      *sock
	queue     []netip.AddrPort        // first transmissions not sent yet
	old       map[netip.AddrPort]bool // members that get push.OldData (SPEC P6)
	pending   map[netip.Addr]*target  // sent, not acknowledged
	next      time.Time               // next pacing or retransmission step
	sent      time.Time               // when it started
	done      time.Time               // when the last member acknowledged (zero: not yet)
	resent    int                     // retransmissions sent
}

// LastRekey describes the last rekey delivery a KS group completed: every
// member acknowledged, or was given up on after its retransmissions (a
// multicast rekey: after all of them). A superseded delivery does not
// complete.
type LastRekey struct {
	Seq         uint32
	Started     time.Time
	Took        time.Duration // from the first transmission to completion
	Retransmits int           // datagrams sent again
}

// supersede ends the deliveries of group's older rekeys when a new one
// starts (a manual rekey while one is in flight): the new rekey carries
// every current TEK, so members see sequence numbers only rise and only
// the newest rekey is retransmitted. An older rekey that brought a new KEK
// goes on to the members that have not acknowledged it: the new rekey is
// encrypted under that KEK, which they would lack.
func (n *Node) supersede(group string) {
	keep := n.deliveries[:0]
	for _, d := range n.deliveries {
		if d.push.Group == group && (d.multicast || !d.push.NewKEK) {
			n.flightDirty = true
			n.log.Info("rekey superseded by a newer one", "group", group, "seq", d.push.Seq, "unacknowledged", len(d.pending)+len(d.queue))
			continue
		}
		keep = append(keep, d)
	}
	clear(n.deliveries[len(keep):])
	n.deliveries = keep
}

type target struct {
	to    netip.AddrPort
	data  []byte
	sent  int
	retry time.Time
}

// rekeyTick runs the KS's rekey schedule and its deliveries.
func (n *Node) rekeyTick(now time.Time) {
	if n.ks == nil {
		return
	}
	for _, g := range n.ks.Groups() {
		at := n.ks.NextRekey(g)
		if at.IsZero() || now.Before(at) || n.inFlight(g) || n.unserved[g].IsValid() {
			continue
		}
		if err := n.SendRekey(g, now); err != nil {
			n.log.Error("rekey failed", "group", g, "err", err)
		}
	}
	for i := 0; i < len(n.deliveries); i++ {
		d := n.deliveries[i]
		if !now.Before(d.next) {
			n.step(d, now)
		}
		if len(d.queue) == 0 && len(d.pending) == 0 {
			end := now
			if !d.done.IsZero() {
				end = d.done
			}
			if n.lastRekeys == nil {
				n.lastRekeys = map[string]LastRekey{}
			}
			n.lastRekeys[d.push.Group] = LastRekey{Seq: d.push.Seq, Started: d.sent, Took: max(end.Sub(d.sent), 0), Retransmits: d.resent}
			n.deliveries = append(n.deliveries[:i], n.deliveries[i+1:]...)
			n.flightDirty = true
			i--
		}
	}
}

func (n *Node) inFlight(group string) bool {
	for _, d := range n.deliveries {
		if d.push.Group == group {
			return true
		}
	}
	return false
}

// RekeysInFlight is the number of rekeys still being delivered; use
// inside Do.
func (n *Node) RekeysInFlight() int { return len(n.deliveries) }

// KeyServer gives a function running on the node's goroutine access to
// the KS role (nil when the node serves no group).
func (n *Node) KS() *ks.Server { return n.ks }

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

// SendRekey builds and starts sending the group's next rekey now (the
// scheduler calls it; `crypto gdoi ks rekey` will too). Use inside Do.
func (n *Node) SendRekey(group string, now time.Time) error {
	if n.ks == nil {
		return errors.New("node: not a key server")
	}
	if _, err := n.rekeySock(group); err != nil {
		return err
	}
	// Reserve the sequence number on disk, then advance the keys, then
	// save them, and only then send (SPEC O4: write before send).
	want, err := n.reserve(group)
	if err != nil {
		return err
	}
	p, err := n.ks.Rekey(group, now)
	if err != nil {
		return err
	}
	return n.deliver(group, p, want, now)
}

// SendReplaceRekey is `crypto gdoi ks [group NAME] rekey [replace-now]`:
// the policy-replace rekey (SPEC P2-P6). Use inside Do.
func (n *Node) SendReplaceRekey(group string, replaceNow bool, now time.Time) (*ks.Push, error) {
	if n.ks == nil {
		return nil, errors.New("node: not a key server")
	}
	if err := n.ks.CheckPrimaryRekey(group); err != nil {
		return nil, err
	}
	if _, err := n.rekeySock(group); err != nil {
		return nil, err
	}
	want, err := n.reserve(group)
	if err != nil {
		return nil, err
	}
	mode := isakmp.ModeShorten
	if replaceNow {
		mode = isakmp.ModeNow
	}
	p, err := n.ks.ReplaceRekey(group, mode, now)
	if err != nil {
		return nil, err
	}
	return p, n.deliver(group, p, want, now)
}

// SendRemoval is `clear crypto gdoi [group NAME] ks members [now]` (SPEC
// R1-R4): the removal message to every member, and new keys at the KS.
// Use inside Do.
func (n *Node) SendRemoval(group string, removeNow bool, now time.Time) (*ks.Push, error) {
	if n.ks == nil {
		return nil, errors.New("node: not a key server")
	}
	if err := n.ks.CheckPrimaryRemoval(group); err != nil {
		return nil, err
	}
	if _, err := n.rekeySock(group); err != nil {
		return nil, err
	}
	want, err := n.reserve(group)
	if err != nil {
		return nil, err
	}
	p, err := n.ks.Remove(group, removeNow, now)
	if err != nil {
		return nil, err
	}
	if err := n.deliver(group, p, want, now); err != nil {
		return p, err
	}
	members := map[netip.Addr]bool{}
	for _, a := range n.ks.MemberAddrs(group) {
		members[a] = true
	}
	n.dropPhase1(members, now)
	return p, nil
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
			n.process(s, out)
		}
	}
}

// reserve reserves the next sequence number on disk (0 without a store).
func (n *Node) reserve(group string) (uint32, error) {
	st := n.o.Store
	if st == nil {
		return 0, nil
	}
	_, to, err := st.ReserveSeq(group, 1)
	if err != nil {
		return 0, fmt.Errorf("rekey for group %s not sent: %w", group, err)
	}
	n.ks.SetSeqFloor(group, to-1)
	return to, nil
}

// deliver saves the group's new state (write before send) and starts
// sending p.
func (n *Node) deliver(group string, p *ks.Push, want uint32, now time.Time) error {
	if st := n.o.Store; st != nil {
		if p.Seq != want {
			return fmt.Errorf("rekey for group %s: sequence %d is not the reserved %d", group, p.Seq, want)
		}
	}
	s, err := n.rekeySock(group)
	if err != nil {
		return err
	}
	d := &delivery{push: p, sock: s, queue: append([]netip.AddrPort(nil), p.Members...), pending: map[netip.Addr]*target{}, next: now,
		old: map[netip.AddrPort]bool{}, sent: now}
	for _, m := range p.OldMembers {
		d.queue = append(d.queue, m)
		d.old[m] = true
	}
	if mc := p.Policy.Multicast; mc.IsValid() {
		// One datagram to the group, sent again every retransmission
		// interval: no acknowledgements come back from a group.
		if err := setMulticastOptions(s.conn, p.Policy.Interface, p.Policy.TTL); err != nil {
			return fmt.Errorf("multicast rekey for group %s: %w", group, err)
		}
		d.multicast = true
		d.queue = []netip.AddrPort{mc}
	}
	n.supersede(group)
	if st := n.o.Store; st != nil {
		gs, err := n.groupState(group, d)
		if err == nil {
			err = st.SaveGroup(gs)
		}
		if err != nil {
			return fmt.Errorf("rekey for group %s not sent: saving its new keys: %w", group, err)
		}
	}
	n.ks.LogRekey(p, s.local.Addr())
	n.deliveries = append(n.deliveries, d)
	n.step(d, now)
	return nil
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
		_, err := n.rekeySock(g)
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
	}
	for _, d := range n.deliveries {
		if d.sock != nil && !d.sock.closed {
			continue
		}
		s, err := n.rekeySock(d.push.Group)
		if err != nil {
			d.sock, d.next = nil, time.Time{} // paused: step sends nothing
			continue
		}
		d.sock, d.next = s, now
		if d.multicast {
			if err := setMulticastOptions(d.sock.conn, d.push.Policy.Interface, d.push.Policy.TTL); err != nil {
				n.log.Warn("multicast rekey moved to another socket without its options", "group", d.push.Group, "err", err)
			}
		}
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

// step sends the next paced burst and the retransmissions that are due,
// and gives up on members whose last transmission went unanswered.
func (n *Node) step(d *delivery, now time.Time) {
	if d.sock == nil {
		return // paused: the group's address is not served (checkServed)
	}
	budget := rekeyBurst
	for len(d.queue) > 0 && budget > 0 {
		to := d.queue[0]
		d.queue = d.queue[1:]
		data := d.push.Data
		if d.old[to] {
			data = d.push.OldData
		}
		n.send(d.sock, to, data)
		d.pending[to.Addr()] = &target{to: to, data: data, sent: 1, retry: now.Add(d.push.Policy.Retransmit)}
		if !d.multicast {
			n.ks.Sent(d.push.Group, to.Addr(), false)
		}
		budget--
	}
	next := time.Time{}
	if len(d.queue) > 0 {
		next = now.Add(rekeyPace)
	}
	for addr, t := range d.pending {
		if now.Before(t.retry) {
			if next.IsZero() || t.retry.Before(next) {
				next = t.retry
			}
			continue
		}
		if t.sent > d.push.Policy.Retransmits {
			delete(d.pending, addr)
			if !d.multicast {
				n.ks.Missed(d.push.Group, addr)
			}
			continue
		}
		if budget > 0 {
			n.send(d.sock, t.to, t.data)
			t.sent++
			d.resent++
			if !d.multicast {
				n.ks.Sent(d.push.Group, t.to.Addr(), true)
			}
			budget--
		}
		t.retry = now.Add(d.push.Policy.Retransmit)
		if next.IsZero() || t.retry.Before(next) {
			next = t.retry
		}
	}
	d.next = next
}

// onAck handles a GROUPKEY-PUSH acknowledgement (RFC 8263) at the KS.
func (n *Node) onAck(from netip.AddrPort, data []byte) {
	m, err := isakmp.ParseMessage(data)
	if err != nil {
		n.stats.ackMalformed++
		return
	}
	var spi [isakmp.KEKSPILen]byte
	copy(spi[:8], m.Header.InitiatorCookie[:])
	copy(spi[8:], m.Header.ResponderCookie[:])
	for _, d := range n.deliveries {
		if d.push.KEK.SPI != spi {
			continue
		}
		seq, addr, err := gdoi.OpenAck(m, d.push.KEK)
		if err != nil || addr != from.Addr() {
			n.stats.ackBad++
			n.unauth.Warn("dropped a bad rekey acknowledgement", "from", from.String(), "err", err)
			return
		}
		if seq != d.push.Seq {
			continue // of another rekey under this KEK (superseded, late)
		}
		n.stats.acksOK++
		if _, ok := d.pending[addr]; ok {
			delete(d.pending, addr)
			n.ks.Acked(d.push.Group, addr, seq)
		}
		if len(d.queue) == 0 && len(d.pending) == 0 {
			d.next = time.Time{} // done: the next tick removes it
			d.done = n.o.Now()
		}
		return
	}
	n.stats.ackUnknown++ // late, superseded or unknown
}
