package app

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/groupvpn/groupvpn/internal/bench"
)

// runBenchCOOP is `groupvpn bench coop`: member-list synchronisation
// between cooperating key servers (bench.COOP says what is measured).
func runBenchCOOP(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench coop", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.String("members", "10000,100000", "member list sizes, comma-separated")
	kss := fs.String("key-servers", "2,3", "numbers of key servers (2 or 3), comma-separated")
	nodes := fs.Bool("nodes", true, "also through the real key servers (lab nodes; members injected into ks1's state file; about a minute)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ints := func(s string) ([]int, error) {
		var out []int
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%q is not a positive number", f)
			}
			out = append(out, n)
		}
		return out, nil
	}
	ms, err := ints(*members)
	if err == nil {
		var ks []int
		if ks, err = ints(*kss); err == nil {
			var runs []bench.COOPSyncOptions
			for _, m := range ms {
				for _, k := range ks {
					runs = append(runs, bench.COOPSyncOptions{KeyServers: k, Members: m})
				}
			}
			err = bench.COOP(context.Background(), env.Stdout, runs)
			if err == nil && *nodes {
				raiseFileLimit()
				fmt.Fprintln(env.Stdout)
				err = bench.COOPNodesTable(context.Background(), env.Stdout, runs)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench coop: %v\n", err)
		return 1
	}
	return 0
}
