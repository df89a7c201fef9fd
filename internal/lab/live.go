package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
)

// Live traffic (`groupvpn lab --cli`, traffic on): the hosts behind every
// member send numbered packets (flowmeter) to the hosts behind every other
// member, alternately on the lab-traffic and the lab-voice SA, at a steady
// rate, while the operator works in the CLI. Live.Status is the one-line account of what was sent and
// lost so far and of the members' states; Live.Stop ends the traffic and
// returns every pair's account for the final table (PrintLiveTable).

// Member states in a status line.
const (
	StateRegistered = "registered"    // registered, holding the group's KEK
	StateTemporary  = "temporary SAs" // removed (clear ... members): sending on temporary SAs until it re-registers
	StateRegister   = "re-registering"
	StateNoTEK      = "no TEK" // holds no live TEK: its traffic is dropped or sent in the clear (fail mode)
	StateDown       = "down"   // its control plane does not answer
)

var stateOrder = []string{StateRegistered, StateTemporary, StateRegister, StateNoTEK, StateDown}

// Live is the lab's live traffic.
type Live struct {
	meter *flowmeter.Meter
	drain time.Duration

	mu       sync.Mutex
	l        *Lab
	start    time.Time
	stopped  time.Time
	unsent   time.Time // just before the first packet numbered but not sent (zero: none)
	flows    []flowmeter.Flow
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	last     time.Time       // the end of the last window counted
	total    flowmeter.Stats // counted so far (status)
	rate     float64         // packets per second in the last window counted
	worst    flowmeter.Stats // the pair with the longest gap so far
}

// NewLive makes the meter of a lab's live traffic; pass its Deliver as
// Options.Deliver. drain is how long a packet may take to arrive before
// the status counts it lost (0: 2 s).
func NewLive(drain time.Duration) *Live {
	if drain <= 0 {
		drain = 2 * time.Second
	}
	return &Live{meter: flowmeter.New(), drain: drain}
}

// Deliver takes what the hosts behind member i received (Options.Deliver).
func (v *Live) Deliver(i int, payload []byte) {
	v.meter.Received(payload, time.Now())
}

// Start sends one packet on every ordered pair of l's members (liveFlows)
// each interval, until Stop or ctx ends; its members should be registered.
// Without traffic (interval 0, or l without Options.DataPlane, two members
// and Options.Deliver = v.Deliver) the status reports the members' states
// only.
func (v *Live) Start(ctx context.Context, l *Lab, interval time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.l != nil {
		return errors.New("lab: live traffic already started")
	}
	gctx, cancel := context.WithCancel(ctx)
	v.l, v.cancel, v.done = l, cancel, make(chan struct{})
	v.start = time.Now()
	v.last = v.start
	if !l.CanSendLive() || interval <= 0 {
		close(v.done)
		return nil
	}
	v.flows, v.interval = liveFlows(len(l.dp)), interval
	g := &flowmeter.Generator{Meter: v.meter, Flows: v.flows, Interval: interval,
		Send: func(f flowmeter.Flow, payload []byte) {
			// Stop ends the generator after its round: every packet the
			// meter numbered is sent, unless ctx ends (the lab closes):
			// then the windows end before the first one not sent.
			// Alternately on lab-traffic (AES-GCM) and lab-voice (AES-CBC):
			// a policy change on either shows.
			p, _ := flowmeter.Parse(payload)
			if err := l.SendUDP(ctx, int(f.Src), int(f.Dst), p.Seq%2 == 1, payload); err != nil {
				v.mu.Lock()
				if v.unsent.IsZero() {
					v.unsent = time.Now().Add(-time.Millisecond)
				}
				v.mu.Unlock()
			}
		}}
	go func() {
		defer close(v.done)
		g.Run(gctx)
	}()
	return nil
}

// CanSendLive is whether Live.Start sends traffic through l: it runs the
// data plane with two members at least and hands what arrives to
// Options.Deliver.
func (l *Lab) CanSendLive() bool { return l.dpDone != nil && len(l.dp) >= 2 && l.deliver != nil }

// liveFlows are the flows of n members: every ordered pair up to 16
// members, beyond that each member to the next 7 (as Traffic's peers), so
// that each flow keeps a useful rate.
func liveFlows(n int) []flowmeter.Flow {
	if n <= 16 {
		return flowmeter.Pairs(n)
	}
	var fs []flowmeter.Flow
	for i := 0; i < n; i++ {
		for k := 1; k <= 7; k++ {
			fs = append(fs, flowmeter.Flow{Src: uint16(i), Dst: uint16((i + k) % n)})
		}
	}
	return fs
}

// LiveFlows is the number of flows Start sends on for n members.
func LiveFlows(n int) int { return len(liveFlows(n)) }

// MemberStates counts l's members per state (StateRegistered, ...) and
// returns the earliest and the latest scheduled re-registration of the
// members on temporary SAs (zero: none).
func (l *Lab) MemberStates(ctx context.Context) (_ map[string]int, next, last time.Time) {
	if l.v2 != nil {
		return l.v2States(ctx), time.Time{}, time.Time{}
	}
	counts := map[string]int{}
	for _, g := range l.GMs {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := g.Node.State(sctx)
		cancel()
		if err != nil {
			counts[StateDown]++
			continue
		}
		live := 0
		for _, t := range s.TEKs {
			if t.Expires.After(s.Now) {
				live++
			}
		}
		switch {
		case live == 0:
			counts[StateNoTEK]++
		case len(s.GM) == 0 || s.GM[0].State != "registered":
			counts[StateRegister]++
		case len(s.KEKs) == 0:
			counts[StateTemporary]++
			if r := s.GM[0].Reregister; !r.IsZero() {
				if next.IsZero() || r.Before(next) {
					next = r
				}
				if r.After(last) {
					last = r
				}
			}
		default:
			counts[StateRegistered]++
		}
	}
	return counts, next, last
}

// LiveStatus is one status line's account.
type LiveStatus struct {
	At     time.Time
	Pairs  int
	Rate   float64         // packets per second sent in the last window
	Total  flowmeter.Stats // every packet sent since the start, older than the drain time
	Worst  flowmeter.Stats // the pair with the longest gap so far
	States map[string]int
	// Until the first and the last re-registration due of the members on
	// temporary SAs (0: none).
	NextReg, LastReg time.Duration
	// KS is the cooperating key servers' roles (RolesLine; "": one KS).
	KS string
}

// Status counts the packets sent since the last Status (up to the drain
// time ago) and asks every member its state.
func (v *Live) Status(ctx context.Context) (LiveStatus, error) {
	v.mu.Lock()
	if v.l == nil {
		v.mu.Unlock()
		return LiveStatus{}, errors.New("lab: live traffic not started")
	}
	now := time.Now()
	to := now.Add(-v.drain)
	if !v.stopped.IsZero() && to.After(v.stopped) {
		to = v.stopped
	}
	if !v.unsent.IsZero() && to.After(v.unsent) {
		to = v.unsent
	}
	st := LiveStatus{At: now, Pairs: len(v.flows)}
	// Windows of a second at least and of whole sending intervals from
	// the start (the generator's rounds follow a ticker started then), so
	// that each holds the same number of rounds unless one was late.
	if v.interval > 0 && v.stopped.IsZero() {
		n := to.Sub(v.last) / v.interval
		n = max(n, (time.Second+v.interval-1)/v.interval)
		if end := v.last.Add(n * v.interval); !end.After(to) {
			to = end
		} else {
			to = v.last // not yet
		}
	}
	if to.Sub(v.last) >= time.Second || !v.stopped.IsZero() && to.After(v.last) {
		ss := v.meter.Window(v.last, to)
		t := flowmeter.Total(ss)
		v.rate = float64(t.Sent) / to.Sub(v.last).Seconds()
		v.total.Sent += t.Sent
		v.total.Received += t.Received
		v.total.Lost += t.Lost
		v.total.Duplicated += t.Duplicated
		v.total.Reordered += t.Reordered
		v.total.MaxLatency = max(v.total.MaxLatency, t.MaxLatency)
		for _, s := range ss {
			if s.LongestGap > v.worst.LongestGap || s.Lost > 0 && s.LongestGap == v.worst.LongestGap {
				v.worst = s
			}
		}
		v.total.LongestGap = v.worst.LongestGap
		v.last = to
	}
	st.Total, st.Worst, st.Rate = v.total, v.worst, v.rate
	l := v.l
	v.mu.Unlock()
	var next, last time.Time
	st.States, next, last = l.MemberStates(ctx)
	if len(l.kss) > 1 {
		st.KS = RolesLine(l.Roles(ctx))
	}
	if !next.IsZero() {
		st.NextReg, st.LastReg = max(time.Until(next), 0), max(time.Until(last), 0)
	}
	return st, ctx.Err()
}

// String is the status line.
func (s LiveStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[lab %s] ", s.At.Format("15:04:05"))
	if s.Pairs > 0 {
		fmt.Fprintf(&b, "%d pairs, %.0f pkt/s; sent %d, lost %d, dup %d, reordered %d",
			s.Pairs, s.Rate, s.Total.Sent, s.Total.Lost, s.Total.Duplicated, s.Total.Reordered)
		if s.Worst.LongestGap > 0 {
			fmt.Fprintf(&b, ", longest gap %s (gm%d->gm%d)", s.Worst.LongestGap.Round(time.Millisecond), s.Worst.Src+1, s.Worst.Dst+1)
		}
		b.WriteString("; ")
	}
	b.WriteString("members:")
	sep := " "
	for _, k := range stateOrder {
		if n := s.States[k]; n > 0 {
			fmt.Fprintf(&b, "%s%d %s", sep, n, k)
			sep = ", "
		}
	}
	switch {
	case s.LastReg-s.NextReg >= time.Second:
		fmt.Fprintf(&b, " (they re-register in %s to %s)", s.NextReg.Round(time.Second), s.LastReg.Round(time.Second))
	case s.NextReg > 0:
		fmt.Fprintf(&b, " (next re-registration in %s)", s.NextReg.Round(time.Second))
	}
	if s.KS != "" {
		b.WriteString("; key servers: " + s.KS)
	}
	return b.String()
}

// Key is what makes a status worth showing at once: losses, duplicates,
// reordering or members' states changed.
func (s LiveStatus) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d", s.Total.Lost, s.Total.Duplicated, s.Total.Reordered)
	for _, k := range stateOrder {
		fmt.Fprintf(&b, "/%d", s.States[k])
	}
	b.WriteString("/" + s.KS)
	return b.String()
}

// Stop ends the traffic, waits the drain time for the packets in flight
// and returns every pair's account since the start (flowmeter.Window).
func (v *Live) Stop(ctx context.Context) []flowmeter.Stats {
	v.mu.Lock()
	if v.l == nil || !v.stopped.IsZero() {
		start, stopped := v.start, v.stopped
		v.mu.Unlock()
		if stopped.IsZero() {
			return nil
		}
		return v.meter.Window(start, stopped.Add(time.Nanosecond))
	}
	v.cancel()
	v.mu.Unlock()
	<-v.done
	v.mu.Lock()
	v.stopped = time.Now()
	if !v.unsent.IsZero() {
		v.stopped = v.unsent
	}
	flows := v.flows
	v.mu.Unlock()
	if flows == nil {
		return nil // no traffic
	}
	select {
	case <-time.After(v.drain):
	case <-ctx.Done():
	}
	return v.meter.Window(v.start, v.stopped.Add(time.Nanosecond))
}

// PrintLiveTable writes the final table of the live traffic: one line per
// member (what the hosts behind it sent to every other member), the worst
// pair and the total.
func PrintLiveTable(out io.Writer, ss []flowmeter.Stats, elapsed time.Duration) {
	bySrc := map[uint16][]flowmeter.Stats{}
	for _, s := range ss {
		bySrc[s.Src] = append(bySrc[s.Src], s)
	}
	srcs := make([]int, 0, len(bySrc))
	for s := range bySrc {
		srcs = append(srcs, int(s))
	}
	sort.Ints(srcs)
	fmt.Fprintf(out, "\nLab traffic over %s: numbered packets, alternately on lab-traffic (aes-gcm) and lab-voice (aes-cbc), on %d pairs of members;\n"+
		"per member, what the hosts behind it sent to the others:\n", elapsed.Round(time.Second), len(ss))
	row := func(name string, t flowmeter.Stats) {
		fmt.Fprintf(out, "  %-8s %9d %9d %6d %6d %10d %12s %12s\n", name, t.Sent, t.Received, t.Lost, t.Duplicated, t.Reordered,
			t.LongestGap.Round(time.Millisecond), t.MaxLatency.Round(time.Microsecond))
	}
	fmt.Fprintf(out, "  %-8s %9s %9s %6s %6s %10s %12s %12s\n", "from", "sent", "received", "lost", "dup", "reordered", "longest gap", "max latency")
	for _, s := range srcs {
		row(fmt.Sprintf("gm%d", s+1), flowmeter.Total(bySrc[uint16(s)]))
	}
	t := flowmeter.Total(ss)
	row("all", t)
	if w, ok := flowmeter.Worst(ss); ok {
		fmt.Fprintf(out, "Worst pair gm%d->gm%d: sent %d, lost %d, longest gap %s.\n", w.Src+1, w.Dst+1, w.Sent, w.Lost, w.LongestGap.Round(time.Millisecond))
	}
	fmt.Fprintf(out, "%d packets sent, %d lost, %d duplicated, %d reordered.\n", t.Sent, t.Lost, t.Duplicated, t.Reordered)
}
