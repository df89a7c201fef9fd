package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// BenchmarkScenarios runs every `groupvpn bench` case under go test -bench,
// ceiling first, so both report the same figures.
func BenchmarkScenarios(b *testing.B) {
	for _, s := range Scenarios() {
		for _, c := range append([]Case{s.Ceiling}, s.Cases...) {
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
