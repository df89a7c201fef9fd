package app

import (
	"fmt"
	"strings"

	"github.com/groupvpn/groupvpn/internal/bench"
)

func runBench(env *Env, args []string) int {
	all := bench.Scenarios()
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	if len(args) == 0 {
		fmt.Fprintf(env.Stderr, "usage: groupvpn bench SCENARIO (one of: %s)\n", strings.Join(names, ", "))
		return 2
	}
	for _, s := range all {
		if s.Name == args[0] {
			ceiling, cases := bench.Run(s)
			bench.Print(env.Stdout, s, ceiling, cases)
			return 0
		}
	}
	fmt.Fprintf(env.Stderr, "groupvpn bench: unknown scenario %q (one of: %s)\n", args[0], strings.Join(names, ", "))
	return 2
}
