package coop

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

func wantOnePrimary(t *testing.T, s *sim, want netip.Addr) {
	t.Helper()
	if p := s.primaries(); len(p) != 1 || p[0] != want {
		t.Fatalf("at +%v primaries %v, want [%v]", s.now.Sub(t0), p, want)
	}
	for _, a := range s.order {
		if n := s.nodes[a]; n.alive && n.e.Primary() != want {
			t.Fatalf("%v follows %v, want %v", a, n.e.Primary(), want)
		}
	}
}

// proves: C1 (issue 16: election: starting key servers wait to hear a
// primary, then the highest priority claims primary and the others follow
// it and are told to adopt its state)
func TestStartupElection(t *testing.T) {
	s := newSim(t, 1, 100, 200, 50)
	s.startAll()
	s.run(DefaultElectionWait-time.Second, nil)
	if p := s.primaries(); len(p) != 0 {
		t.Fatalf("primary %v before the election wait", p)
	}
	s.run(2*time.Second, nil)
	wantOnePrimary(t, s, addr("10.0.0.2"))
	for _, a := range []netip.Addr{addr("10.0.0.1"), addr("10.0.0.3")} {
		var adopt *Adopt
		for _, ev := range s.events {
			if ad, ok := ev.ev.(Adopt); ok && ev.node == a {
				adopt = &ad
			}
		}
		if adopt == nil || adopt.Primary != addr("10.0.0.2") {
			t.Fatalf("%v: adopt %+v", a, adopt)
		}
	}
	// stable for an hour, each peer reachable from each
	s.run(time.Hour, func() { wantOnePrimary(t, s, addr("10.0.0.2")) })
	for _, a := range s.order {
		for _, p := range s.nodes[a].e.Peers() {
			if !p.Reachable {
				t.Fatalf("%v: peer %v unreachable", a, p.Addr)
			}
		}
	}
}

// proves: C1 (issue 16: election: equal priorities, the highest address wins)
func TestElectionTieHighestAddress(t *testing.T) {
	s := newSim(t, 2, 10, 10, 10)
	s.startAll()
	s.run(time.Minute, nil)
	wantOnePrimary(t, s, addr("10.0.0.3"))
}

// proves: C1 (issue 16: failover: the primary dies; the best secondary
// becomes primary within the dead interval and the other follows it)
func TestFailoverWithinDeadInterval(t *testing.T) {
	s := newSim(t, 3, 100, 200, 150)
	s.startAll()
	s.run(10*time.Minute+7*time.Second, nil)
	wantOnePrimary(t, s, addr("10.0.0.2"))
	killed := s.now
	s.kill(addr("10.0.0.2"))
	s.run(2*DefaultPeriod*DefaultDeadPeriods, nil)
	wantOnePrimary(t, s, addr("10.0.0.3"))
	at, ok := s.firstEvent(addr("10.0.0.3"), killed, toPrimary)
	if !ok || at.Sub(killed) > DefaultPeriod*DefaultDeadPeriods {
		t.Fatalf("new primary after %v (found %v), want within the dead interval %v", at.Sub(killed), ok, DefaultPeriod*DefaultDeadPeriods)
	}
	if _, ok := s.firstEvent(addr("10.0.0.1"), killed, toPrimary); ok {
		t.Fatal("the lower-priority secondary claimed primary too")
	}
}

// proves: C1 (issue 16: a returning KS takes the role the election gives
// it: no preemption, the higher-priority KS that comes back stays
// secondary and adopts the primary's state, so members see no key change)
func TestReturningKSDoesNotPreempt(t *testing.T) {
	s := newSim(t, 4, 100, 200)
	s.startAll()
	s.run(time.Minute, nil)
	wantOnePrimary(t, s, addr("10.0.0.2"))
	s.kill(addr("10.0.0.2"))
	s.run(3*time.Minute, nil)
	wantOnePrimary(t, s, addr("10.0.0.1"))
	back := s.now
	s.start(addr("10.0.0.2"))
	s.run(time.Second, nil)
	s.run(2*time.Hour, func() { wantOnePrimary(t, s, addr("10.0.0.1")) })
	if _, ok := s.firstEvent(addr("10.0.0.2"), back, toPrimary); ok {
		t.Fatal("the returning KS became primary")
	}
	at, ok := s.firstEvent(addr("10.0.0.2"), back, func(ev Event) bool { a, ok := ev.(Adopt); return ok && a.Primary == addr("10.0.0.1") })
	if !ok || at.Sub(back) > time.Second {
		t.Fatalf("returning KS adopted the primary's state after %v (%v)", at.Sub(back), ok)
	}
}

// proves: C1 (issue 16: partition and merge: each side elects a primary;
// on heal exactly one remains, by priority then address, and the loser is
// told to adopt the winner's state)
func TestPartitionThenMerge(t *testing.T) {
	s := newSim(t, 5, 200, 100, 150)
	s.startAll()
	s.run(time.Minute, nil)
	wantOnePrimary(t, s, addr("10.0.0.1"))
	a1 := addr("10.0.0.1")
	s.cut = func(a, b netip.Addr) bool { return (a == a1) != (b == a1) }
	s.run(5*time.Minute, nil)
	if p := s.primaries(); len(p) != 2 || p[0] != a1 || p[1] != addr("10.0.0.3") {
		t.Fatalf("partitioned: primaries %v, want 10.0.0.1 and 10.0.0.3", p)
	}
	healed := s.now
	s.cut = nil
	s.run(DefaultPeriod+time.Second, nil)
	wantOnePrimary(t, s, a1)
	at, ok := s.firstEvent(addr("10.0.0.3"), healed, func(ev Event) bool { a, ok := ev.(Adopt); return ok && a.Reason == "merge" && a.Primary == a1 })
	if !ok {
		t.Fatal("the losing primary was not told to adopt the winner's state")
	}
	t.Logf("merged %v after heal", at.Sub(healed))
	s.run(time.Hour, func() { wantOnePrimary(t, s, a1) })
}

// proves: C1 (issue 16: replayed and stale announcements are ignored and
// counted; a stale one claiming primary changes nothing)
func TestReplayedAnnouncementIgnored(t *testing.T) {
	e, err := New(Config{Group: "G", Local: addr("10.0.0.1"), Priority: 100, Peers: []netip.Addr{addr("10.0.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(t0)
	p := addr("10.0.0.2")
	old := Announcement{Role: Primary, Priority: 50, Version: version.Current, Seq: 5}
	e.Receive(p, Announcement{Role: Secondary, Priority: 50, Version: version.Current, Seq: 9}, t0.Add(time.Second))
	e.Receive(p, Announcement{Role: Secondary, Priority: 50, Version: version.Current, Seq: 9}, t0.Add(2*time.Second))
	res := e.Receive(p, old, t0.Add(3*time.Second))
	if st := e.Stats(); st.Replayed != 2 || st.Accepted != 1 {
		t.Fatalf("stats %+v, want 2 replayed, 1 accepted", st)
	}
	if ps := e.Peers()[0]; ps.Role != Secondary || ps.Seq != 9 {
		t.Fatalf("peer %+v changed by a stale announcement", ps)
	}
	if len(res.Send)+len(res.Events) != 0 {
		t.Fatalf("a stale announcement caused %+v", res)
	}
	// after the wait, this KS (priority 100) is primary, not the peer
	e.Tick(t0.Add(DefaultElectionWait))
	if e.Role() != Primary {
		t.Fatal("not primary")
	}
}

// proves: C1 (issue 16: announcements from an unconfigured address are
// ignored, counted, hold no state, and their log line is rate-limited to
// one per announcement period)
func TestUnconfiguredPeerIgnored(t *testing.T) {
	e, err := New(Config{Group: "G", Local: addr("10.0.0.1"), Priority: 100, Peers: []netip.Addr{addr("10.0.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(t0)
	lines := 0
	for i := range 1000 {
		from := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		res := e.Receive(from, Announcement{Role: Primary, Priority: 255, Version: version.Current, Seq: uint32(i + 1)}, t0.Add(time.Duration(i)*10*time.Millisecond))
		for _, ev := range res.Events {
			if _, ok := ev.(Unauthorized); ok {
				lines++
			}
		}
		if len(res.Send) != 0 {
			t.Fatal("answered an unconfigured peer")
		}
	}
	if st := e.Stats(); st.Unknown != 1000 || st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
	if lines != 1 { // 10 s of input, period 20 s
		t.Fatalf("%d COOP_KS_UNAUTH lines, want 1", lines)
	}
	if len(e.Peers()) != 1 || e.Primary().IsValid() {
		t.Fatalf("peers %v primary %v", e.Peers(), e.Primary())
	}
	e.Tick(t0.Add(DefaultElectionWait))
	if e.Role() != Primary {
		t.Fatal("an unconfigured primary kept this KS from the election")
	}
}

// proves: C1 (issue 16: invalid and incompatible announcements (SPEC V1:
// another major or minor version) are dropped and counted; a different
// mini version is accepted)
func TestInvalidAndIncompatibleDropped(t *testing.T) {
	e, _ := New(Config{Group: "G", Local: addr("10.0.0.1"), Priority: 100, Peers: []netip.Addr{addr("10.0.0.2")}})
	e.Start(t0)
	p := addr("10.0.0.2")
	e.Receive(p, Announcement{Role: 7, Priority: 1, Version: version.Current, Seq: 1}, t0)
	e.Receive(p, Announcement{Role: Primary, Priority: 0, Version: version.Current, Seq: 2}, t0)
	e.Receive(p, Announcement{Role: Primary, Priority: 1, Version: version.Version{Major: 1, Minor: 1, Mini: 2}, Seq: 3}, t0)
	if st := e.Stats(); st.Invalid != 2 || st.Incompatible != 1 || st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
	e.Receive(p, Announcement{Role: Primary, Priority: 1, Version: version.Base, Seq: 4}, t0)
	if e.Primary() != p || e.Role() != Secondary {
		t.Fatalf("a 1.0.1 primary not followed: %v %v", e.Role(), e.Primary())
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	l := addr("10.0.0.1")
	for _, c := range []Config{
		{Local: l},
		{Priority: 1},
		{Local: l, Priority: 1, Peers: []netip.Addr{l}},
		{Local: l, Priority: 1, Peers: []netip.Addr{addr("10.0.0.2"), addr("10.0.0.2")}},
		{Local: l, Priority: 1, Period: time.Minute, Dead: time.Minute},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// proves: O3 (issue 16: COOP log lines carry IOS's mnemonics and texts)
func TestEventLines(t *testing.T) {
	var b bytes.Buffer
	s := newSim(t, 6, 100, 200)
	s.startAll()
	s.run(time.Minute, nil)
	for _, ev := range s.events {
		if ev.node != addr("10.0.0.2") {
			continue
		}
		if sev, m, text := ev.ev.Log(); m != "" {
			b.WriteString("%GDOI-" + string(rune('0'+sev)) + "-" + m + ": " + text + "\n")
		}
	}
	for _, want := range []string{
		"%GDOI-5-COOP_KS_ADD: 10.0.0.1 added as COOP Key Server in group G.",
		"%GDOI-5-COOP_KS_REACH: Reachability restored with Cooperative KS 10.0.0.1 in group G.",
		"%GDOI-5-COOP_KS_ELECTION: KS entering election mode in group G (Previous Primary = NONE)",
		"%GDOI-5-COOP_KS_TRANS_TO_PRI: KS 10.0.0.2 in group G transitioned to Primary (Previous Primary = NONE)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
}

// proves: C1 (issue 16: sequence numbers are per KS-KS IKE SA: an
// announcement numbered below the last is refused until the owner reports
// a new SA with the peer, then numbering restarts at 1 both ways)
func TestSessionRestartsSequenceNumbers(t *testing.T) {
	e, _ := New(Config{Group: "G", Local: addr("10.0.0.1"), Priority: 100, Peers: []netip.Addr{addr("10.0.0.2")}})
	p := addr("10.0.0.2")
	if res := e.Start(t0); len(res.Send) != 1 || res.Send[0].Ann.Seq != 1 || !res.Send[0].Ann.ReplyRequest || res.Send[0].Ann.Role != Electing {
		t.Fatalf("start sent %+v", res.Send)
	}
	e.Receive(p, Announcement{Role: Primary, Priority: 50, Version: version.Current, Seq: 100}, t0)
	e.Receive(p, Announcement{Role: Primary, Priority: 50, Version: version.Current, Seq: 1}, t0.Add(time.Second))
	if st := e.Stats(); st.Accepted != 1 || st.Replayed != 1 {
		t.Fatalf("stats %+v", st)
	}
	res := e.Session(p, t0.Add(2*time.Second))
	if len(res.Send) != 1 || res.Send[0].Ann.Seq != 1 || res.Send[0].Ann.Role != Secondary {
		t.Fatalf("session sent %+v", res.Send)
	}
	e.Receive(p, Announcement{Role: Primary, Priority: 50, Version: version.Current, Seq: 1}, t0.Add(3*time.Second))
	if st := e.Stats(); st.Accepted != 2 || st.Replayed != 1 {
		t.Fatalf("after a new session: stats %+v", st)
	}
	if e.Session(addr("192.0.2.1"), t0).Send != nil {
		t.Fatal("a session with an unconfigured peer sent")
	}
}

// proves: C1 (issue 16: election fallback: a KS that hears a better peer
// which never claims primary (it follows a primary this KS cannot hear)
// claims primary itself a dead interval after entering election, so its
// members are not left without rekeys; the better peer keeps following
// the best primary it hears)
func TestElectionFallbackWhenBetterPeerDoesNotClaim(t *testing.T) {
	s := newSim(t, 7, 100, 200, 250)
	a, c := addr("10.0.0.1"), addr("10.0.0.3")
	s.cut = func(x, y netip.Addr) bool { return x == a && y == c || x == c && y == a }
	s.startAll()
	dead := DefaultPeriod * DefaultDeadPeriods
	s.run(DefaultElectionWait+dead-time.Second, nil)
	if r := s.nodes[a].e.Role(); r != Electing {
		t.Fatalf("10.0.0.1 is %v before the fallback", r)
	}
	s.run(2*time.Second, nil)
	if p := s.primaries(); len(p) != 2 || p[0] != a || p[1] != c {
		t.Fatalf("primaries %v, want 10.0.0.1 (fallback) and 10.0.0.3", p)
	}
	s.run(time.Hour, nil)
	if got := s.nodes[addr("10.0.0.2")].e.Primary(); got != c {
		t.Fatalf("10.0.0.2 follows %v, want 10.0.0.3", got)
	}
}

// proves: C1 (issue 16: reconfiguration: a peer removed from the
// configuration is forgotten (COOP_KS_REMOVE), and if it was the primary
// the others elect at once; a peer added is announced to and heard)
func TestSetPeers(t *testing.T) {
	s := newSim(t, 8, 100, 200, 150)
	s.startAll()
	s.run(time.Minute, nil)
	b := addr("10.0.0.2")
	wantOnePrimary(t, s, b)
	rest := []netip.Addr{addr("10.0.0.1"), addr("10.0.0.3")}
	since := s.now
	for _, a := range rest {
		var others []netip.Addr
		for _, o := range rest {
			if o != a {
				others = append(others, o)
			}
		}
		res, err := s.nodes[a].e.SetPeers(others, s.now)
		if err != nil {
			t.Fatal(err)
		}
		s.apply(a, res)
		s.nodes[a].cfg.Peers = others
	}
	s.run(time.Second, nil)
	if p := s.primaries(); len(p) != 2 || p[0] != b || p[1] != addr("10.0.0.3") {
		t.Fatalf("primaries %v, want 10.0.0.2 (alone) and 10.0.0.3", p)
	}
	if got := s.nodes[addr("10.0.0.1")].e.Primary(); got != addr("10.0.0.3") {
		t.Fatalf("10.0.0.1 follows %v", got)
	}
	var lines []string
	for _, ev := range s.events {
		if ev.node == addr("10.0.0.3") && !ev.at.Before(since) {
			if _, m, text := ev.ev.Log(); m != "" {
				lines = append(lines, m+": "+text)
			}
		}
	}
	for _, want := range []string{
		"COOP_KS_REMOVE: 10.0.0.2 removed as COOP Key Server in group G.",
		"COOP_KS_ELECTION: KS entering election mode in group G (Previous Primary = 10.0.0.2)",
		"COOP_KS_TRANS_TO_PRI: KS 10.0.0.3 in group G transitioned to Primary (Previous Primary = 10.0.0.2)",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("missing %q in %q", want, lines)
		}
	}
	// a bad list changes nothing
	e := s.nodes[addr("10.0.0.1")].e
	if _, err := e.SetPeers([]netip.Addr{addr("10.0.0.1")}, s.now); err == nil || len(e.Peers()) != 1 {
		t.Fatalf("SetPeers with the local address: %v, peers %v", err, e.Peers())
	}
	// 10.0.0.2 added back on 10.0.0.1 only: 10.0.0.1 now hears two
	// primaries (they do not hear each other) and follows the better,
	// 10.0.0.2 (priority 200).
	res, err := e.SetPeers([]netip.Addr{addr("10.0.0.2"), addr("10.0.0.3")}, s.now)
	if err != nil || len(res.Send) != 1 || res.Send[0].To != b || !res.Send[0].Ann.ReplyRequest {
		t.Fatalf("adding 10.0.0.2: %v, sent %+v", err, res.Send)
	}
	s.apply(addr("10.0.0.1"), res)
	s.apply(b, s.nodes[b].e.Session(addr("10.0.0.1"), s.now)) // the new KS-KS IKE SA
	s.run(time.Second, nil)
	if got := e.Primary(); got != b {
		t.Fatalf("10.0.0.1 follows %v, want the best primary it hears, 10.0.0.2", got)
	}
}

// proves: C1 (issue 16: over a slow, reordering and lossy network (delay
// 2 s to 7 s, 20% loss) the key servers drop reordered announcements as
// stale, may elect more than once, and once the network is clean again
// converge on one primary that every key server follows)
func TestLossyReorderingNetwork(t *testing.T) {
	s := newSim(t, 9, 100, 200, 150)
	s.delay, s.jitter, s.loss = 2*time.Second, 5*time.Second, 0.2
	s.startAll()
	s.run(6*time.Hour, nil)
	var replayed, elections uint64
	for _, a := range s.order {
		st := s.nodes[a].e.Stats()
		replayed += st.Replayed
		elections += st.Elections
	}
	if replayed == 0 {
		t.Fatal("no reordered announcement was dropped as stale")
	}
	s.delay, s.jitter, s.loss = 20*time.Millisecond, 0, 0
	s.run(3*DefaultPeriod*DefaultDeadPeriods, nil)
	p := s.primaries()
	if len(p) != 1 {
		t.Fatalf("primaries %v after the network recovered", p)
	}
	s.run(time.Hour, func() { wantOnePrimary(t, s, p[0]) })
	t.Logf("6 h lossy: %d stale announcements dropped, %d elections entered, %d dropped by the network; primary %v", replayed, elections, s.dropped, p[0])
}

// proves: C1 (issue 16: what the node needs of the elector beyond the
// election: Announce sends to every peer at once and restarts the period,
// Extra gives one more announcement with the next number (member-list
// parts), Reconfigure changes priority and timers as New checks them)
func TestAnnounceExtraReconfigure(t *testing.T) {
	e, err := New(Config{Group: "G", Local: addr("10.0.0.1"), Priority: 10, Peers: []netip.Addr{addr("10.0.0.2"), addr("10.0.0.3")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Extra(addr("10.0.0.2")); ok {
		t.Fatal("Extra before Start")
	}
	e.Start(t0)
	res := e.Announce(t0.Add(time.Second))
	if len(res.Send) != 2 || res.Send[0].Ann.Seq != 2 {
		t.Fatalf("Announce: %+v", res.Send)
	}
	x, ok := e.Extra(addr("10.0.0.2"))
	if !ok || x.To != addr("10.0.0.2") || x.Ann.Seq != 3 || x.Ann.ReplyRequest {
		t.Fatalf("Extra: %+v %v", x, ok)
	}
	if _, ok := e.Extra(addr("10.9.9.9")); ok {
		t.Fatal("Extra to a stranger")
	}
	if _, err := e.Reconfigure(0, 0, 0, 0, t0); err == nil {
		t.Fatal("priority 0 accepted")
	}
	if _, err := e.Reconfigure(20, time.Second, time.Second, 0, t0); err == nil {
		t.Fatal("dead interval not above the period accepted")
	}
	res, err = e.Reconfigure(20, time.Second, 0, 0, t0.Add(2*time.Second))
	c := e.Config()
	if err != nil || c.Priority != 20 || c.Period != time.Second || c.Dead != 3*time.Second || c.ElectionWait != DefaultElectionWait {
		t.Fatalf("Reconfigure: %+v %v", c, err)
	}
	if len(res.Send) != 2 || res.Send[0].Ann.Priority != 20 {
		t.Fatalf("the new priority is not announced at once: %+v", res.Send)
	}
}
