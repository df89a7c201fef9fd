package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/groupvpn/groupvpn/internal/lab"
)

// RemovalReport is the result of the GM-removal scenario (SPEC R1, R2).
type RemovalReport struct {
	Members   int
	Now       bool          // `clear crypto gdoi ks members now`
	Elapsed   time.Duration // removal command until every GM holds the new keys
	Reregs    int           // registrations the KS served after the removal
	PeakPerS  int           // most registrations the KS served in one second
	Lacked    int           // GMs seen holding no valid TEK at some sample
	Samples   int           // sweeps over every GM
	SweepTime time.Duration // one sweep, on average
	Ceiling   float64       // registrations/s the KS's public-key work allows on one core
}

// Removal runs `clear crypto gdoi ks members [now]` on a lab of members
// GMs in real time and measures how long the group takes to move to the
// new keys, the peak registration rate the KS served meanwhile, and
// whether any GM was ever without a valid TEK (sampled continuously; must
// be none in normal mode). The lab's TEKs live 3600 s and 7200 s, so a GM
// re-registers 60-120 s after the removal (docs/operations.md).
func Removal(ctx context.Context, members int, port uint16, now bool) (*RemovalReport, error) {
	op := registrationCrypto()
	l, err := registeredLab(ctx, lab.Options{Members: members, Port: port})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	ks := l.KS.Node
	start := time.Now()
	if _, serr := ks.RemoveMembers(ctx, "LAB", now); serr != nil {
		return nil, serr
	}
	s, err := ks.State(ctx)
	if err != nil {
		return nil, err
	}
	var want []uint32
	for _, t := range s.KS[0].TEKs {
		want = append(want, t.SPI)
	}
	rep := &RemovalReport{Members: members, Now: now, Ceiling: float64(time.Second) / float64(op)}
	lacked := make([]bool, members)
	deadline := start.Add(10 * time.Minute)
	var sweeping time.Duration
	for {
		t0 := time.Now()
		done := 0
		for i, gm := range l.GMs {
			st, err := gm.Node.State(ctx)
			if err != nil {
				return nil, err
			}
			valid, hasNew := 0, 0
			for _, t := range st.TEKs {
				if st.Now.Before(t.Expires) {
					valid++
					if slices.Contains(want, t.SPI) {
						hasNew++
					}
				}
			}
			if valid == 0 {
				lacked[i] = true
			}
			if hasNew == len(want) {
				done++
			}
		}
		sweeping += time.Since(t0)
		rep.Samples++
		if done == members {
			rep.Elapsed = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench removal: only %d of %d members hold the new keys after %s", done, members, time.Since(start).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep.SweepTime = sweeping / time.Duration(rep.Samples)
	for _, b := range lacked {
		if b {
			rep.Lacked++
		}
	}
	if s, err = ks.State(ctx); err != nil {
		return nil, err
	}
	perSecond := map[int64]int{}
	for _, m := range s.KS[0].Members {
		if !m.LastRegister.Before(start) {
			rep.Reregs++
			perSecond[m.LastRegister.Unix()]++
		}
	}
	for _, n := range perSecond {
		rep.PeakPerS = max(rep.PeakPerS, n)
	}
	return rep, nil
}

// Print writes the report.
func (r *RemovalReport) Print(w io.Writer) {
	cmd := "clear crypto gdoi ks members"
	if r.Now {
		cmd += " now"
	}
	fmt.Fprintf(w, "scenario removal: `%s` to %d GMs over loopback UDP, real time (TEKs 3600 s / 7200 s)\n", cmd, r.Members)
	fmt.Fprintf(w, "  %-46s %12s\n", "removal until every GM holds the new keys", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-46s %12d\n", "re-registrations the KS served", r.Reregs)
	fmt.Fprintf(w, "  %-46s %12d\n", "peak registrations in one second at the KS", r.PeakPerS)
	fmt.Fprintf(w, "  %-46s %12d\n", "GMs ever seen without a valid TEK", r.Lacked)
	fmt.Fprintf(w, "  %-46s %12s\n", "  (every GM sampled; one sweep takes)", r.SweepTime.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-46s %12.0f\n", "ceiling: KS registrations per second/core", r.Ceiling)
	fmt.Fprintf(w, "  %-46s %11.2f%%\n", "peak / ceiling", 100*float64(r.PeakPerS)/r.Ceiling)
	fmt.Fprintln(w, "  (the GMs spread their re-registrations with jitter over the shortened lifetime; they run in this process and share its CPU)")
}
