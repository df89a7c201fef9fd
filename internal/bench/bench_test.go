package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

// BenchmarkScenarios runs every `groupvpn bench` case under go test -bench,
// each ceiling before what is compared with it, so both report the same figures.
func BenchmarkScenarios(b *testing.B) {
	for _, s := range Scenarios() {
		var cases []Case
		if s.Ceiling.Run != nil {
			cases = append(cases, s.Ceiling)
		}
		for _, c := range s.Cases {
			if c.Ceiling != nil {
				cases = append(cases, *c.Ceiling)
			}
			cases = append(cases, c)
		}
		for _, c := range cases {
			b.Run(s.Name+"/"+c.Name, func(b *testing.B) {
				b.ReportAllocs()
				if c.Octets > 0 {
					b.SetBytes(c.Octets)
				}
				c.Run(b)
			})
		}
	}
}

func TestRekeyMessageRoundTrips(t *testing.T) {
	wire, err := RekeyMessage().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := isakmp.ParseMessage(wire)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Marshal()
	if err != nil || !bytes.Equal(again, wire) {
		t.Fatalf("rekey message does not round-trip: %v", err)
	}
}

func TestPrintShowsRatioToCeiling(t *testing.T) {
	s := Codec()
	ceiling := Result{Case: s.Ceiling, BenchmarkResult: testing.BenchmarkResult{N: 1000, T: 100 * time.Microsecond}}
	parse := Result{Case: s.Cases[0], BenchmarkResult: testing.BenchmarkResult{N: 1000, T: 450 * time.Microsecond}}
	var sb strings.Builder
	Print(&sb, s, ceiling, []Result{parse})
	out := sb.String()
	for _, w := range []string{"copy datagram", "ceiling", "parse", "4.5"} {
		if !strings.Contains(out, w) {
			t.Fatalf("table lacks %q:\n%s", w, out)
		}
	}
}

// The ESP scenario's ceiling works on the octets ESP does: for every
// transform and size, the layout it assumes (header, encrypted octets,
// ICV) adds up to the packet esp.SA.Seal produces, and the sealed packet
// opens.
// proves: issue 12 (Benchmarks: seal/open beside raw AES on the same buffers)
func TestESPCeilingLayoutMatchesSeal(t *testing.T) {
	for _, tr := range ESPTransforms() {
		sa, err := esp.New(tr.TEK, esp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ESPSizes {
			p, err := sa.Seal(nil, innerPacket(n))
			if err != nil {
				t.Fatalf("%s %d: %v", tr.Name, n, err)
			}
			hdr, pt, icv := espLayout(sa, tr.TEK, n)
			if len(p) != hdr+pt+icv || pt%4 != 0 || pt < n+2 {
				t.Errorf("%s %d: sealed %d octets, layout %d+%d+%d", tr.Name, n, len(p), hdr, pt, icv)
			}
			rx, _ := esp.New(tr.TEK, esp.Config{})
			if in, err := rx.Open(p); err != nil || len(in) != n {
				t.Errorf("%s %d: open: %v (%d octets)", tr.Name, n, err, len(in))
			}
		}
	}
}

// The data-plane scenario runs end to end in a few seconds: the topology,
// plain routing and the engine each carry iperf3 traffic (wireguard-go is
// left to `make bench`, which builds it).
// proves: issue 12 (Benchmarks: groupvpn bench dataplane beside plain routing)
func TestDataplaneScenarioRuns(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTools(t, "ip", "iperf3")
	testnet.RequireNft(t)
	r, skipped, err := Dataplane(DataplaneOptions{Seconds: 1, Rounds: 1})
	if err != nil || skipped != "" {
		t.Fatalf("dataplane: %v (skipped: %s)", err, skipped)
	}
	if len(r.Plain) != 1 || len(r.Engine) != 1 || r.Plain[0] <= 0 || r.Engine[0] <= 0 {
		t.Fatalf("dataplane figures: %+v", r)
	}
	var sb strings.Builder
	r.Print(&sb)
	for _, w := range []string{"plain routing", "groupvpn engine (AES-GCM-128, tmd's clear-packet table)", "not measured"} {
		if !strings.Contains(sb.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, sb.String())
		}
	}
}

// proves: N1 (issue 18: KS memory per member at every size, not only the
// last) — the scale report prints the settled live heap and RSS per
// member of each stage that measured them, and nothing for a stage
// whose settle saw no collection.
func TestScalePrintSettledPerStage(t *testing.T) {
	r := &ScaleReport{CryptoOp: 100 * time.Microsecond, BaseRSS: 10 << 20, Stages: []ScaleStage{
		{Members: 10000, KSCPUPerReg: time.Millisecond, SettledHeap: 10000 * 1100, SettledRSS: 10<<20 + 10000*1500, Trims: 1},
		{Members: 50000, KSCPUPerReg: time.Millisecond, SettledHeap: -1, SettledRSS: -1},
		{Members: 100000, KSCPUPerReg: time.Millisecond, SettledHeap: 100000 * 975, SettledRSS: 10<<20 + 100000*1478, Trims: 3},
	}}
	var b bytes.Buffer
	r.Print(&b)
	out := b.String()
	for _, want := range []string{
		"settled at 10000 members (50 s on, the served pulls and phase 1's last messages gone): KS live heap 1100 B per member, RSS 1500 B per member (the KS had returned its free heap to the system 1 times",
		"settled at 100000 members (50 s on, the served pulls and phase 1's last messages gone): KS live heap 975 B per member, RSS 1478 B per member (the KS had returned its free heap to the system 3 times",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "settled at 50000") {
		t.Fatalf("a stage without a settled collection printed one:\n%s", out)
	}
}

// proves: N1 (issue 18: the stage's own ceiling) — the ceiling timed
// during a stage is the median (and spread) of the samples taken between
// the stage's first and last first registration, not of those before or
// after it, and of all of those from the generator's start on when none
// fell inside; the samples before the generator's start give the quiet
// machine's median; the report prints both beside the stage's rate and
// the KS's CPU.
func TestStageCeilingMedianInsideTheStage(t *testing.T) {
	done := func(samples ...ceilingAt) *stageCeiling {
		c := &stageCeiling{stopc: make(chan struct{}), done: make(chan struct{}), samples: samples}
		close(c.done)
		return c
	}
	us := time.Microsecond
	c := done(ceilingAt{op: 80 * us, at: 1}, ceilingAt{op: 84 * us, at: 2}, ceilingAt{op: 99 * us, at: 3},
		ceilingAt{op: 90 * us, at: 5}, ceilingAt{op: 130 * us, at: 10}, ceilingAt{op: 110 * us, at: 20}, ceilingAt{op: 120 * us, at: 30}, ceilingAt{op: 95 * us, at: 45})
	during, quiet := c.stop(4, 10, 30)
	if want := (ceilingStats{Median: 120 * us, Fastest: 110 * us, Slowest: 130 * us, N: 3}); during != want {
		t.Fatalf("inside [10, 30]: %+v, want %+v", during, want)
	}
	if want := (ceilingStats{Median: 84 * us, Fastest: 80 * us, Slowest: 99 * us, N: 3}); quiet != want {
		t.Fatalf("before 4: %+v, want %+v", quiet, want)
	}
	c = done(ceilingAt{op: 70 * us, at: 1}, ceilingAt{op: 90 * us, at: 5}, ceilingAt{op: 100 * us, at: 50})
	during, quiet = c.stop(4, 10, 30)
	if want := (ceilingStats{Median: 95 * us, Fastest: 90 * us, Slowest: 100 * us, N: 2, FromStart: true}); during != want || quiet.N != 1 || quiet.Median != 70*us {
		t.Fatalf("none inside: %+v (want %+v: all from the start); before: %+v", during, want, quiet)
	}
	if during, quiet := done().stop(4, 10, 30); during != (ceilingStats{}) || quiet != (ceilingStats{}) {
		t.Fatalf("no samples: %+v, %+v", during, quiet)
	}
	r := &ScaleReport{CryptoOp: 100 * us, BaseRSS: 10 << 20, Stages: []ScaleStage{
		{Members: 10000, RegPerSec: 5000, KSCPUPerReg: 200 * us, StageCeil: ceilingStats{Median: 120 * us, Fastest: 95 * us, Slowest: 150 * us, N: 4},
			QuietCeil: ceilingStats{Median: 104 * us, N: 5}, SettledHeap: -1},
		{Members: 50000, RegPerSec: 5000, KSCPUPerReg: 250 * us, StageCeil: ceilingStats{Median: 100 * us, Fastest: 100 * us, Slowest: 100 * us, N: 9, FromStart: true}, SettledHeap: -1},
	}}
	var b bytes.Buffer
	r.Print(&b)
	for _, want := range []string{
		"      10000       120µs        4        95µs-150µs         0.60              0.60        104µs\n",
		"      50000       100µs       9*       100µs-100µs         0.50              0.40            -\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("missing %q in:\n%s", want, b.String())
		}
	}
}
