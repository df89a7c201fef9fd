package app

import (
	"context"
	"flag"
	"fmt"

	"github.com/groupvpn/groupvpn/internal/bench"
)

// runBenchDisruptionNetns is `groupvpn bench disruption --netns`: the
// event script with the daemons as processes of this binary in network
// namespaces (bench.DisruptionNetns).
func runBenchDisruptionNetns(env *Env, fs *flag.FlagSet, lab bench.DisruptionOptions) int {
	o := bench.NetnsDisruptionOptions{Members: 3, Interval: lab.Interval, Events: lab.Events, Out: lab.Out}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "members" {
			o.Members = lab.Members
		}
	})
	r, skipped, err := bench.DisruptionNetns(context.Background(), o)
	if skipped != "" {
		fmt.Fprintf(env.Stderr, "groupvpn bench disruption --netns: %s\n", skipped)
		return 1
	}
	if r != nil {
		r.Print(env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench disruption --netns: %v\n", err)
		return 1
	}
	if !r.Met() {
		fmt.Fprintln(env.Stderr, "groupvpn bench disruption --netns: some promise was not kept (see above)")
		return 1
	}
	return 0
}
