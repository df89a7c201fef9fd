package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/lab"
)

// `groupvpn lab --key-servers 2|3`: cooperative key servers (issue 16).
// Without --cli the lab runs its failover proof under live traffic
// (lab.Failover); with --cli the operator works on the lab's own control
// socket (lab.ServeCLI), which outlives any key server: `show lab`, `lab
// kill primary`, `lab start ks1`, `ks1 COMMAND`, `gm N COMMAND`.

// labFailover runs lab.Failover with the live traffic on and prints the
// traffic table and the figures.
func labFailover(ctx context.Context, env *Env, l *lab.Lab, live *lab.Live, interval time.Duration) int {
	start := time.Now()
	if live != nil && l.CanSendLive() {
		if err := live.Start(ctx, l, interval); err != nil {
			fmt.Fprintf(env.Stderr, "groupvpn lab: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.Stdout, "\nLive traffic: numbered packets on %d pairs of members every %s while the primary is killed.\n", lab.LiveFlows(len(l.GMs)), interval)
	}
	rep, ferr := l.Failover(ctx, env.Stdout)
	var lost int
	if live != nil {
		if ss := live.Stop(context.Background()); ss != nil {
			lab.PrintLiveTable(env.Stdout, ss, time.Since(start))
			lost = flowmeter.Total(ss).Lost
		}
	}
	if ferr != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(ferr.Error(), "lab: "))
		return 1
	}
	fmt.Fprintf(env.Stdout, "\nCOOP failover: %s -> %s in %s (dead interval %s); the new primary's rekey reached every member in %s;\n"+
		"%d packets lost; at most %d members without a live TEK in any 200 ms sample; old primary back as secondary: %v.\n",
		l.KSName(rep.Primary), l.KSName(rep.NewPrimary), rep.Takeover.Round(time.Millisecond), rep.Dead,
		rep.RekeyAccepted.Round(time.Millisecond), lost, rep.NoTEK, rep.Rejoined)
	fmt.Fprintf(env.Stdout, "\nRun `groupvpn lab --key-servers %d --cli` to kill and start key servers yourself (`lab kill primary`).\n", l.KeyServers())
	if lost > 0 || rep.NoTEK > 0 || !rep.Rejoined {
		return 1
	}
	return 0
}

// labCOOPCLI serves the lab's control socket and opens the CLI on it,
// with the live traffic's status line.
func labCOOPCLI(ctx context.Context, env *Env, l *lab.Lab, live *lab.Live, interval, every time.Duration, yes bool) int {
	sock := filepath.Join(l.Dir, "lab.sock")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- l.ServeCLI(sctx, sock, nil) }()
	if p, rs, err := l.WaitPrimary(ctx, lab.LabCOOPWait+3*lab.LabCOOPDead); err == nil {
		fmt.Fprintf(env.Stdout, "\nElection: %s is primary (%s).\n", l.KSName(p), lab.RolesLine(rs))
	} else {
		fmt.Fprintf(env.Stdout, "\n%s\n", strings.TrimPrefix(err.Error(), "lab: "))
	}
	l.COOPLines(ctx, env.Stdout)
	fmt.Fprintf(env.Stdout, "\nThe lab keeps running. This CLI is the lab's own (%s); it outlives the key servers:\n"+
		"  show lab                       the key servers' roles and what the members hold\n"+
		"  lab kill primary               kill -9 the primary (or: lab kill ks1); a secondary takes over within the dead interval\n"+
		"  lab start ks1                  start it again: it stays secondary (no preemption)\n"+
		"  lab rekey                      the primary sends a rekey now (as a scheduled one)\n"+
		"  ks1 show crypto gdoi ks coop   any command on a node: ks1, ks2, ks3, gm N\n\n", sock)
	// Wait for the socket.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-served:
			fmt.Fprintf(env.Stderr, "groupvpn lab: the lab's control socket: %v\n", err)
			return 1
		case <-time.After(20 * time.Millisecond):
		}
	}
	args := []string{"-s", sock}
	if yes {
		args = append(args, "--yes")
	}
	if live != nil {
		return labCLIWithTraffic(ctx, env, l, live, interval, every, args)
	}
	return runCLI(env, args)
}
