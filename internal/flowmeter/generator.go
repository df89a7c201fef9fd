package flowmeter

import (
	"context"
	"time"
)

// Generator sends one packet of every flow each Interval (real time),
// numbered and recorded by Meter, until its context ends.
type Generator struct {
	Meter    *Meter
	Flows    []Flow
	Interval time.Duration
	// Now is the clock of the send times (nil: time.Now); the meter's
	// windows are in its time.
	Now func() time.Time
	// Send wraps a payload and sends it; it must not keep payload.
	Send func(f Flow, payload []byte)
}

// Run sends rounds until ctx ends and returns how many it sent. A round
// that overruns the interval delays the next one (no burst to catch up).
func (g *Generator) Run(ctx context.Context) int {
	now := g.Now
	if now == nil {
		now = time.Now
	}
	tk := time.NewTicker(g.Interval)
	defer tk.Stop()
	buf := make([]byte, 0, Size)
	rounds := 0
	for {
		for _, f := range g.Flows {
			buf = g.Meter.Send(buf[:0], f, now())
			g.Send(f, buf)
		}
		rounds++
		select {
		case <-ctx.Done():
			return rounds
		case <-tk.C:
		}
	}
}

// Pairs lists every ordered pair of n members.
func Pairs(n int) []Flow {
	var fs []Flow
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i != j {
				fs = append(fs, Flow{uint16(i), uint16(j)})
			}
		}
	}
	return fs
}
