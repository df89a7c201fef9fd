package lab

import (
	"fmt"
	"io"
	"time"
)

// progress prints a bar of a long operation (starting thousands of
// members, waiting for their registrations) at most every 500 ms, and
// always its first and last step.
type progress struct {
	out   io.Writer
	what  string
	start time.Time
	shown time.Time
	last  int
}

func newProgress(out io.Writer, what string) *progress {
	return &progress{out: out, what: what, start: time.Now(), last: -1}
}

// step reports n of total done.
func (p *progress) step(n, total int) {
	if n == p.last {
		return
	}
	now := time.Now()
	if p.last >= 0 && n != total && now.Sub(p.shown) < 500*time.Millisecond {
		return
	}
	p.last, p.shown = n, now
	fmt.Fprintf(p.out, "  %s %d/%d %s (%s)\n", bar(n, total), n, total, p.what, now.Sub(p.start).Round(100*time.Millisecond))
}
