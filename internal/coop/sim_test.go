package coop

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// sim is a fake network of key servers stepping protocol time in memory:
// announcements are delivered after delay (plus jitter), dropped with
// probability loss or when cut says the two sides are partitioned at
// send time.
type sim struct {
	t       testing.TB
	now     time.Time
	nodes   map[netip.Addr]*simNode
	order   []netip.Addr
	queue   []simMsg
	cut     func(a, b netip.Addr) bool
	delay   time.Duration
	jitter  time.Duration
	loss    float64
	rng     *rand.Rand
	events  []simEvent
	dropped int
}

type simNode struct {
	cfg   Config
	e     *Elector
	timer time.Time
	alive bool
	epoch int // incarnation: announcements of another are dropped (the owner's IKE SA)
}

type simMsg struct {
	at                 time.Time
	from, to           netip.Addr
	fromEpoch, toEpoch int
	ann                Announcement
}

type simEvent struct {
	at   time.Time
	node netip.Addr
	ev   Event
}

var t0 = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// newSim builds key servers with the given priorities at 10.0.0.1, .2, ...
func newSim(t testing.TB, seed uint64, prios ...uint8) *sim {
	s := &sim{t: t, now: t0, nodes: map[netip.Addr]*simNode{}, delay: 20 * time.Millisecond, rng: rand.New(rand.NewPCG(seed, 1))}
	var all []netip.Addr
	for i := range prios {
		all = append(all, netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}))
	}
	for i, a := range all {
		var peers []netip.Addr
		for _, b := range all {
			if b != a {
				peers = append(peers, b)
			}
		}
		s.nodes[a] = &simNode{cfg: Config{Group: "G", Local: a, Priority: prios[i], Peers: peers}}
		s.order = append(s.order, a)
	}
	return s
}

func (s *sim) start(a netip.Addr) {
	n := s.nodes[a]
	e, err := New(n.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	restart := n.e != nil
	n.e, n.alive = e, true
	n.epoch++
	s.apply(a, e.Start(s.now))
	if restart { // its peers set up a new IKE SA with it
		for _, b := range s.order {
			if m := s.nodes[b]; b != a && m.alive {
				s.apply(b, m.e.Session(a, s.now))
			}
		}
	}
}

func (s *sim) startAll() {
	for _, a := range s.order {
		s.start(a)
	}
}

func (s *sim) kill(a netip.Addr) { s.nodes[a].alive = false }

func (s *sim) apply(a netip.Addr, res Result) {
	n := s.nodes[a]
	n.timer = res.Timer
	for _, ev := range res.Events {
		s.events = append(s.events, simEvent{s.now, a, ev})
	}
	for _, snd := range res.Send {
		if s.cut != nil && s.cut(a, snd.To) || s.loss > 0 && s.rng.Float64() < s.loss {
			s.dropped++
			continue
		}
		d := s.delay
		if s.jitter > 0 {
			d += time.Duration(s.rng.Int64N(int64(s.jitter)))
		}
		s.queue = append(s.queue, simMsg{s.now.Add(d), a, snd.To, n.epoch, s.nodes[snd.To].epoch, snd.Ann})
	}
}

// step advances to the next delivery or timer, not past until; it
// reports false when nothing is due before until.
func (s *sim) step(until time.Time) bool {
	next := until
	for _, m := range s.queue {
		if m.at.Before(next) {
			next = m.at
		}
	}
	for _, a := range s.order {
		if n := s.nodes[a]; n.alive && !n.timer.IsZero() && n.timer.Before(next) {
			next = n.timer
		}
	}
	if next.Before(s.now) {
		s.t.Fatalf("time went back: %v < %v", next, s.now)
	}
	s.now = next
	var due, rest []simMsg
	for _, m := range s.queue {
		if m.at.After(s.now) {
			rest = append(rest, m)
		} else {
			due = append(due, m)
		}
	}
	s.queue = rest
	slices.SortStableFunc(due, func(x, y simMsg) int { return x.at.Compare(y.at) })
	for _, m := range due {
		if n := s.nodes[m.to]; n != nil && n.alive && n.epoch == m.toEpoch && s.nodes[m.from].epoch == m.fromEpoch {
			s.apply(m.to, n.e.Receive(m.from, m.ann, s.now))
		}
	}
	for _, a := range s.order {
		if n := s.nodes[a]; n.alive && !n.timer.IsZero() && !n.timer.After(s.now) {
			s.apply(a, n.e.Tick(s.now))
		}
	}
	return s.now.Before(until)
}

// run steps until d from now, calling check (if any) after every step.
func (s *sim) run(d time.Duration, check func()) {
	until := s.now.Add(d)
	for i := 0; s.step(until); i++ {
		if check != nil {
			check()
		}
		if i > 10_000_000 {
			s.t.Fatal("simulation does not advance")
		}
	}
	if check != nil {
		check()
	}
}

func (s *sim) primaries() []netip.Addr {
	var p []netip.Addr
	for _, a := range s.order {
		if n := s.nodes[a]; n.alive && n.e.Role() == Primary {
			p = append(p, a)
		}
	}
	return p
}

// firstEvent is the time of the first event of node a matching f after since.
func (s *sim) firstEvent(a netip.Addr, since time.Time, f func(Event) bool) (time.Time, bool) {
	for _, ev := range s.events {
		if ev.node == a && !ev.at.Before(since) && f(ev.ev) {
			return ev.at, true
		}
	}
	return time.Time{}, false
}

func toPrimary(ev Event) bool { r, ok := ev.(RoleChanged); return ok && r.To == Primary }
