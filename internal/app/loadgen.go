package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/loadgen"
)

// loadgenGOGC is the generator's default GOGC. Its CPU is the key server's
// budget when they share a host (issue 18): at 100 (Go's default) the
// collector was 10% of its CPU at 20,000 GMs (perf: gcBgMarkWorker 8.6%,
// background sweeping 1.6%), at 400 2% (1.7%, 0.4%), about 15 µs per
// registration. The cost is memory: the heap grows to 5 times the live
// one between collections (about 1.6 KB per GM live: 8 KB, 400 MB for
// 50,000 GMs), touched before the stage (-prefault) so that the stage
// takes no page fault for it.
const loadgenGOGC = 400

// setLoadgenGC sets the process's GOGC to v when -gogc was given, or when
// the GOGC environment variable is not set.
func setLoadgenGC(fs *flag.FlagSet, v int, getenv func(string) string) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "gogc" })
	if given || getenv("GOGC") == "" {
		debug.SetGCPercent(v)
	}
}

// runLoadgen plays many group members against a key server from one
// process and one UDP socket (issue 18, internal/loadgen), printing its
// totals as one JSON line per interval on stdout until SIGTERM or SIGINT.
func runLoadgen(env *Env, args []string) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var o loadgen.Options
	ks := fs.String("ks", "127.0.0.1:848", "the key server's `ADDRESS:PORT`")
	fs.IntVar(&o.Members, "members", 1000, "number of simulated group members")
	base := fs.String("base", "127.64.0.1", "the first member's address (member i has BASE+i; all in 127.0.0.0/8)")
	port := fs.Uint("port", 0, "UDP port of the members' addresses (0: ephemeral ones; with -shards N, shard s's members use PORT+s)")
	fs.StringVar(&o.Group, "group", "LAB", "the group's name")
	groupID := fs.Uint("group-id", 1001, "the group's identity number")
	psk := fs.String("psk", "lab-secret", "the phase-1 pre-shared key")
	fs.IntVar(&o.Window, "window", 256, "first registrations in progress at once")
	fs.IntVar(&o.Shards, "shards", 1, "goroutines owning the members, each with its own socket and port; also GOMAXPROCS unless the environment sets it")
	fs.StringVar(&o.Interface, "interface", "lo", "interface multicast rekeys arrive on")
	fs.IntVar(&o.KeysAhead, "keys-ahead", 0, "members' main-mode key pairs made before the first registration begins (0: one per member; -1: none, each made in its exchange)")
	fs.BoolVar(&o.Prefault, "prefault", true, "touch the heap the stage's allocations will run through (the collector's headroom) before the first registration begins, so that the stage takes no page fault for it")
	interval := fs.Duration("interval", 250*time.Millisecond, "how often the totals are printed")
	gcPercent := fs.Int("gogc", loadgenGOGC, "the generator's GOGC (its heap grows to 1+GOGC/100 times the live heap between collections; the GOGC environment variable wins over the default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.KS, err = netip.ParseAddrPort(*ks); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn loadgen: -ks: %v\n", err)
		return 2
	}
	if o.Base, err = netip.ParseAddr(*base); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn loadgen: -base: %v\n", err)
		return 2
	}
	if *port > 65535 || *groupID > 1<<32-1 || *interval <= 0 {
		fmt.Fprintln(env.Stderr, "groupvpn loadgen: -port, -group-id or -interval out of range")
		return 2
	}
	o.Port, o.GroupID, o.PSK = uint16(*port), uint32(*groupID), []byte(*psk)
	raiseFileLimit()
	setLoadgenGC(fs, *gcPercent, os.Getenv)
	if os.Getenv("GOMAXPROCS") == "" {
		// One P per shard: with a P more than the goroutines that work,
		// each time the shard waits for its socket the runtime looks for
		// work on the idle P and wakes threads for it (perf at 20,000
		// GMs: findRunnable 9.9% of the generator's CPU at 2 Ps, 2.6% at
		// 1; context switches 13.5% and 9.7%; issue 18).
		runtime.GOMAXPROCS(max(1, o.Shards))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	g, err := loadgen.New(ctx, o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn loadgen: %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	enc := json.NewEncoder(env.Stdout)
	t := time.NewTicker(*interval)
	defer t.Stop()
	t0, told := loadgen.Monotonic(), false
	for {
		select {
		case err := <-done:
			enc.Encode(g.Snapshot())
			if err != nil {
				fmt.Fprintf(env.Stderr, "groupvpn loadgen: %v\n", err)
				return 1
			}
			return 0
		case <-t.C:
			s := g.Snapshot()
			if !told && s.ReadyAt != 0 {
				told = true
				fmt.Fprintln(env.Stderr, keysAheadLine(s, t0))
			}
			if err := enc.Encode(s); err != nil {
				stop() // stdout closed: the reader is gone
			}
		}
	}
}

// keysAheadLine says that the members' key pairs were made before the
// stage (the rig's choice, so that the key server gets the cores: issue
// 18), how many, and what it took; t0 is when the generator started
// (CLOCK_MONOTONIC ns).
func keysAheadLine(s loadgen.Snapshot, t0 int64) string {
	return fmt.Sprintf("groupvpn loadgen: %d members' main-mode key pairs made before the first registration, in %s (%s of CPU since the process started); "+
		"the stage's CPU is the process's after them, and a member with none left makes its own in the exchange",
		s.KeyPairsAhead, time.Duration(s.ReadyAt-t0).Round(time.Millisecond), time.Duration(s.ReadyCPU).Round(time.Millisecond))
}
