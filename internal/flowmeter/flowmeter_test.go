package flowmeter

import (
	"bytes"
	"context"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// send sends n packets of f, one every 10 ms from ms, and returns them.
func send(m *Meter, f Flow, ms, n int) [][]byte {
	var ps [][]byte
	for i := 0; i < n; i++ {
		ps = append(ps, m.Send(nil, f, at(ms+10*i)))
	}
	return ps
}

func TestPayloadRoundTrip(t *testing.T) {
	p := Packet{Flow: Flow{3, 49}, Seq: 1<<40 + 7, Sent: at(1234)}
	b := Append([]byte("x"), p)
	if len(b) != 1+Size || !bytes.HasPrefix(b[1:], []byte(Magic)) {
		t.Fatalf("payload %x", b)
	}
	q, err := Parse(b[1:])
	if err != nil || q.Flow != p.Flow || q.Seq != p.Seq || !q.Sent.Equal(p.Sent) {
		t.Fatalf("Parse: %+v %v, want %+v", q, err, p)
	}
	for _, bad := range [][]byte{nil, b[1:Size], append([]byte("GVPNFLOx"), b[9:]...)} {
		if _, err := Parse(bad); err != ErrNotMetered {
			t.Errorf("Parse(%x): %v", bad, err)
		}
	}
}

// Every packet delivered once, in order: nothing lost, duplicated or
// reordered, and the longest gap is the sending interval.
func TestWindowNoLoss(t *testing.T) {
	m := New()
	f := Flow{0, 1}
	for _, p := range send(m, f, 0, 100) {
		if !m.Received(p, at(2000)) {
			t.Fatal("a sent packet is not recognised")
		}
	}
	ss := m.Window(at(0), at(1000))
	if len(ss) != 1 {
		t.Fatalf("%d flows", len(ss))
	}
	s := ss[0]
	if s.Flow != f || s.Sent != 100 || s.Received != 100 || s.Lost != 0 || s.Duplicated != 0 || s.Reordered != 0 ||
		s.LongestGap != 10*time.Millisecond || !s.FirstLost.IsZero() {
		t.Fatalf("%+v", s)
	}
}

// An outage of 20 packets in the middle: 20 lost, the gap spans from the
// last packet delivered before to the first after (21 intervals); the
// window before the outage sees none of it.
// proves: E2 (issue 13: the meter counts lost packets and the outage)
func TestWindowLossAndGap(t *testing.T) {
	m := New()
	f := Flow{1, 0}
	ps := send(m, f, 0, 100) // sent at 0..990 ms
	for i, p := range ps {
		if i < 40 || i >= 60 {
			m.Received(p, at(2000))
		}
	}
	s := m.Window(at(0), at(1000))[0]
	if s.Sent != 100 || s.Lost != 20 || s.Received != 80 || s.LongestGap != 210*time.Millisecond ||
		!s.FirstLost.Equal(at(400)) || !s.LastLost.Equal(at(590)) {
		t.Fatalf("%+v", s)
	}
	before := m.Window(at(0), at(400))[0]
	if before.Sent != 40 || before.Lost != 0 || before.LongestGap != 10*time.Millisecond {
		t.Fatalf("window before the outage: %+v", before)
	}
	// A window starting inside the outage still sees its whole length.
	inside := m.Window(at(500), at(1000))[0]
	if inside.Sent != 50 || inside.Lost != 10 || inside.LongestGap != 210*time.Millisecond {
		t.Fatalf("window inside the outage: %+v", inside)
	}
	// Losses at the end of the run, nothing delivered after: the gap
	// runs to the last packet sent.
	m2 := New()
	for i, p := range send(m2, f, 0, 10) {
		if i < 5 {
			m2.Received(p, at(0))
		}
	}
	if s := m2.Window(at(0), at(100))[0]; s.Lost != 5 || s.LongestGap != 50*time.Millisecond {
		t.Fatalf("trailing loss: %+v", s)
	}
}

// Duplicates and reordering are counted in the window of the packet's
// send time, and a duplicate is not a loss.
// proves: E2 (issue 13: the meter counts duplicated and reordered packets)
func TestWindowDuplicatesAndReordering(t *testing.T) {
	m := New()
	f := Flow{2, 5}
	ps := send(m, f, 0, 10)
	order := []int{0, 1, 3, 2, 4, 4, 5, 6, 6, 6, 9, 7, 8}
	for _, i := range order {
		m.Received(ps[i], at(500))
	}
	s := m.Window(at(0), at(100))[0]
	// 2 arrived after 3; 7 and 8 after 9: 3 reordered. 4 once and 6
	// twice again: 3 duplicates.
	if s.Sent != 10 || s.Received != 10 || s.Lost != 0 || s.Duplicated != 3 || s.Reordered != 3 || s.LongestGap != 10*time.Millisecond {
		t.Fatalf("%+v", s)
	}
	if s := m.Window(at(0), at(50))[0]; s.Duplicated != 1 || s.Reordered != 1 {
		t.Fatalf("first half: %+v", s)
	}
	if s := m.Window(at(50), at(100))[0]; s.Duplicated != 2 || s.Reordered != 2 {
		t.Fatalf("second half: %+v", s)
	}
}

// A payload that is not ours, or names a packet never sent (a forged
// sequence number or send time), is counted apart and changes no flow.
func TestReceivedRejectsForgeries(t *testing.T) {
	m := New()
	f := Flow{0, 1}
	ps := send(m, f, 0, 3)
	forged := Append(nil, Packet{Flow: f, Seq: 1, Sent: at(999)})
	beyond := Append(nil, Packet{Flow: f, Seq: 3, Sent: at(30)})
	stranger := Append(nil, Packet{Flow: Flow{7, 8}, Seq: 0, Sent: at(0)})
	for _, b := range [][]byte{forged, beyond, stranger, []byte("hello")} {
		if m.Received(b, at(0)) {
			t.Errorf("accepted %x", b)
		}
	}
	if m.Unknown() != 4 {
		t.Fatalf("unknown %d", m.Unknown())
	}
	if s := m.Window(at(0), at(100)); len(s) != 1 || s[0].Lost != 3 || s[0].Duplicated != 0 {
		t.Fatalf("%+v", s)
	}
	_ = ps
}

func TestTotalAndWorst(t *testing.T) {
	ss := []Stats{{Flow: Flow{0, 1}, Sent: 10, Received: 10, LongestGap: time.Second},
		{Flow: Flow{1, 0}, Sent: 10, Received: 7, Lost: 3, Duplicated: 1, LongestGap: 2 * time.Second, FirstLost: at(5), LastLost: at(9)},
		{Flow: Flow{1, 2}, Sent: 10, Received: 9, Lost: 1, Reordered: 2, LongestGap: 3 * time.Second, FirstLost: at(1), LastLost: at(1)}}
	tot := Total(ss)
	if tot.Sent != 30 || tot.Lost != 4 || tot.Duplicated != 1 || tot.Reordered != 2 || tot.LongestGap != 3*time.Second ||
		!tot.FirstLost.Equal(at(1)) || !tot.LastLost.Equal(at(9)) {
		t.Fatalf("total %+v", tot)
	}
	if w, _ := Worst(ss); w.Flow != (Flow{1, 0}) {
		t.Fatalf("worst %+v", w)
	}
}

// The generator sends every flow each round and the meter sees them all.
func TestGenerator(t *testing.T) {
	m := New()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n := 0
	g := &Generator{Meter: m, Flows: Pairs(3), Interval: 5 * time.Millisecond,
		Send: func(f Flow, b []byte) { n++; m.Received(b, time.Now()) }}
	rounds := g.Run(ctx)
	if len(g.Flows) != 6 || rounds < 2 || n != 6*rounds {
		t.Fatalf("%d flows, %d rounds, %d sent", len(g.Flows), rounds, n)
	}
	if tot := Total(m.Window(time.Time{}, time.Now().Add(time.Hour))); tot.Sent != n || tot.Lost != 0 {
		t.Fatalf("%+v", tot)
	}
}
