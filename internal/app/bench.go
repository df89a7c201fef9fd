package app

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	if len(args) > 0 && args[0] == "scale" {
		return runBenchScale(env, args[1:])
	}
	if len(args) > 0 && args[0] == "coop" {
		return runBenchCOOP(env, args[1:])
	}
	if len(args) > 0 && args[0] == "dataplane" {
		return runBenchDataplane(env, args[1:])
	}
	if len(args) > 0 && args[0] == "disruption" {
		return runBenchDisruption(env, args[1:])
	}
	if len(args) == 0 {
		fmt.Fprintf(env.Stderr, "usage: groupvpn bench SCENARIO (one of: %s, register, rekey, removal, scale, coop, dataplane, disruption)\n", strings.Join(names, ", "))
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
	protocol := fs.String("protocol", "gdoi", "how members register: gdoi (GROUPKEY-PULL) or gikev2 (RFC 9838 GSA_AUTH + GSA_REGISTRATION)")
	gdoi := fs.Bool("gdoi", true, "with --protocol gikev2: run the GDOI scenario beside it (port+1) for comparison")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raiseFileLimit()
	switch *protocol {
	case "gdoi":
	case "gikev2":
		if *broker {
			fmt.Fprintln(env.Stderr, "groupvpn bench register: --broker is for GDOI (isakmpd behind iked); --protocol gikev2 runs its KS on its own socket")
			return 2
		}
		r, err := bench.RegisterGIKEv2(context.Background(), *members, uint16(*port), *gdoi)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn bench register: %v\n", err)
			return 1
		}
		r.Print(env.Stdout)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "groupvpn bench register: --protocol %q (accepted: gdoi, gikev2)\n", *protocol)
		return 2
	}
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

func runBenchDataplane(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench dataplane", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var o bench.DataplaneOptions
	fs.StringVar(&o.WireGuard, "wireguard-go", "", "path of a wireguard-go binary to compare with (none: not compared)")
	fs.StringVar(&o.Transform, "transform", "AES-GCM-128", "the TEK's transform, as groupvpn bench esp names it")
	fs.IntVar(&o.Seconds, "seconds", 5, "length of each iperf3 run")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds of plain, wireguard-go and engine runs (medians are printed)")
	fs.IntVar(&o.Streams, "streams", 1, "parallel TCP streams (iperf3 -P)")
	fs.BoolVar(&o.NoClearIn, "no-clear-in", false, "leave out the nftables table tmd -tun installs beside the engine (clear packets of covered traffic from the core dropped)")
	profile := fs.String("cpuprofile", "", "write the CPU profile of the engines (this process) while they forward to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn bench dataplane: %v\n", err)
			return 1
		}
		defer f.Close()
		o.CPUProfile = f
	}
	o.Log = env.Stderr
	r, skipped, err := bench.Dataplane(o)
	switch {
	case err != nil:
		fmt.Fprintf(env.Stderr, "groupvpn bench dataplane: %v\n", err)
		return 1
	case skipped != "":
		fmt.Fprintf(env.Stdout, "scenario dataplane: skipped: %s\n", skipped)
		return 0
	}
	r.Print(env.Stdout)
	return 0
}

func runBenchDisruption(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench disruption", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var o bench.DisruptionOptions
	fs.IntVar(&o.Members, "members", 10, "number of group members (at least 3, at most 250)")
	port := fs.Uint("port", 14848, "UDP port of every node (the second lab, with a 1.0.1 member, uses the next one)")
	fs.Float64Var(&o.Speed, "speed", 20, "how many times faster than real time the lab clock runs through the events that promise no loss")
	fs.DurationVar(&o.Interval, "interval", 0, "how often every ordered pair sends a packet (0: 20ms, longer for large groups: about 8000 packets/s in all)")
	events := fs.String("events", "", fmt.Sprintf("comma-separated event numbers to run (default: all %d)", bench.Events()))
	netns := fs.Bool("netns", false, "run the daemons as processes in network namespaces with real TUN devices, in real time (root; default 3 members)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Port = uint16(*port)
	if *events != "" {
		for _, f := range strings.Split(*events, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > bench.Events() {
				fmt.Fprintf(env.Stderr, "groupvpn bench disruption: -events: %q is not an event number (1-%d)\n", f, bench.Events())
				return 2
			}
			o.Events = append(o.Events, n)
		}
	}
	o.Out = env.Stderr
	if *netns {
		return runBenchDisruptionNetns(env, fs, o)
	}
	raiseFileLimit()
	r, err := bench.Disruption(context.Background(), o)
	if r != nil {
		r.Print(env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench disruption: %v\n", err)
		return 1
	}
	if !r.Met() {
		fmt.Fprintln(env.Stderr, "groupvpn bench disruption: some promise was not kept (see above)")
		return 1
	}
	return 0
}

func runBenchScale(env *Env, args []string) int {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var o bench.ScaleOptions
	stages := fs.String("members", "10000,50000,100000", "comma-separated cumulative member counts at which the KS is measured")
	ks := fs.String("ks", "127.63.255.254:19848", "the KS's address and port (loopback)")
	base := fs.String("base", "127.64.0.1", "the first member's address (the others follow it in 127.0.0.0/8)")
	fs.IntVar(&o.Window, "window", 512, "first registrations in progress at once per loadgen process")
	fs.IntVar(&o.KSProcs, "ks-procs", 1, "the KS's GOMAXPROCS: 1, the one core its ceiling is measured on, the other left to the generators; 0: the runtime's default (every core)")
	fs.BoolVar(&o.Settle, "settle", true, "after each stage: the KS's live heap and RSS once registrations' transient state is gone (50 s, then its next GC and one trimmer look: up to 3 min 12 s); the next stage starts from that quiet KS")
	fs.BoolVar(&o.Rekey, "rekey", true, "after the last stage: one unicast rekey to every member, until the last ACK")
	fs.BoolVar(&o.Restart, "restart", true, "then: SIGKILL the KS and start it again from its state file")
	fs.BoolVar(&o.Removal, "removal", true, "then: clear crypto gdoi ks members, until every member registered again")
	fs.BoolVar(&o.Multicast, "multicast", false, "multicast rekeys instead, in a network namespace of its own (root): one rekey timed until every member applied it; no rekey, restart or removal step")
	fs.DurationVar(&o.TEKLifetime, "tek-lifetime", time.Hour, "the first TEK's lifetime (a removal shortens it to 5%, at least 90 s)")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "give up after")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, f := range strings.Split(*stages, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn bench scale: -members: %q is not a number\n", f)
			return 2
		}
		o.Stages = append(o.Stages, n)
	}
	var err error
	if o.KS, err = netip.ParseAddrPort(*ks); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench scale: -ks: %v\n", err)
		return 2
	}
	if o.Base, err = netip.ParseAddr(*base); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench scale: -base: %v\n", err)
		return 2
	}
	o.Log = env.Stderr
	raiseFileLimit()
	r, err := bench.Scale(context.Background(), o)
	if r != nil {
		r.Print(env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn bench scale: %v\n", err)
		return 1
	}
	return 0
}
