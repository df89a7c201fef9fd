package node

import (
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
)

// counters are the node's own drop reasons and totals, outside the
// endpoints' (ike.Stats): every datagram the node drops is counted in one
// of them (SPEC S5).
type counters struct {
	// group member
	pushMalformed  uint64 // not even an ISAKMP header
	pushUnknownKEK uint64 // cookies of no KEK held, or of a group not joined
	lostHints      uint64 // PeerLostState hints received
	pullUnmatched  uint64 // GROUPKEY-PULL message for no exchange in progress
	// key server
	// (the acknowledgements' are ks.Delivery's: ks.AckStats)
	pullsRefused uint64 // GROUPKEY-PULL refused with a notification
	pullForgedKS uint64 // GROUPKEY-PULL message 1/3 that failed decryption or HASH
	// GROUPKEY-PULL messages of a finished exchange other than its
	// message 3 again: unauthenticated (a finished exchange checks no
	// HASH(3) any more), dropped
	pullAfterDone uint64
	// a finished exchange's message 3 again, answered with its message 4
	// built again (gdoi.Serve keeps what it is made of)
	pullAnsweredAgain uint64
	// a finished exchange's message 3 again, not answered
	// (gdoi.ErrAnswerGone): its message 4 handed out keys the group no
	// longer has, or it was answered again enough already
	pullAnswerGone uint64
	// GROUPKEY-PULL message 1 of a new exchange over a phase-1 SA that
	// already holds maxServesPerSA served exchanges (in progress or
	// lingering): dropped before it is opened
	pullsOverSALimit uint64
	// multicast rekeys sent without the group's interface and TTL (the
	// socket refused them)
	mcastOptsFailed uint64
	// both
	phase2Other  uint64 // a phase-2 exchange that is not GROUPKEY-PULL
	closedSocket uint64 // arrived on a socket Refresh had closed
	notRekey     uint64 // anything but a rekey on a multicast rekey socket
	// datagrams the loop meant to send that a socket refused (the kernel
	// returned an error for them, or the address is not one the socket
	// can reach); the retransmission timers cover them
	sendFailed uint64
}

// ISAKMPCounters lists the phase-1 counters summed over every socket the
// node has had (the closed ones' are kept, so no counter goes backwards),
// then the node's datagram-routing drops. Use inside Do.
func (n *Node) ISAKMPCounters() []ike.Counter {
	out := append([]ike.Counter(nil), n.retired...)
	for _, s := range n.socks {
		if s.ep != nil {
			out = mergeCounters(out, s.ep.Stats.Counters())
		}
	}
	if len(out) == 0 {
		out = ike.Stats{}.Counters()
	}
	drops := n.retiredDrops
	for _, s := range n.socks {
		drops += kernelDrops(s.conn)
	}
	return append(out,
		ike.Counter{Name: "socket_receive_drops", Help: "datagrams the kernel dropped at the node's sockets: their receive buffer was full while the loop was behind", Value: drops},
		ike.Counter{Name: "phase2_other_exchange", Help: "phase-2 messages of an exchange other than GROUPKEY-PULL", Value: n.stats.phase2Other},
		ike.Counter{Name: "closed_socket", Help: "datagrams read from a socket closed by a refresh", Value: n.stats.closedSocket},
		ike.Counter{Name: "not_rekey_on_rekey_socket", Help: "datagrams other than rekeys on a multicast rekey socket", Value: n.stats.notRekey},
		ike.Counter{Name: "socket_send_failures", Help: "datagrams a socket refused to send (an error from the kernel, or an address it cannot reach); retransmissions cover them", Value: n.stats.sendFailed},
	)
}

// GMCounters lists the group-member counters, summed over the groups
// joined (MemberState has them per group). Use inside Do.
func (n *Node) GMCounters() []ike.Counter {
	var reg, fail, rcv, dup, rep, rej, acks, giveUps, forged uint64
	for _, r := range n.regs {
		c := r.m.Status().Counters
		reg += uint64(c.Registrations)
		fail += uint64(c.FailuresTotal)
		rcv += uint64(c.Rekeys.Received)
		dup += uint64(c.Rekeys.Duplicate)
		rep += uint64(c.Rekeys.Replayed)
		rej += uint64(c.Rekeys.Rejected)
		acks += uint64(c.Rekeys.AcksSent)
		giveUps += c.PullGiveUps
		forged += c.PullsForged
	}
	return []ike.Counter{
		{Name: "registrations", Help: "registrations completed", Value: reg},
		{Name: "registration_failures", Help: "registration attempts that failed", Value: fail},
		{Name: "pulls_unanswered_fresh_phase1", Help: "pulls over a reused phase-1 SA unanswered: a fresh phase 1 started", Value: giveUps},
		{Name: "pulls_unmatched", Help: "GROUPKEY-PULL messages for no registration in progress (late or replayed)", Value: n.stats.pullUnmatched},
		{Name: "pulls_unauthenticated", Help: "GROUPKEY-PULL messages that failed decryption or HASH (dropped; the exchange goes on)", Value: forged},
		{Name: "peer_lost_state_hints", Help: "INVALID-COOKIE hints that the KS lost a phase-1 SA", Value: n.stats.lostHints},
		{Name: "rekeys_received", Help: "rekeys verified and applied", Value: rcv},
		{Name: "rekeys_duplicate", Help: "retransmissions of the last rekey (ACKed again)", Value: dup},
		{Name: "rekeys_replayed", Help: "rekeys with a sequence number below the last accepted", Value: rep},
		{Name: "rekeys_rejected", Help: "rekeys that failed decryption, signature or installation", Value: rej},
		{Name: "rekeys_unknown_kek", Help: "rekeys under a KEK this node does not hold", Value: n.stats.pushUnknownKEK},
		{Name: "rekeys_malformed", Help: "rekeys without a valid ISAKMP header", Value: n.stats.pushMalformed},
		{Name: "rekey_acks_sent", Help: "rekey acknowledgements sent to the KS", Value: acks},
	}
}

// KSCounters lists the key-server counters. Use inside Do.
func (n *Node) KSCounters() []ike.Counter {
	var acks ks.AckStats
	if n.delivery != nil {
		acks = n.delivery.Stats()
	}
	return []ike.Counter{
		{Name: "pulls_refused", Help: "GROUPKEY-PULL exchanges refused with a notification", Value: n.stats.pullsRefused},
		{Name: "pulls_unauthenticated", Help: "GROUPKEY-PULL messages that failed decryption or HASH (dropped, not answered)", Value: n.stats.pullForgedKS},
		{Name: "pulls_after_done", Help: "GROUPKEY-PULL messages of a finished exchange other than its message 3 again (unauthenticated: dropped, not answered)", Value: n.stats.pullAfterDone},
		{Name: "pulls_answered_again", Help: "GROUPKEY-PULL message 3 received again for a finished exchange and answered with its message 4 again (a member's retransmission: its message 4 was lost)", Value: n.stats.pullAnsweredAgain},
		{Name: "pulls_answer_gone", Help: "GROUPKEY-PULL message 3 received again and not answered: the keys its message 4 handed out were replaced, or it was answered again 4 times already (dropped: the member registers again once its retransmissions end)", Value: n.stats.pullAnswerGone},
		{Name: "pulls_over_sa_limit", Help: "GROUPKEY-PULL exchanges not started: their phase-1 SA already held the most served exchanges one may (dropped, not answered)", Value: n.stats.pullsOverSALimit},
		{Name: "sid_refused_member_bound", Help: "registrations refused: the member already holds the most sender IDs one member may under the current keys (GM_SID_BOUND)", Value: n.ks.SIDRefusedMemberBound()},
		{Name: "replaced_teks_handed_out", Help: "GROUPKEY-PULL answers (message 2) inside a rekey that listed the TEKs it replaced (AES-GCM ones to members of 1.0.3 or later), for opening the packets other members still send with them", Value: n.ks.ReplacedHandedOut()},
		{Name: "sid_previous_forgotten", Help: "previous sender IDs of re-registering members no longer kept held (beyond the 64 most recent per member)", Value: n.ks.SIDPreviousForgotten()},
		{Name: "multicast_rekeys_without_options", Help: "multicast rekeys sent without the group's interface and TTL (the socket refused them)", Value: n.stats.mcastOptsFailed},
		{Name: "acks_received", Help: "rekey acknowledgements verified", Value: acks.OK},
		{Name: "acks_malformed", Help: "rekey acknowledgements that do not parse", Value: acks.Malformed},
		{Name: "acks_unknown", Help: "rekey acknowledgements for no rekey in flight (late or forged)", Value: acks.Unknown},
		{Name: "acks_bad", Help: "rekey acknowledgements failing authentication, or of the wrong sequence or address", Value: acks.Bad},
	}
}

// mergeCounters adds src to dst by name, appending names dst lacks.
func mergeCounters(dst, src []ike.Counter) []ike.Counter {
	for _, c := range src {
		found := false
		for i := range dst {
			if dst[i].Name == c.Name {
				dst[i].Value += c.Value
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, c)
		}
	}
	return dst
}

// StoreCounters lists the state store's counters, nil when the node keeps
// no store. Use inside Do.
func (n *Node) StoreCounters() []ike.Counter {
	if n.o.Store == nil {
		return nil
	}
	return []ike.Counter{
		{Name: "records_damaged", Help: "stored records refused: their integrity check failed (damaged under the running KS)", Value: n.o.Store.IntegrityFailures()},
	}
}

// LogCounters lists what the rate limiters of the log lines caused by
// unauthenticated input, and by refused registrations, suppressed (SPEC
// S6): the node's, its key server's and those of the phase-1 endpoints of
// every socket it has had. Use inside Do.
func (n *Node) LogCounters() []ike.Counter {
	v := n.unauthLim.Suppressed() + n.refuseLim.Suppressed() + n.retiredLog
	if n.ks != nil {
		v += n.ks.LogSuppressed()
	}
	for _, s := range n.socks {
		if s.ep != nil {
			v += s.ep.LogSuppressed()
		}
	}
	return []ike.Counter{
		{Name: "log_records_suppressed", Help: "log records caused by unauthenticated input or refused registrations suppressed by the rate limiters", Value: v},
	}
}
