package app

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"syscall"

	"github.com/groupvpn/groupvpn/internal/bench"
)

func runBench(env *Env, args []string) int {
	all := bench.Scenarios()
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	if len(args) > 0 && args[0] == "register" {
		return runBenchRegister(env, args[1:])
	}
	if len(args) > 0 && args[0] == "rekey" {
		return runBenchRekey(env, args[1:])
	}
	if len(args) > 0 && args[0] == "removal" {
		return runBenchRemoval(env, args[1:])
	}
	if len(args) == 0 {
		fmt.Fprintf(env.Stderr, "usage: groupvpn bench SCENARIO (one of: %s, register, rekey, removal)\n", strings.Join(names, ", "))
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

func runBenchRegister(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench register", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.Int("members", 100, "number of group members")
	port := fs.Uint("port", 11848, "UDP port of every node")
	broker := fs.Bool("broker", false, "put the KS behind an iked broker, as when the group ike runs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raiseFileLimit()
	r, err := bench.Register(context.Background(), *members, uint16(*port), *broker)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench register: %v\n", err)
		return 1
	}
	r.Print(env.Stdout)
	return 0
}

func runBenchRekey(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench rekey", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.Int("members", 1000, "number of group members")
	port := fs.Uint("port", 12848, "UDP port of every node")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raiseFileLimit()
	r, err := bench.Rekey(context.Background(), *members, uint16(*port))
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench rekey: %v\n", err)
		return 1
	}
	r.Print(env.Stdout)
	return 0
}

func runBenchRemoval(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench removal", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.Int("members", 1000, "number of group members")
	port := fs.Uint("port", 13848, "UDP port of every node")
	now := fs.Bool("now", false, "clear crypto gdoi ks members now (GMs delete their keys at once)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raiseFileLimit()
	r, err := bench.Removal(context.Background(), *members, uint16(*port), *now)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench removal: %v\n", err)
		return 1
	}
	r.Print(env.Stdout)
	return 0
}

// raiseFileLimit lifts the soft limit on open files to the hard one: every
// in-process GM holds a socket.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
