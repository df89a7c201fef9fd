// Package flowmeter is the traffic generator and meter behind `groupvpn
// bench disruption`: every flow (an ordered pair of members) carries
// numbered packets at a steady rate, each with its sequence number and
// send time, and the meter counts, per flow and per window of send time,
// what was sent, received, lost, duplicated and reordered, and the longest
// gap in delivery. It knows nothing of how packets travel: a caller wraps
// the payload (Append) in whatever the path needs (an IP/UDP packet into a
// TUN device, a socket) and hands what arrives to Meter.Received.
//
// A payload is 28 octets, big endian:
//
//	0   magic "GVPNFLOW" (8 octets): the marker of a metered packet
//	8   source member (16 bits)
//	10  destination member (16 bits)
//	12  sequence number (64 bits), 0, 1, 2, ... per flow
//	20  send time (64 bits, nanoseconds since the Unix epoch, the sender's clock)
//
// Sequence numbers of a flow are dense: the sender numbers every packet it
// sends (Meter.Send does), so a number never received is a lost packet.
// The meter keeps about 9 octets per packet sent (its send time and how
// often it arrived), for a bench run of minutes; an unbounded live run
// would need to forget windows already accounted.
package flowmeter

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"time"
)

// Magic opens every metered payload.
const Magic = "GVPNFLOW"

// Size is the length of a payload.
const Size = 28

// Flow is an ordered pair of members (0-based indexes, chosen by the caller).
type Flow struct{ Src, Dst uint16 }

// Packet is a decoded payload.
type Packet struct {
	Flow
	Seq  uint64
	Sent time.Time
}

// Append appends p's payload to b.
func Append(b []byte, p Packet) []byte {
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint16(b, p.Src)
	b = binary.BigEndian.AppendUint16(b, p.Dst)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	return binary.BigEndian.AppendUint64(b, uint64(p.Sent.UnixNano()))
}

// ErrNotMetered is Parse's error for a payload that is not ours.
var ErrNotMetered = errors.New("flowmeter: not a metered payload")

// Parse decodes a payload (extra octets after it are ignored).
func Parse(b []byte) (Packet, error) {
	if len(b) < Size || string(b[:8]) != Magic {
		return Packet{}, ErrNotMetered
	}
	return Packet{Flow: Flow{binary.BigEndian.Uint16(b[8:]), binary.BigEndian.Uint16(b[10:])},
		Seq: binary.BigEndian.Uint64(b[12:]), Sent: time.Unix(0, int64(binary.BigEndian.Uint64(b[20:])))}, nil
}

// flow is the meter's record of one flow: the send time of every packet
// (index: sequence number) and how often each arrived.
type flow struct {
	sent    []int64 // unix ns
	got     []uint8 // receptions, saturating at 255
	maxSeq  uint64  // highest received so far
	anyGot  bool
	reorder []uint64 // sequence numbers that arrived after a higher one
	dups    []uint64 // sequence numbers that arrived again
	lateNs  int64    // longest latency seen (receiver's clock minus send time)
}

// Meter records sends and receptions. Safe for concurrent use.
type Meter struct {
	mu    sync.Mutex
	flows map[Flow]*flow
	// Unknown counts received payloads that are malformed or name a
	// sequence number never sent (forged, or corrupted in transit).
	unknown uint64
}

// New returns an empty meter.
func New() *Meter { return &Meter{flows: map[Flow]*flow{}} }

func (m *Meter) flow(f Flow) *flow {
	r := m.flows[f]
	if r == nil {
		r = &flow{}
		m.flows[f] = r
	}
	return r
}

// Send numbers the next packet of flow f sent at t, records it and
// appends its payload to b.
func (m *Meter) Send(b []byte, f Flow, t time.Time) []byte {
	m.mu.Lock()
	r := m.flow(f)
	seq := uint64(len(r.sent))
	r.sent = append(r.sent, t.UnixNano())
	r.got = append(r.got, 0)
	m.mu.Unlock()
	return Append(b, Packet{Flow: f, Seq: seq, Sent: t})
}

// Received records a payload that arrived at now (the receiver's clock,
// for the latency only). It reports whether the payload was a metered
// packet the meter sent.
func (m *Meter) Received(b []byte, now time.Time) bool {
	p, err := Parse(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.unknown++
		return false
	}
	r := m.flows[p.Flow]
	if r == nil || p.Seq >= uint64(len(r.sent)) || r.sent[p.Seq] != p.Sent.UnixNano() {
		m.unknown++
		return false
	}
	switch {
	case r.got[p.Seq] > 0:
		r.dups = append(r.dups, p.Seq)
	case r.anyGot && p.Seq < r.maxSeq:
		r.reorder = append(r.reorder, p.Seq)
	}
	if r.got[p.Seq] < 255 {
		r.got[p.Seq]++
	}
	if !r.anyGot || p.Seq > r.maxSeq {
		r.maxSeq, r.anyGot = p.Seq, true
	}
	r.lateNs = max(r.lateNs, now.UnixNano()-p.Sent.UnixNano())
	return true
}

// Unknown is the number of received payloads that were not packets this
// meter sent.
func (m *Meter) Unknown() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unknown
}

// Stats is one flow's account over a window of send times.
type Stats struct {
	Flow
	Sent, Received      int // packets sent in the window; how many of them arrived (once or more)
	Lost                int // Sent - Received
	Duplicated          int // receptions beyond the first
	Reordered           int // packets that arrived after one sent later
	LongestGap          time.Duration
	MaxLatency          time.Duration // over the whole run, not the window
	FirstLost, LastLost time.Time     // send times of the first and last lost packet (zero: none)
}

// Window accounts every flow's packets sent in [from, to). Call it once
// the packets of the window had time to arrive: a packet still in flight
// counts as lost.
//
// LongestGap is the longest interval between the send times of two
// packets of the flow delivered one after the other (in sequence order),
// over the gaps that touch the window: with no loss it is the sending
// interval; an outage adds its length. Lost packets at the end of the run
// with nothing delivered after them count up to the last packet sent.
func (m *Meter) Window(from, to time.Time) []Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, b := from.UnixNano(), to.UnixNano()
	var out []Stats
	for f, r := range m.flows {
		s := Stats{Flow: f, MaxLatency: time.Duration(r.lateNs)}
		lo, _ := slices.BinarySearch(r.sent, a)
		hi, _ := slices.BinarySearch(r.sent, b)
		for i := lo; i < hi; i++ {
			s.Sent++
			if r.got[i] > 0 {
				s.Received++
				s.Duplicated += int(r.got[i]) - 1
			} else {
				if s.FirstLost.IsZero() {
					s.FirstLost = time.Unix(0, r.sent[i])
				}
				s.LastLost = time.Unix(0, r.sent[i])
			}
		}
		s.Lost = s.Sent - s.Received
		for _, q := range r.reorder {
			if q >= uint64(lo) && q < uint64(hi) {
				s.Reordered++
			}
		}
		s.LongestGap = longestGap(r, lo, hi)
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y Stats) int {
		if x.Src != y.Src {
			return int(x.Src) - int(y.Src)
		}
		return int(x.Dst) - int(y.Dst)
	})
	return out
}

// longestGap is the longest interval between consecutive delivered
// packets of r with one of them, or a lost packet between them, in
// [lo, hi).
func longestGap(r *flow, lo, hi int) time.Duration {
	if lo >= hi {
		return 0
	}
	// The last delivered packet before the window, else the first sent.
	prev := -1
	for i := lo - 1; i >= 0; i-- {
		if r.got[i] > 0 {
			prev = i
			break
		}
	}
	var gap int64
	i := lo
	for ; i < len(r.sent); i++ {
		if r.got[i] == 0 {
			continue
		}
		if i >= hi && prev == hi-1 {
			break // the window ends delivered: later gaps are not its own
		}
		if prev >= 0 {
			gap = max(gap, r.sent[i]-r.sent[prev])
		} else if i > 0 {
			gap = max(gap, r.sent[i]-r.sent[0])
		}
		prev = i
		if i >= hi {
			break // the first delivered after the window closes its last gap
		}
	}
	if i == len(r.sent) && prev < len(r.sent)-1 {
		// Nothing delivered after the window's last losses: they last
		// until the last packet sent.
		start := r.sent[0]
		if prev >= 0 {
			start = r.sent[prev]
		}
		if last := len(r.sent) - 1; r.got[last] == 0 {
			gap = max(gap, r.sent[last]-start)
		}
	}
	return time.Duration(gap)
}

// Total sums flow accounts: counts add up, gaps and latencies are the
// longest.
func Total(ss []Stats) Stats {
	var t Stats
	for _, s := range ss {
		t.Sent += s.Sent
		t.Received += s.Received
		t.Lost += s.Lost
		t.Duplicated += s.Duplicated
		t.Reordered += s.Reordered
		t.LongestGap = max(t.LongestGap, s.LongestGap)
		t.MaxLatency = max(t.MaxLatency, s.MaxLatency)
		if !s.FirstLost.IsZero() && (t.FirstLost.IsZero() || s.FirstLost.Before(t.FirstLost)) {
			t.FirstLost = s.FirstLost
		}
		if s.LastLost.After(t.LastLost) {
			t.LastLost = s.LastLost
		}
	}
	return t
}

// Worst is the flow with the most lost packets, then the longest gap.
func Worst(ss []Stats) (Stats, bool) {
	if len(ss) == 0 {
		return Stats{}, false
	}
	w := ss[0]
	for _, s := range ss[1:] {
		if s.Lost > w.Lost || s.Lost == w.Lost && s.LongestGap > w.LongestGap {
			w = s
		}
	}
	return w, true
}
