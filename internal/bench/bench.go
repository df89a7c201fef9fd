// Package bench holds the scenarios behind `groupvpn bench` and the Go
// benchmarks, so that both measure the same code. Each scenario is reported
// beside a ceiling measured in the same run on the same machine.
package bench

import (
	"fmt"
	"io"
	"testing"
	"text/tabwriter"
)

// Case is one measured function.
type Case struct {
	Name   string
	Octets int64 // octets processed per op, for MB/s; 0 if not meaningful
	Run    func(b *testing.B)
	// Ceiling, when set, is what this case is compared with instead of
	// the scenario's.
	Ceiling *Case
}

// Scenario is a set of cases and the ceiling they are compared with.
type Scenario struct {
	Name    string
	About   string
	Ceiling Case // none when Run is nil: every case has its own
	Cases   []Case
	// Speed prints the ratio as the ceiling's time over the case's (1.0
	// is as fast as the ceiling) instead of the case's over the ceiling's.
	Speed bool
}

// Scenarios lists every scenario `groupvpn bench` knows.
func Scenarios() []Scenario { return []Scenario{Codec(), MainMode(), Daemons(), ESP()} }

// Result is one measured case.
type Result struct {
	Case
	testing.BenchmarkResult
	ceiling *Result // the case's own ceiling, if it has one
}

// Run measures a scenario with testing.Benchmark: the scenario's ceiling,
// then each case, each right after its own ceiling if it has one.
func Run(s Scenario) (ceiling Result, cases []Result) {
	measure := func(c Case) Result {
		return Result{Case: c, BenchmarkResult: testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			if c.Octets > 0 {
				b.SetBytes(c.Octets)
			}
			c.Run(b)
		})}
	}
	if s.Ceiling.Run != nil {
		ceiling = measure(s.Ceiling)
	}
	for _, c := range s.Cases {
		r := measure(c)
		if c.Ceiling != nil {
			own := measure(*c.Ceiling)
			r.ceiling = &own
		}
		cases = append(cases, r)
	}
	return ceiling, cases
}

// Print writes the scenario table: each case with its cost relative to the
// ceiling.
func Print(w io.Writer, s Scenario, ceiling Result, cases []Result) {
	fmt.Fprintf(w, "scenario %s: %s\n", s.Name, s.About)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	col := "x ceiling"
	if s.Speed {
		col = "speed / ceiling"
	}
	fmt.Fprintf(tw, "case\tns/op\tMB/s\tallocs/op\tB/op\t%s\t\n", col)
	row := func(r Result, ratio string) {
		mbs := "-"
		if r.Octets > 0 && r.T > 0 {
			mbs = fmt.Sprintf("%.0f", float64(r.Octets)*float64(r.N)/r.T.Seconds()/1e6)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t\n", r.Name, r.NsPerOp(), mbs, r.AllocsPerOp(), r.AllocedBytesPerOp(), ratio)
	}
	if ceiling.Run != nil {
		row(ceiling, "ceiling")
	}
	for _, r := range cases {
		c := ceiling
		if r.ceiling != nil {
			c = *r.ceiling
			row(c, "ceiling")
		}
		ratio := "-"
		switch n, m := c.NsPerOp(), r.NsPerOp(); {
		case s.Speed && m > 0:
			ratio = fmt.Sprintf("%.2f", float64(n)/float64(m))
		case !s.Speed && n > 0:
			ratio = fmt.Sprintf("%.1f", float64(m)/float64(n))
		}
		row(r, ratio)
	}
	tw.Flush()
}
