package app

import (
	"context"
	"fmt"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/lab"
)

// `groupvpn lab --cli` with traffic: numbered packets on every ordered pair
// of members while the operator works in the CLI, a status line shown
// above the prompt (ctl.Shell.Notes: the line editor clears and redraws
// what the operator is typing) and a final table on exit.

// liveRate is the default rate of each pair: 10 packets per second, and at
// most maxLiveRate packets per second in all (the meter keeps every
// packet's send time: about 10 octets each).
const (
	perPairRate = 10.0
	maxLiveRate = 1000.0
)

// liveInterval is the sending interval of each pair at rate packets per
// second per pair (0: the default).
func liveInterval(rate float64, members int) time.Duration {
	pairs := float64(lab.LiveFlows(members))
	if rate <= 0 {
		rate = min(perPairRate, maxLiveRate/max(pairs, 1))
	}
	return max(time.Duration(float64(time.Second)/rate), time.Millisecond)
}

// labCLIWithTraffic starts the live traffic, opens the CLI with its status
// and prints the final table when the CLI ends (quit, EOF, ^C) or ctx does
// (SIGINT, SIGTERM).
func labCLIWithTraffic(ctx context.Context, env *Env, l *lab.Lab, live *lab.Live, interval, every time.Duration, cliArgs []string) int {
	start := time.Now()
	if err := live.Start(ctx, l, interval); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %v\n", err)
		return 1
	}
	if l.CanSendLive() {
		pairs := lab.LiveFlows(l.Members())
		who := "every ordered pair of members"
		if pairs < l.Members()*(l.Members()-1) {
			who = "each member to the next 7"
		}
		fmt.Fprintf(env.Stdout, "Live traffic: %s (%d pairs) sends a numbered packet every %s, alternately on\n"+
			"lab-traffic and lab-voice (%.0f packets/s in all). A status line shows above the prompt when losses or\n"+
			"members' states change, and at least every %s; the final table prints when you quit.\n",
			who, pairs, interval, float64(pairs)*float64(time.Second)/float64(interval), every)
	} else {
		fmt.Fprintf(env.Stdout, "No live traffic (it needs --traffic, 2 to 250 members). A status line of the members' states shows\n"+
			"above the prompt when they change (a removal's re-registrations), and at least every %s.\n", every)
	}

	notes := make(chan string, 1)
	sctx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		showLiveStatus(sctx, live, every, notes)
	}()
	code := make(chan int, 1)
	go func() { code <- cliWithNotes(env, cliArgs, notes) }()
	rc := 0
	select {
	case rc = <-code:
	case <-ctx.Done():
		fmt.Fprintln(env.Stdout)
	}
	stopStatus()
	<-statusDone
	if l.CanSendLive() {
		fmt.Fprintf(env.Stdout, "Stopping the traffic (waiting for the packets in flight)...\n")
	}
	ss := live.Stop(context.Background())
	if ss == nil {
		return rc
	}
	lab.PrintLiveTable(env.Stdout, ss, time.Since(start))
	if t := flowmeter.Total(ss); t.Lost > 0 {
		fmt.Fprintf(env.Stdout, "(Losses are expected after `clear crypto gdoi ks members now` and `crypto gdoi ks rekey replace-now`;\n"+
			"see docs/operations.md for each operation's measured outage.)\n")
	}
	return rc
}

// showLiveStatus sends the status line to notes each time losses or the
// members' states change (checked every second) and at least every
// every (0: only on change), until ctx ends. A note the CLI has not taken
// yet is replaced by the newer one.
func showLiveStatus(ctx context.Context, live *lab.Live, every time.Duration, notes chan string) {
	tick := time.Second
	if every > 0 && every < tick {
		tick = every
	}
	tk := time.NewTicker(tick)
	defer tk.Stop()
	key, shown := "", time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		st, err := live.Status(ctx)
		if err != nil {
			return
		}
		if st.Pairs > 0 && st.Total.Sent == 0 || st.Key() == key && (every <= 0 || time.Since(shown) < every) {
			continue
		}
		key, shown = st.Key(), time.Now()
		select { // drop the stale note, if any
		case <-notes:
		default:
		}
		select {
		case notes <- st.String():
		default:
		}
	}
}
