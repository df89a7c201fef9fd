package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/lab"
)

// labGIKEv2Rekey is the end of `groupvpn lab --protocol gikev2` (issue
// 17): numbered packets on every pair of members while the key server
// sends a rekey (GSA_REKEY, unicast to every member), then the traffic
// table and the rekey's figures. Any packet lost fails the command.
func labGIKEv2Rekey(ctx context.Context, env *Env, l *lab.Lab, live *lab.Live, interval time.Duration) int {
	if live == nil || !l.CanSendLive() {
		fmt.Fprintf(env.Stdout, "\n(No live traffic: the rekey under traffic needs the data plane and 2 to 250 members.)\n")
		return 0
	}
	start := time.Now()
	if err := live.Start(ctx, l, interval); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "\nLive traffic: numbered packets on %d pairs of members every %s; the key server sends a rekey\n"+
		"now, as a scheduled one (new TEKs in a GSA_REKEY under the Rekey SA, unicast to every member), under it.\n", lab.LiveFlows(l.Members()), interval)
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	wait(time.Second)
	rep, rerr := l.GIKEv2Rekey(ctx, 10*time.Second)
	if rerr == nil {
		wait(time.Second)
	}
	ss := live.Stop(context.Background())
	var lost int
	if ss != nil {
		lab.PrintLiveTable(env.Stdout, ss, time.Since(start))
		lost = flowmeter.Total(ss).Lost
	}
	if rerr != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(rerr.Error(), "lab: "))
		return 1
	}
	spis := make([]string, len(rep.NewSPIs))
	for i, s := range rep.NewSPIs {
		spis[i] = fmt.Sprintf("0x%08x", s)
	}
	fmt.Fprintf(env.Stdout, "\nG-IKEv2 rekey: new TEKs %s applied by %d of %d members in %s; %d packets lost.\n"+
		"The members accept the new TEKs at once and send with them after the rekey's activation delay (GWP_ATD, %s),\n"+
		"so that no packet is lost while the rekey reaches them one after the other.\n",
		strings.Join(spis, ", "), rep.Applied, l.Members(), rep.Took.Round(time.Millisecond), lost, ks.RekeyATD)
	// The new TEKs carry the traffic: the engines' clock past the ATD.
	before := l.EncapsBySPI()
	skip := ks.RekeyATD + time.Second
	if err := l.SkipAhead(skip); err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 1
	}
	r, err := l.Traffic(ctx, 10*time.Second)
	if err != nil {
		fmt.Fprintf(env.Stderr, "groupvpn lab: %s\n", strings.TrimPrefix(err.Error(), "lab: "))
		return 1
	}
	after := l.EncapsBySPI()
	var onNew, onOld uint64
	for spi, n := range after {
		if slices.Contains(rep.NewSPIs, spi) {
			onNew += n - before[spi]
		} else {
			onOld += n - before[spi]
		}
	}
	fmt.Fprintf(env.Stdout, "After the activation delay (the members' ESP engines' clock moved %s ahead): %d of %d packets delivered,\n"+
		"%d of them encapsulated with the new TEKs, %d with the old ones; the plaintext marker crossed the sockets %d times.\n",
		skip, r.Delivered, r.Sent, onNew, onOld, r.WireMarker)
	fmt.Fprintf(env.Stdout, "\nRun `groupvpn lab --protocol gikev2 --cli` to keep the lab running and explore it with ikev2d's CLI.\n")
	if lost > 0 || !r.DeliveredAll || !r.Safe || onOld > 0 || onNew != r.Sent {
		fmt.Fprintf(env.Stderr, "groupvpn lab: the rekey did not carry every packet on the new TEKs without loss\n")
		return 1
	}
	return 0
}
