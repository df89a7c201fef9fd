package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// DPD is the dead peer detection timer of an endpoint's established SAs
// (IOS's crypto isakmp keepalive SECONDS [RETRY] [periodic | on-demand];
// RFC 3706). A zero Interval sends no R-U-THERE on a timer; the SAs still
// answer the peer's.
//
// A probe is an R-U-THERE, sent again with a new sequence number every
// Retry while unanswered; Tries unanswered ones declare the peer dead: the
// SA fails with ErrDeadPeer, Retry after the last (Interval + Tries*Retry
// after the last proof of life at most). RFC 3706 §5.5 leaves the number
// and spacing of retransmissions to local policy; these are IOS's.
type DPD struct {
	Interval time.Duration // SECONDS: idle time (on demand) or period (periodic) before a probe
	Retry    time.Duration // RETRY: between unanswered R-U-THEREs; zero: DefaultDPDRetry
	// Periodic probes every SA every Interval, whatever the traffic. On
	// demand (IOS's default) probes only the SAs this endpoint initiated
	// (a group member's SAs to its key servers, on which it depends for
	// rekeys and re-registration) once nothing proved the peer alive for
	// Interval: a key server never probes its members.
	Periodic bool
	Tries    int // unanswered R-U-THEREs before the peer is dead; zero: DefaultDPDTries
}

// DefaultDPDRetry and DefaultDPDTries are IOS's: a probe is retransmitted
// every 2 s, and 5 unanswered R-U-THEREs declare the peer dead.
const (
	DefaultDPDRetry = 2 * time.Second
	DefaultDPDTries = 5
)

// ErrDeadPeer is the error of the Failed event of an SA whose peer did not
// answer dead peer detection.
var ErrDeadPeer = fmt.Errorf("%w: dead peer detection (no R-U-THERE-ACK)", ErrTimeout)

// Enabled reports whether d sends R-U-THERE on a timer.
func (d DPD) Enabled() bool { return d.Interval > 0 }

func (d DPD) retry() time.Duration {
	if d.Retry <= 0 {
		return DefaultDPDRetry
	}
	return d.Retry
}

func (d DPD) tries() int {
	if d.Tries <= 0 {
		return DefaultDPDTries
	}
	return d.Tries
}

// Mode is "periodic" or "on-demand", as IOS prints it.
func (d DPD) Mode() string {
	if d.Periodic {
		return "periodic"
	}
	return "on-demand"
}

// dpdState is one SA's dead peer detection: timers as data, run from the
// SA's single timer (SA.timer) and so from the Endpoint's heap.
type dpdState struct {
	next  time.Time // the next R-U-THERE or the dead-peer verdict; zero: none
	sent  int32     // R-U-THEREs of the probe in progress (0: none outstanding)
	first uint32    // sequence number of the probe's first R-U-THERE
	alive time.Time // the last proof of life: establishment or a matching ACK

	// Drained into Endpoint.Stats by apply.
	// uint16: apply drains them after every step, which adds one or two.
	rutSent, acks, ackUnexpected, dead uint16
}

// dpdArm starts the timer of a newly established SA.
func (sa *SA) dpdArm(now time.Time) {
	sa.dpd.alive, sa.dpd.sent, sa.dpd.next = now, 0, time.Time{}
	sa.dpdRearm(now)
}

// dpdRearm sets the timer after Config.DPD changed: off, a probe in
// progress stops; on, a probe in progress goes on under the new retry and
// tries, and an idle SA's next probe is Interval after its last proof of
// life (now if that is past).
func (sa *SA) dpdRearm(now time.Time) {
	d := sa.cfg.DPD
	if !d.Enabled() || !sa.peerDPD || (!d.Periodic && !sa.initiator) {
		sa.dpd.sent, sa.dpd.next = 0, time.Time{}
		return
	}
	if sa.dpd.sent > 0 {
		if sa.dpd.next.IsZero() || sa.dpd.next.After(now.Add(d.retry())) {
			sa.dpd.next = now.Add(d.retry())
		}
		return
	}
	sa.dpd.next = sa.dpd.alive.Add(d.Interval)
	if sa.dpd.next.Before(now) {
		sa.dpd.next = now
	}
}

// dpdDue runs the probe when its instant has come: the first R-U-THERE,
// a retransmission, or the verdict.
func (sa *SA) dpdDue(now time.Time) Result {
	d := sa.cfg.DPD
	if int(sa.dpd.sent) >= d.tries() {
		sa.dpd.dead++
		sa.state = StateDead
		sa.dpd.next = time.Time{}
		sa.log(slog.LevelWarn, "peer is dead: no R-U-THERE-ACK", "r_u_there_sent", sa.dpd.sent,
			"since", now.Sub(sa.dpd.alive).Round(time.Millisecond))
		return Result{Events: []Event{Failed{Err: ErrDeadPeer}}}
	}
	msg, err := sa.rUThere()
	if err != nil {
		// Out of randomness: try again at the next retry.
		sa.dpd.next = now.Add(d.retry())
		return Result{Timer: sa.timer()}
	}
	if sa.dpd.sent == 0 {
		sa.dpd.first = sa.dpdSeq
	}
	sa.dpd.sent++
	sa.dpd.next = now.Add(d.retry())
	return Result{Send: [][]byte{msg}, Timer: sa.timer()}
}

// rUThere builds the next R-U-THERE: each one has a sequence number of its
// own, starting at a random one (RFC 3706 §5.7).
func (sa *SA) rUThere() ([]byte, error) {
	if sa.dpdSeq == 0 {
		b, err := sa.randBytes(4)
		if err != nil {
			return nil, err
		}
		sa.dpdSeq = binary.BigEndian.Uint32(b)>>1 | 1 // never 0; room before it wraps
	} else {
		sa.dpdSeq++
	}
	msg, err := sa.protected([]isakmp.Payload{sa.dpdNotify(isakmp.NotifyRUThere, sa.dpdSeq)})
	if err != nil {
		return nil, err
	}
	sa.dpd.rutSent++
	return msg, nil
}

// dpdAck takes an authenticated R-U-THERE-ACK: it proves the peer alive
// only if it answers an R-U-THERE of the probe in progress, by its
// sequence number and the SA's cookies (RFC 3706 §5.7). Any other (late,
// replayed, unsolicited) is ignored and counted.
func (sa *SA) dpdAck(n *isakmp.Notify, now time.Time) {
	ours := string(n.SPI) == string(append(sa.icky[:], sa.rcky[:]...))
	if len(n.Data) != 4 || !ours || sa.dpd.sent == 0 {
		sa.dpd.ackUnexpected++
		return
	}
	seq := binary.BigEndian.Uint32(n.Data)
	if seq-sa.dpd.first > sa.dpdSeq-sa.dpd.first { // outside [first, dpdSeq], modulo 2^32
		sa.dpd.ackUnexpected++
		return
	}
	sa.dpd.acks++
	sa.dpd.sent = 0
	sa.dpd.alive = now
	if sa.cfg.DPD.Enabled() && sa.dpd.next != (time.Time{}) {
		sa.dpd.next = now.Add(sa.cfg.DPD.Interval)
	}
}

// DPD sends an R-U-THERE at once (RFC 3706 §5) when the peer announced DPD,
// as part of the probe in progress or a new one: an ACK of it proves the
// peer alive; with a DPD timer configured, unanswered it is retransmitted
// and declares the peer dead as a timer's probe does. The peer's R-U-THERE-ACK is consumed by
// Handle.
func (sa *SA) DPD(now time.Time) (Result, error) {
	if sa.state != StateEstablished {
		return Result{}, errors.New("ike: DPD needs an established SA")
	}
	if !sa.peerDPD {
		return Result{}, fmt.Errorf("ike: peer %s did not announce DPD", sa.peer)
	}
	msg, err := sa.rUThere()
	if err != nil {
		return Result{}, err
	}
	if sa.dpd.sent == 0 {
		sa.dpd.first = sa.dpdSeq
	}
	sa.dpd.sent++
	if sa.cfg.DPD.Enabled() {
		sa.dpd.next = now.Add(sa.cfg.DPD.retry())
	}
	return Result{Send: [][]byte{msg}, Timer: sa.timer()}, nil
}

// DPDState is what show commands print of an SA's dead peer detection.
type DPDState struct {
	Timer       DPD       // the timer in force (crypto isakmp keepalive)
	Outstanding int       // R-U-THEREs of the probe in progress unanswered
	Next        time.Time // the next R-U-THERE or verdict; zero: this SA is not probed
	LastAlive   time.Time // establishment or the last matching ACK
}

// DPDState returns the SA's dead peer detection state.
func (sa *SA) DPDState() DPDState {
	return DPDState{Timer: sa.cfg.DPD, Outstanding: int(sa.dpd.sent), Next: sa.dpd.next, LastAlive: sa.dpd.alive}
}
