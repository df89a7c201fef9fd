package dataplane

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// tbarTEK is the tests' GCM TEK with time-based anti-replay (window w
// seconds), synchronised at `at` to the KS pseudotime pt.
func tbarTEK(spi, sid uint32, w int, pt time.Duration, at time.Time) sadb.TEK {
	t := tek(spi, sid, t0)
	t.ReplayMethod, t.ReplayWindow = isakmp.ReplayTime, w
	t.Pseudotime, t.PseudotimeAt = pt, at
	return t
}

// tbarEngine is an engine without sockets holding teks, with its own clock.
func tbarEngine(t testing.TB, now *time.Time, teks ...sadb.TEK) (*Engine, *sadb.Memory) {
	t.Helper()
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	for _, k := range teks {
		mem.InstallTEK(k)
	}
	e := &Engine{cfg: Config{Keys: mem}, now: func() time.Time { return *now }, sas: map[saKey]*sa{}}
	if err := e.Refresh(); err != nil {
		t.Fatal(err)
	}
	return e, mem
}

// sealedAt is the ESP packet e sends for a covered packet now.
func sealedAt(t *testing.T, e *Engine, payload string) []byte {
	t.Helper()
	got, o := out(e, udp(h1, h2, 5000, payload))
	if got != "esp" {
		t.Fatalf("covered packet: %s, want esp", got)
	}
	return append([]byte(nil), o...)
}

// proves: T2 (issue 12: TBAR drops packets outside the window) — two GMs
// synchronised to the same KS pseudotime: a packet stamped by the sender
// is accepted while the receiver's pseudotime is within the window
// (5 s) of the stamp, and a packet captured and replayed 6 s later is
// dropped and counted as tbar (engine and SA), not as replay or auth,
// even one the receiver already delivered; an exact replay inside the
// window is a replay (GCM sender IDs keep their counter windows); a GM
// whose clock runs 3 s ahead still talks.
func TestEngineTBARWindow(t *testing.T) {
	nowA, nowB := t0.Add(10*time.Second), t0.Add(10*time.Second)
	// Both learnt at t0 that the KS pseudotime was 1000 s.
	a, _ := tbarEngine(t, &nowA, tbarTEK(0x300, 1, 5, 1000*time.Second, t0))
	b, _ := tbarEngine(t, &nowB, tbarTEK(0x300, 2, 5, 1000*time.Second, t0))
	in := func(p []byte) bool {
		_, _, ok := b.decap(append([]byte(nil), p...))
		return ok
	}
	p := sealedAt(t, a, "fresh")
	if !in(p) {
		t.Fatalf("a packet stamped now was refused: %+v", b.Stats())
	}
	// With RFC 6054 sender IDs the sender's counter window is kept too:
	// an exact replay inside the time window is a replay.
	if in(p) {
		t.Error("an exact replay inside the time window was accepted (GCM with sender IDs)")
	}
	captured := sealedAt(t, a, "captured")
	nowB = nowB.Add(6 * time.Second) // the attacker replays it 6 s later
	if in(captured) {
		t.Fatal("a packet 6 s old was accepted with a 5 s window")
	}
	nowA = nowA.Add(9 * time.Second) // A's clock: 3 s ahead of B's now
	if !in(sealedAt(t, a, "skewed")) {
		t.Fatalf("a packet from a GM 3 s ahead was refused: %+v", b.Stats())
	}
	st := b.Stats()
	if st.TBAR != 1 || st.Replay != 1 || st.AuthFailures != 0 || st.Decaps != 2 {
		t.Errorf("receiver counters %+v, want tbar 1, replay 1, decaps 2", st)
	}
	c, ok := b.SACounters("g", 0x300)
	if !ok || c.TBARDrops != 1 || c.ReplayDrops != 1 || c.DecapsPackets != 2 {
		t.Errorf("SA counters %+v", c)
	}
	found := false
	for _, k := range st.Counters() {
		if k.Name == "tbar" {
			found = k.Value == 1
		}
	}
	if !found {
		t.Errorf("Counters() has no tbar = 1: %+v", st.Counters())
	}
	// The first packet, already delivered, replayed now (6 s later):
	// outside the window, so a TBAR drop rather than a replay.
	if in(p) {
		t.Error("a delivered packet replayed 6 s later was accepted")
	}
	if st := b.Stats(); st.Replay != 1 || st.TBAR != 2 {
		t.Errorf("after the late replay: %+v, want replay 1, tbar 2", st)
	}
}

// proves: T2 (issue 12: the GM's pseudotime is the KS's latest) — the
// sender stamps, and the receiver checks against, the group's freshest
// pseudotime from the KS (a rekey's resynchronisation), whichever TEK of
// the group carries the packet: an old TEK whose own copy of the
// pseudotime is stale still accepts a packet stamped with the fresh one,
// and the stamp is PseudotimeNow of the freshest TEK in milliseconds.
func TestEngineTBARUsesLatestSync(t *testing.T) {
	now := t0.Add(100 * time.Second)
	// The old TEK arrived at t0 with a pseudotime that drifted: 900 s
	// (what it says now: 1000 s); the rekey at t0+100s resynchronised the
	// group to 1200 s.
	old := tbarTEK(0x300, 2, 5, 900*time.Second, t0)
	b, _ := tbarEngine(t, &now, old, tbarTEK(0x301, 2, 5, 1200*time.Second, t0.Add(100*time.Second)))
	a, _ := tbarEngine(t, &now, tbarTEK(0x300, 1, 5, 1200*time.Second, t0.Add(100*time.Second)))
	now = now.Add(2500 * time.Millisecond)
	p := sealedAt(t, a, "on the old SPI")
	if spi := binary.BigEndian.Uint32(p[20:]); spi != 0x300 {
		t.Fatalf("sealed with %#x", spi)
	}
	// The stamp is 1202.5 s: a bare SA of the TEK accepts it from a
	// receiver at 1202.5 s +- 5 s and not a millisecond beyond.
	const stamp = 1202500 * time.Millisecond
	for _, c := range []struct {
		at   time.Duration
		want error
	}{{stamp + 5*time.Second, nil}, {stamp - 5*time.Second, nil}, {stamp + 5001*time.Millisecond, esp.ErrTBAR}, {stamp - 5001*time.Millisecond, esp.ErrTBAR}} {
		probe, err := esp.New(old, esp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := probe.OpenAt(append([]byte(nil), p...), c.at); err != c.want {
			t.Fatalf("receiver at %v: %v, want %v (the stamp is not 1202.5 s)", c.at, err, c.want)
		}
	}
	if _, _, ok := b.decap(append([]byte(nil), p...)); !ok {
		t.Fatalf("packet on the old TEK refused: %+v (checked against its stale copy?)", b.Stats())
	}
}

// The TBAR hot path allocates nothing per packet either.
func TestEngineTBARNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	now := t0.Add(time.Minute)
	a, _ := tbarEngine(t, &now, tbarTEK(0x300, 1, 5, time.Hour, t0))
	b, _ := tbarEngine(t, &now, tbarTEK(0x300, 2, 5, time.Hour, t0))
	inner := udp(h1, h2, 5000, string(make([]byte, 1000)))
	buf := make([]byte, headroom+len(inner)+tailroom)
	work := make([]byte, 2048)
	snap := a.snap.Load()
	if n := testing.AllocsPerRun(200, func() {
		copy(buf[headroom:], inner)
		p, _ := a.encap(snap, now, buf[:headroom], buf[headroom:headroom+len(inner)])
		copy(work, p)
		if _, _, ok := b.decap(work[:len(p)]); !ok {
			t.Fatal("decap refused")
		}
	}); n != 0 {
		t.Errorf("TBAR encap+decap: %v allocations per packet", n)
	}
}

// FuzzEngineTBAR is FuzzEngine for a group with time-based anti-replay:
// any bytes from the TUN device or the network, no panic; what the engine
// seals opens at the receiver (same pseudotime) to the very packet, and a
// receiver whose pseudotime is 6 s later (window 5 s) drops it as tbar.
//
// proves: T2 (issue 12: no input panics; TBAR packets round-trip)
func FuzzEngineTBAR(f *testing.F) {
	f.Add(udp(h1, h2, 5000, "covered"), false)
	f.Add([]byte{0x45, 0, 0, 20}, true)
	now := t0.Add(time.Minute)
	a, _ := tbarEngine(f, &now, tbarTEK(0x300, 1, 5, time.Hour, t0))
	_, seed := out(a, udp(h1, h2, 5000, "sealed"))
	f.Add(append([]byte(nil), seed...), true)
	f.Fuzz(func(t *testing.T, pkt []byte, inbound bool) {
		nowA, nowB := t0.Add(time.Minute), t0.Add(time.Minute)
		a, _ := tbarEngine(t, &nowA, tbarTEK(0x300, 1, 5, time.Hour, t0))
		b, _ := tbarEngine(t, &nowB, tbarTEK(0x300, 2, 5, time.Hour, t0))
		if inbound {
			b.decap(append([]byte(nil), pkt...))
			return
		}
		got, o := out(a, pkt)
		if got != "esp" {
			return
		}
		o = append([]byte(nil), o...)
		late, _ := tbarEngine(t, &nowB, tbarTEK(0x300, 3, 5, time.Hour, t0))
		nowB = nowB.Add(6 * time.Second)
		if _, _, ok := late.decap(append([]byte(nil), o...)); ok || late.Stats().TBAR != 1 {
			t.Fatalf("a packet 6 s old was not a TBAR drop: %+v", late.Stats())
		}
		nowB = nowA
		inner, _, ok := b.decap(o)
		if !ok || string(inner) != string(pkt[:len(inner)]) {
			t.Fatalf("sealed packet does not open to the original: %+v", b.Stats())
		}
	})
}
