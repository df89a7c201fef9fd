package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/lab"
)

// runLab starts a key server and N group members in this process on
// loopback addresses, shows them registering, then the KS member table and
// every member's SAs; then every member's ESP engine (in-memory TUN, ESP in
// UDP on loopback) carries synthetic traffic between the hosts behind the
// members, and the lab shows what was protected and delivered. With --cli
// it keeps running and opens the operator CLI on the key server.
func runLab(env *Env, args []string) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	members := fs.Int("members", 8, "number of group members")
	port := fs.Uint("port", 0, "UDP port of every node (default 848 as root, else 10848)")
	cli := fs.Bool("cli", false, "keep running and open the CLI on the key server")
	dir := fs.String("dir", "", "directory for generated configs, keys and control sockets (default: a new temp dir)")
	verbose := fs.Bool("v", false, "print the nodes' log lines")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for every member to register")
	old := fs.Int("old", 0, "the last `N` members announce and behave like version 1.0.1 (a mixed-version group)")
	traffic := fs.Bool("traffic", true, "run every member's ESP engine and send traffic through them (at most 250 members); with --cli, continuously")
	rate := fs.Float64("rate", 0, "with --cli: packets per second on each ordered pair of members (default 10, at most 1000 in all)")
	every := fs.Duration("status", 10*time.Second, "with --cli: show the traffic status line at least this often (0: only when losses or states change)")
	all := fs.Bool("all", false, "list every member in the tables (above 10 members they are summarised: first and last rows, counts, ranges)")
	baseFlag := fs.String("base", lab.DefaultBase.String(), "the members' loopback address `BASE` 127.B.C.0: gm1 is 127.B.C.1, 250 members per /24")
	yes := fs.Bool("yes", false, "with --cli: answer yes to the CLI's confirmation prompts (commands from a script)")
	keyServers := fs.Int("key-servers", 1, "number of key servers: 2 or 3 run cooperative key servers (COOP) with short timers and show a failover")
	protocol := fs.String("protocol", lab.ProtocolGDOI, "how members register: gdoi (GDOI, isakmpd) or gikev2 (G-IKEv2, RFC 9838: ikev2d routers, then a rekey under traffic)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *members < 1 || *port > 65535 || *old < 0 || *old > *members || *rate < 0 || *every < 0 || *keyServers < 1 || *keyServers > 3 {
		fmt.Fprintln(env.Stderr, "groupvpn lab: --members must be at least 1, --port a UDP port, --old between 0 and --members and --key-servers 1 to 3")
		return 2
	}
	v2 := *protocol == lab.ProtocolGIKEv2
	switch {
	case *protocol != lab.ProtocolGDOI && !v2:
		fmt.Fprintf(env.Stderr, "groupvpn lab: --protocol %q: gdoi or gikev2\n", *protocol)
		return 2
	case v2 && *keyServers > 1:
		fmt.Fprintln(env.Stderr, "groupvpn lab: --protocol gikev2 runs one key server: cooperative key servers (COOP, --key-servers) speak IKEv1 (GDOI) only, G-IKEv2 has no COOP (docs/config.md, G-IKEv2)")
		return 2
	case v2 && *old > 0:
		fmt.Fprintln(env.Stderr, "groupvpn lab: --old is for GDOI members (version 1.0.1); not with --protocol gikev2")
		return 2
	}
	base, err := netip.ParseAddr(*baseFlag)
	if err == nil {
		err = lab.ValidateBase(base, *members)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: --base: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 2
	}
	var olds []int
	for i := *members - *old; i < *members; i++ {
		olds = append(olds, i)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(env.Stderr, nil))
	}
	start := time.Now()
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "groupvpn-lab-")
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn lab: %v\n", err)
			return 1
		}
		defer os.RemoveAll(tmp) // --dir keeps the generated configs
		*dir = tmp
	}
	raiseFileLimit()
	dp := *traffic && *members <= 250
	o := lab.Options{Members: *members, Port: uint16(*port), Dir: *dir, Out: env.Stdout, Logger: logger, Old: olds, DataPlane: dp, Base: base, All: *all}
	coop := *keyServers > 1
	if coop {
		o.KeyServers = *keyServers
	}
	if v2 {
		o.Protocol, o.IKEv2Config = lab.ProtocolGIKEv2, ikev2dConfig
	}
	var live *lab.Live // labtraffic.go
	if *cli || coop || v2 {
		live = lab.NewLive(0)
		if dp && *members >= 2 {
			o.Deliver = live.Deliver
		}
	}
	l, err := lab.Start(ctx, o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 1
	}
	defer l.Close()
	if coop {
		period, dead, wait := o.COOPTimers()
		fmt.Fprintf(env.Stdout, "groupvpn lab: %d cooperative key servers %s to %s port %d, priorities 100, 50, 25, one rekey key;\n"+
			"  lab COOP timers: announcements every %s, dead interval %s, election wait %s (defaults 20 s, 60 s, 20 s);\n"+
			"  %d group members %s to %s, each listing every key server (configs in %s)\n",
			*keyServers, lab.KSAddrN(0), lab.KSAddrN(*keyServers-1), l.Port, period, dead, wait, *members, l.GMAddr(0), l.GMAddr(*members-1), l.Dir)
	} else if v2 {
		fmt.Fprintf(env.Stdout, "groupvpn lab: G-IKEv2 (RFC 9838): key server %s:%d and %d group members %s to %s,\n"+
			"  each an ikev2d router configured in IOS-XE G-IKEv2 syntax (configs in %s)\n",
			lab.KSAddr, l.Port, *members, l.GMAddr(0), l.GMAddr(*members-1), l.Dir)
	} else {
		fmt.Fprintf(env.Stdout, "groupvpn lab: key server %s:%d and %d group members %s to %s (configs in %s)\n",
			lab.KSAddr, l.Port, *members, l.GMAddr(0), l.GMAddr(*members-1), l.Dir)
	}
	if err := l.Wait(ctx, env.Stdout, *timeout); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 1
	}
	how := "phase 1 + GROUPKEY-PULL each"
	if v2 {
		how = "IKE_SA_INIT + GSA_AUTH each"
	}
	fmt.Fprintf(env.Stdout, "all %d members registered in %s (%s, over real UDP)\n",
		*members, time.Since(start).Round(time.Millisecond), how)
	if err := l.Summary(ctx, env.Stdout); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 1
	}
	switch {
	case dp:
		r, err := l.Traffic(ctx, 10*time.Second)
		if err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
			return 1
		}
		r.Print(env.Stdout)
		if !r.DeliveredAll || !r.Safe {
			fmt.Fprintf(env.Stderr, "groupvpn lab: the data plane did not protect and deliver every packet\n")
			return 1
		}
	case *traffic:
		fmt.Fprintf(env.Stdout, "\n(The data plane runs with at most 250 members: no traffic sent.)\n")
	}
	if coop && !*cli {
		return labFailover(ctx, env, l, live, liveInterval(*rate, *members))
	}
	if v2 && !*cli {
		return labGIKEv2Rekey(ctx, env, l, live, liveInterval(*rate, *members))
	}
	if !*cli {
		fmt.Fprintf(env.Stdout, "\nRun `groupvpn lab --cli` to keep the lab running and explore it with the operator CLI.\n")
		return 0
	}
	if coop {
		return labCOOPCLI(ctx, env, l, live, liveInterval(*rate, *members), *every, *yes)
	}
	if v2 {
		fmt.Fprintf(env.Stdout, "\nThe lab keeps running. CLI on the G-IKEv2 key server, ikev2d's own commands (try: show crypto gdoi,\n"+
			"show crypto gdoi ks members, show crypto ikev2 statistics, crypto gdoi ks rekey, clear crypto gdoi ks members);\n"+
			"a member's CLI: groupvpn cli -s %s\n\n", l.Sockets["gm1"])
		if live != nil {
			return labCLIWithTraffic(ctx, env, l, live, liveInterval(*rate, *members), *every, []string{"-s", l.Sockets["ks"]})
		}
		return runCLI(env, []string{"-s", l.Sockets["ks"]})
	}
	fmt.Fprintf(env.Stdout, "\nThe lab keeps running. CLI on the key server (try: show crypto gdoi, show crypto gdoi ks members);\n"+
		"a member's CLI: groupvpn cli -s %s\n\n", l.Sockets["gm1"])
	cliArgs := []string{"-s", l.Sockets["ks"]}
	if *yes {
		cliArgs = append(cliArgs, "--yes")
	}
	if live != nil {
		return labCLIWithTraffic(ctx, env, l, live, liveInterval(*rate, *members), *every, cliArgs)
	}
	return runCLI(env, cliArgs)
}
