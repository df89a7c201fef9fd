package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// These tests step the key server's rekey delivery (RFC 6407 §4, RFC 8263
// acknowledgements) in memory: members are addresses that acknowledge
// what reaches them one millisecond later, or stay silent; time is a
// variable that jumps to the delivery's next timer. Hours of protocol
// time run in milliseconds, and every run is the same.

// memStore is a Store in memory that checks the delivery's promises:
// nothing is sent under a sequence number not reserved, nor before the
// group state that carries its keys was saved.
type memStore struct {
	groups   map[string]*GroupState
	reserved map[string]uint32
	saves    int
}

func newMemStore() *memStore {
	return &memStore{groups: map[string]*GroupState{}, reserved: map[string]uint32{}}
}

func (m *memStore) LoadGroups() ([]*GroupState, error) {
	var out []*GroupState
	for name, g := range m.groups {
		c := *g
		c.SeqReserved = m.reserved[name]
		out = append(out, &c)
	}
	return out, nil
}

func (m *memStore) SaveGroup(g *GroupState) error {
	c := *g
	if old := m.groups[g.Name]; g.Delta {
		// A delta (DeltaState) over the stored members, as store.Store.
		if old == nil {
			return fmt.Errorf("a delta of group %s, never saved whole", g.Name)
		}
		over := map[netip.Addr]bool{}
		for _, x := range g.Members {
			over[x.Address] = true
		}
		for _, a := range g.MembersGone {
			over[a] = true
		}
		c.Members = nil
		for _, x := range old.Members {
			if !over[x.Address] {
				c.Members = append(c.Members, x)
			}
		}
		c.Members = append(c.Members, g.Members...)
		c.Delta, c.MembersGone = false, nil
	}
	m.groups[g.Name] = &c
	m.reserved[g.Name] = max(m.reserved[g.Name], g.SeqReserved, g.Seq)
	m.saves++
	return nil
}

func (m *memStore) SaveKeys(g *GroupState) error {
	c := *g
	if old := m.groups[g.Name]; old != nil {
		c.Members = old.Members
	}
	return m.SaveGroup(&c)
}

func (m *memStore) ReserveSeq(group string, n uint32) (uint32, uint32, error) {
	if m.groups[group] == nil {
		return 0, 0, fmt.Errorf("group %s not saved", group)
	}
	r := m.reserved[group]
	m.reserved[group] = r + n
	return r + 1, r + n, nil
}

// sim is a KS delivery and its members on a simulated network.
type sim struct {
	t      *testing.T
	srv    *Server
	d      *Delivery
	st     *memStore // nil: no store
	now    time.Time
	timer  time.Time
	silent map[netip.Addr]bool     // members that never acknowledge
	pushes map[string]*Push        // by datagram: the rekey it belongs to
	acks   []pendingAck            // in flight to the KS, oldest first
	got    map[netip.Addr][]uint32 // sequence numbers each member received, in order
	sent   []sentAt                // every datagram the KS sent
	events []Event
}

type pendingAck struct {
	at   time.Time
	from netip.AddrPort
	data []byte
}

type sentAt struct {
	at time.Time
	Datagram
}

const rtt = time.Millisecond

func groupConfig(t testing.TB, p RekeyPolicy) GroupConfig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return GroupConfig{Name: "G", ID: 7, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key, Rekey: p,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESCBC, KeyBits: 128, AuthAlg: isakmp.AuthAlgHMACSHA256, Lifetime: time.Hour,
			Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}
}

func newSim(t testing.TB, cfg GroupConfig, st *memStore, at time.Time) *sim {
	srv := New(Options{})
	if err := srv.AddGroup(cfg, at); err != nil {
		t.Fatal(err)
	}
	var s Store
	if st != nil {
		s = st
	}
	tt, _ := t.(*testing.T)
	x := &sim{t: tt, srv: srv, d: NewDelivery(srv, s), st: st, now: at, silent: map[netip.Addr]bool{},
		pushes: map[string]*Push{}, got: map[netip.Addr][]uint32{}}
	res, err := x.d.Restore(at)
	if err != nil {
		t.Fatal(err)
	}
	x.apply(res)
	return x
}

func member(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 848)
}

// join registers members first..first+n-1 (GROUPKEY-PULL's end at the KS).
func (x *sim) join(first, n int) {
	for i := first; i < first+n; i++ {
		if _, _, err := x.srv.Keys(Peer{Addr: member(i)}, isakmp.GroupID(7), 0, x.now); err != nil {
			x.t.Fatal(err)
		}
	}
}

// apply takes a result as the node would: events noted, datagrams
// delivered to the members, which acknowledge one rtt later.
func (x *sim) apply(res Result) {
	x.events = append(x.events, res.Events...)
	for _, ev := range res.Events {
		if e, ok := ev.(RekeyStarted); ok {
			x.pushes[string(e.Push.Data)] = e.Push
			if e.Push.OldData != nil {
				x.pushes[string(e.Push.OldData)] = e.Push
			}
		}
	}
	for _, dg := range res.Send {
		p := x.pushes[string(dg.Data)]
		if p == nil {
			x.t.Fatalf("sent a datagram of no rekey started")
		}
		if x.st != nil {
			// Write before send (SPEC O4): the sequence number is reserved
			// and the keys it carries are saved.
			if x.st.reserved[dg.Group] < p.Seq || x.st.groups[dg.Group].Seq < p.Seq {
				x.t.Fatalf("seq %d sent with %d reserved, %d saved", p.Seq, x.st.reserved[dg.Group], x.st.groups[dg.Group].Seq)
			}
		}
		x.sent = append(x.sent, sentAt{x.now, dg})
		x.got[dg.To.Addr()] = append(x.got[dg.To.Addr()], p.Seq)
		if x.silent[dg.To.Addr()] || p.Policy.Multicast.IsValid() {
			continue
		}
		ack, err := gdoi.Ack(p.KEK, p.Seq, dg.To.Addr())
		if err != nil {
			x.t.Fatal(err)
		}
		x.acks = append(x.acks, pendingAck{at: x.now.Add(rtt), from: dg.To, data: ack})
	}
	if len(res.Save) > 0 {
		for _, gs := range res.Save {
			if err := x.st.SaveGroup(gs); err != nil {
				x.t.Fatal(err)
			}
		}
	}
	x.timer = x.d.Next()
}

// run steps the simulation until the time until: to the next
// acknowledgement's arrival or the delivery's next timer.
func (x *sim) run(until time.Time) {
	for {
		next := x.timer
		if len(x.acks) > 0 && (next.IsZero() || x.acks[0].at.Before(next)) {
			next = x.acks[0].at
		}
		if next.IsZero() || next.After(until) {
			x.now = until
			x.apply(x.d.Tick(until))
			return
		}
		if next.After(x.now) {
			x.now = next
		}
		for len(x.acks) > 0 && !x.acks[0].at.After(x.now) {
			a := x.acks[0]
			x.acks = x.acks[1:]
			x.apply(x.d.Ack(a.from, a.data, x.now))
		}
		x.apply(x.d.Tick(x.now))
	}
}

func (x *sim) rekey() *Push {
	x.t.Helper()
	res, err := x.d.Rekey("G", x.now)
	if err != nil {
		x.t.Fatal(err)
	}
	x.apply(res)
	for _, ev := range res.Events {
		if e, ok := ev.(RekeyStarted); ok {
			return e.Push
		}
	}
	x.t.Fatal("no rekey started")
	return nil
}

func (x *sim) member(a netip.AddrPort) Member {
	for _, m := range x.srv.Snapshot(x.now)[0].Members {
		if m.Address == a.Addr() {
			return m
		}
	}
	x.t.Fatalf("no member %s", a)
	return Member{}
}

func count[T Event](evs []Event) int {
	n := 0
	for _, ev := range evs {
		if _, ok := ev.(T); ok {
			n++
		}
	}
	return n
}

// proves: T1 (issue 15: ks.Delivery paces a rekey to 10,000 members,
// RekeyBurst per RekeyPace, each member once; their ACKs end it)
func TestDeliveryPaces10000Members(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), nil, t0)
	const members = 10000
	x.join(0, members)
	start := time.Now()
	p := x.rekey()
	x.run(t0.Add(5 * time.Second))
	if len(p.Members) != members {
		t.Fatalf("rekey to %d members", len(p.Members))
	}
	if len(x.sent) != members {
		t.Fatalf("%d datagrams for %d members (ACKs arrive after 1 ms: no retransmission is due)", len(x.sent), members)
	}
	perSlot := map[time.Duration]int{}
	for _, s := range x.sent {
		perSlot[s.at.Sub(t0)]++
	}
	for i := 0; i < members/RekeyBurst; i++ {
		if n := perSlot[time.Duration(i)*RekeyPace]; n != RekeyBurst {
			t.Fatalf("%d datagrams at +%s, want %d", n, time.Duration(i)*RekeyPace, RekeyBurst)
		}
	}
	if last := x.sent[len(x.sent)-1].at.Sub(t0); last != (members/RekeyBurst-1)*RekeyPace {
		t.Fatalf("last first transmission at +%s", last)
	}
	for i := 0; i < members; i++ {
		if got := x.got[member(i).Addr()]; len(got) != 1 || got[0] != p.Seq {
			t.Fatalf("member %d received %v", i, got)
		}
	}
	if x.d.InFlight() != 0 || x.d.Stats().OK != members {
		t.Fatalf("in flight %d, ACKs %+v", x.d.InFlight(), x.d.Stats())
	}
	lr := x.d.LastRekeys()["G"]
	if lr.Seq != p.Seq || lr.Retransmits != 0 || lr.Took != (members/RekeyBurst-1)*RekeyPace+rtt {
		t.Fatalf("last rekey %+v", lr)
	}
	if m := x.member(member(members - 1)); m.AcksReceived != 1 || m.RekeysSent != 1 || m.LastAckSeq != p.Seq {
		t.Fatalf("last member %+v", m)
	}
	t.Logf("10,000 members: a rekey's delivery stepped in %s", time.Since(start))
}

// proves: T1 (issue 15: ks.Delivery retransmits every Retransmit up
// to Retransmits times, gives up, and drops a member from the rekey list
// after MaxMissed rekeys in a row without an ACK; an ACK resets the count)
func TestDeliveryRetransmitsAndDropsAfterMisses(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), newMemStore(), t0)
	x.join(0, 3)
	quiet := member(2)
	x.silent[quiet.Addr()] = true
	for i := 1; i <= 3; i++ {
		sent := len(x.sent)
		p := x.rekey()
		if len(p.Members) != 3 {
			t.Fatalf("rekey %d to %d members", i, len(p.Members))
		}
		x.run(x.now.Add(time.Minute))
		var to []time.Duration
		for _, s := range x.sent[sent:] {
			if s.To == quiet {
				to = append(to, s.at.Sub(x.sent[sent].at))
			}
		}
		// Sent at 0, then every 10 s, twice; given up 10 s after the last.
		if fmt.Sprint(to) != "[0s 10s 20s]" {
			t.Fatalf("rekey %d: the silent member got transmissions at %v", i, to)
		}
		if len(x.sent)-sent != 5 {
			t.Fatalf("rekey %d: %d datagrams, want 2 + 3", i, len(x.sent)-sent)
		}
		m := x.member(quiet)
		if m.Missed != i || m.AcksMissed != i || m.RekeyRetries != 2*i || m.Removed != (i == 3) {
			t.Fatalf("after rekey %d: %+v", i, m)
		}
		if lr := x.d.LastRekeys()["G"]; lr.Seq != p.Seq || lr.Retransmits != 2 || lr.Took != 30*time.Second {
			t.Fatalf("last rekey %+v", lr)
		}
	}
	if p := x.rekey(); len(p.Members) != 2 {
		t.Fatalf("after three misses the rekey still goes to %v", p.Members)
	}
	x.run(x.now.Add(time.Minute))
	// It registers again: back on the list, its count of misses reset.
	x.join(2, 1)
	delete(x.silent, quiet.Addr())
	if p := x.rekey(); len(p.Members) != 3 {
		t.Fatalf("re-registered member not on the list: %v", p.Members)
	}
	x.run(x.now.Add(time.Minute))
	if m := x.member(quiet); m.Removed || m.Missed != 0 || m.AcksReceived != 1 {
		t.Fatalf("re-registered member %+v", m)
	}
	for _, a := range []netip.AddrPort{member(0), member(1)} {
		if m := x.member(a); m.Missed != 0 || m.AcksReceived != 5 || m.RekeyRetries != 0 {
			t.Fatalf("acknowledging member %+v", m)
		}
	}
}

// proves: S5 (issue 15: every acknowledgement is counted: verified,
// malformed, for no rekey in flight, or failing its check; a forged or
// misaddressed one changes nothing and is an event the node logs
// rate-limited)
func TestDeliveryAcknowledgements(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), nil, t0)
	x.join(0, 2)
	x.silent[member(0).Addr()], x.silent[member(1).Addr()] = true, true
	p := x.rekey()
	ack := func(p *Push, seq uint32, from netip.AddrPort, names netip.Addr, kek gdoi.KEK) Result {
		t.Helper()
		b, err := gdoi.Ack(kek, seq, names)
		if err != nil {
			t.Fatal(err)
		}
		return x.d.Ack(from, b, x.now)
	}
	x.d.Ack(member(0), []byte("not an ISAKMP message"), x.now)
	forged := gdoi.KEK{SPI: p.KEK.SPI, Key: make([]byte, len(p.KEK.Key))}
	if res := ack(p, p.Seq, member(0), member(0).Addr(), forged); count[BadAck](res.Events) != 1 {
		t.Fatalf("forged ACK: events %v", res.Events)
	}
	if res := ack(p, p.Seq, member(1), member(0).Addr(), p.KEK); count[BadAck](res.Events) != 1 {
		t.Fatalf("ACK naming another member: events %v", res.Events)
	}
	other := gdoi.KEK{SPI: [16]byte{1}, Key: p.KEK.Key}
	ack(p, p.Seq, member(0), member(0).Addr(), other)
	ack(p, p.Seq-1, member(0), member(0).Addr(), p.KEK) // an older rekey's
	if got := x.d.Flights()[0].Pending; got != 2 {
		t.Fatalf("%d pending after bad ACKs, want 2", got)
	}
	ack(p, p.Seq, member(0), member(0).Addr(), p.KEK)
	ack(p, p.Seq, member(0), member(0).Addr(), p.KEK) // a duplicate: counted once at the member
	if got := x.d.Flights()[0].Pending; got != 1 {
		t.Fatalf("%d pending, want 1", got)
	}
	ack(p, p.Seq, member(1), member(1).Addr(), p.KEK)
	x.apply(x.d.Tick(x.now))
	want := AckStats{OK: 3, Malformed: 1, Unknown: 2, Bad: 2}
	if got := x.d.Stats(); got != want || x.d.InFlight() != 0 {
		t.Fatalf("stats %+v (want %+v), %d in flight", got, want, x.d.InFlight())
	}
	if m := x.member(member(0)); m.AcksReceived != 1 || m.LastAckSeq != p.Seq {
		t.Fatalf("member %+v", m)
	}
	if count[RekeyCompleted](x.events) != 1 {
		t.Fatalf("events %v", x.events)
	}
}

// proves: T1 (issue 15: a newer rekey supersedes the one in flight, so
// only the newest is retransmitted and members see sequence numbers
// rise; one that brought a new KEK goes on to whoever lacks that KEK)
func TestDeliverySupersede(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), nil, t0)
	x.join(0, 2)
	x.silent[member(1).Addr()] = true
	first := x.rekey()
	if first.NewKEK {
		t.Fatal("a new KEK an hour into a day's KEK")
	}
	x.run(x.now.Add(5 * time.Second))
	second := x.rekey()
	if n := count[RekeySuperseded](x.events); n != 1 || x.d.InFlight() != 1 || x.d.Flights()[0].Push.Seq != second.Seq {
		t.Fatalf("superseded %d, flights %+v", n, x.d.Flights())
	}
	x.run(x.now.Add(time.Minute))
	if got := fmt.Sprint(x.got[member(1).Addr()]); got != fmt.Sprint([]uint32{first.Seq, second.Seq, second.Seq, second.Seq}) {
		t.Fatalf("the silent member received %s", got)
	}
	if _, ok := x.d.LastRekeys()["G"]; !ok || x.d.LastRekeys()["G"].Seq != second.Seq {
		t.Fatalf("last rekey %+v", x.d.LastRekeys())
	}

	// A policy-replace rekey now brings a new KEK; the rekey after it is
	// encrypted under that KEK, so the first goes on to the members that
	// have not acknowledged it.
	x.join(1, 1) // back on the list
	_, res, err := x.d.ReplaceRekey("G", true, x.now)
	if err != nil {
		t.Fatal(err)
	}
	x.apply(res)
	kekRekey := x.d.Flights()[0].Push
	if !kekRekey.NewKEK {
		t.Fatal("replace-now without a new KEK")
	}
	third := x.rekey()
	if x.d.InFlight() != 2 || third.KEK.SPI == second.KEK.SPI {
		t.Fatalf("a new-KEK rekey was superseded: %+v", x.d.Flights())
	}
	x.run(x.now.Add(time.Minute))
	got := x.got[member(1).Addr()][4:]
	if len(got) != 6 {
		t.Fatalf("the silent member received %v after the KEK change", got)
	}
}

// proves: O4, T1 (issue 15: a KS restarted from its store resumes the
// rekey in flight to the members that had not acknowledged it, holding it
// until its address is served, and never reuses a sequence number)
func TestDeliveryResumesAfterRestart(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	st := newMemStore()
	cfg := groupConfig(t, RekeyPolicy{Unicast: true})
	x := newSim(t, cfg, st, t0)
	x.join(0, 4)
	x.silent[member(3).Addr()] = true
	p := x.rekey()
	x.run(x.now.Add(2 * time.Second))
	x.apply(x.d.Tick(x.now.Add(SaveInterval))) // the periodic save records the ACKs

	// The KS stops and starts again: the same configuration, the store.
	y := newSim(t, cfg, st, x.now.Add(time.Minute))
	if n := count[RekeyResumed](y.events); n != 1 || y.d.InFlight() != 1 || len(y.sent) != 0 {
		t.Fatalf("resumed %d, in flight %d, sent %d before the address is served", n, y.d.InFlight(), len(y.sent))
	}
	y.pushes[string(p.Data)] = p
	y.apply(y.d.Serve("G", y.now))
	y.apply(y.d.Tick(y.now))
	if len(y.sent) != 1 || y.sent[0].To != member(3) || string(y.sent[0].Data) != string(p.Data) {
		t.Fatalf("resumed delivery sent %d datagrams: %+v", len(y.sent), y.sent)
	}
	next := y.rekey()
	if next.Seq <= p.Seq {
		t.Fatalf("seq %d after %d", next.Seq, p.Seq)
	}
}

// proves: T1, T4, O4 (issue 15: 72 hours of a group's life stepped in
// memory: TEK rekeys before every expiry, KEK rollovers, members joining,
// members going silent and dropped after three misses; every member that
// acknowledges receives every rekey, sequence numbers only rise, and each
// was reserved and its keys saved before it was sent)
func TestDelivery72Hours(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	st := newMemStore()
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), st, t0)
	start := time.Now()
	next := 0
	x.join(next, 50)
	next += 50
	joined := map[netip.Addr]time.Time{}
	for i := 0; i < next; i++ {
		joined[member(i).Addr()] = t0
	}
	silentSince := map[netip.Addr]time.Time{}
	var seqs []uint32
	kekRollovers := 0
	seen := 0
	for h := 1; h <= 72; h++ {
		x.run(t0.Add(time.Duration(h) * time.Hour))
		for _, ev := range x.events[seen:] {
			if e, ok := ev.(RekeyStarted); ok {
				seqs = append(seqs, e.Push.Seq)
				if e.Push.NewKEK {
					kekRollovers++
				}
			}
		}
		seen = len(x.events)
		// The KS's keys never run out between rekeys.
		for _, tk := range x.srv.Snapshot(x.now)[0].TEKs {
			if !tk.Expires.After(x.now) {
				t.Fatalf("at +%dh a TEK expired at %s", h, tk.Expires)
			}
		}
		// Churn: five members join, two go silent.
		x.join(next, 5)
		for i := next; i < next+5; i++ {
			joined[member(i).Addr()] = x.now
		}
		next += 5
		for _, i := range []int{(h * 7) % next, (h * 13) % next} {
			a := member(i).Addr()
			if !x.silent[a] {
				x.silent[a] = true
				silentSince[a] = x.now
			}
		}
	}
	if x.d.Stats().Bad != 0 || x.d.Stats().Unknown != 0 {
		t.Fatalf("ACK stats %+v", x.d.Stats())
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence numbers %v", seqs)
		}
	}
	// A 1-hour TEK is rekeyed about every 54 minutes: 80 in 72 hours.
	if len(seqs) < 72 || kekRollovers < 2 || count[RekeyCompleted](x.events) != len(seqs) {
		t.Fatalf("%d rekeys, %d KEK rollovers, %d completed", len(seqs), kekRollovers, count[RekeyCompleted](x.events))
	}
	for _, m := range x.srv.Snapshot(x.now)[0].Members {
		since, silent := silentSince[m.Address]
		switch {
		case !silent && (m.Removed || m.Missed != 0):
			t.Fatalf("acknowledging member dropped: %+v", m)
		case !silent:
			// Every rekey since it joined reached it, once.
			want := 0
			for _, s := range x.sent {
				if s.To.Addr() == m.Address {
					want++
				}
			}
			if m.AcksReceived != want || m.RekeyRetries != 0 {
				t.Fatalf("member %s (joined %s): %d ACKs of %d rekeys", m.Address, joined[m.Address].Sub(t0), m.AcksReceived, want)
			}
		case x.now.Sub(since) > 4*time.Hour && !m.Removed:
			t.Fatalf("member silent since +%s still on the list: %+v", since.Sub(t0), m)
		}
	}
	if st.reserved["G"] < seqs[len(seqs)-1] || st.saves < len(seqs) {
		t.Fatalf("store: reserved %d, %d saves", st.reserved["G"], st.saves)
	}
	t.Logf("72 h: %d rekeys (%d new KEKs) to up to %d members, %d datagrams, stepped in %s",
		len(seqs), kekRollovers, next, len(x.sent), time.Since(start))
}

// proves: T1 (issue 15: a multicast rekey is one datagram to the group,
// sent again every Retransmit, Retransmits times, without ACKs; the
// members' bookkeeping is left alone)
func TestDeliveryMulticast(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	group := netip.MustParseAddrPort("239.192.7.7:848")
	x := newSim(t, groupConfig(t, RekeyPolicy{Multicast: group}), nil, t0)
	x.join(0, 3)
	p := x.rekey()
	if len(p.Members) != 0 {
		t.Fatalf("a multicast rekey lists members %v", p.Members)
	}
	x.run(t0.Add(time.Minute))
	var at []time.Duration
	for _, s := range x.sent {
		if s.To != group {
			t.Fatalf("multicast rekey sent to %s", s.To)
		}
		at = append(at, s.at.Sub(t0))
	}
	if fmt.Sprint(at) != "[0s 10s 20s]" || x.d.InFlight() != 0 {
		t.Fatalf("sent at %v, %d in flight", at, x.d.InFlight())
	}
	if lr := x.d.LastRekeys()["G"]; lr.Seq != p.Seq || lr.Retransmits != 2 || lr.Took != 30*time.Second {
		t.Fatalf("last rekey %+v", lr)
	}
	if m := x.member(member(0)); m.RekeysSent != 0 || m.Missed != 0 || m.Removed {
		t.Fatalf("member bookkeeping changed by a multicast rekey: %+v", m)
	}
}

// proves: R1, R3 (issue 15: a GM removal goes to every member on the
// rekey list, the members are saved off the list before it leaves, and
// the owner is told to make every member authenticate again)
func TestDeliveryRemoval(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	st := newMemStore()
	x := newSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), st, t0)
	x.join(0, 3)
	p, res, err := x.d.Remove("G", false, x.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.groups["G"].Members {
		if !m.Removed {
			t.Fatalf("member %s saved on the rekey list before the removal left", m.Address)
		}
	}
	x.apply(res)
	var peers []netip.Addr
	for _, ev := range res.Events {
		if e, ok := ev.(Reauthenticate); ok {
			peers = e.Peers
		}
	}
	if !p.Removal || len(p.Members) != 3 || len(peers) != 3 || len(x.sent) != 3 {
		t.Fatalf("removal to %v, reauthenticate %v, %d sent", p.Members, peers, len(x.sent))
	}
	x.run(x.now.Add(time.Minute))
	if x.d.InFlight() != 0 || x.d.Stats().OK != 3 {
		t.Fatalf("%d in flight, ACKs %+v", x.d.InFlight(), x.d.Stats())
	}
}
