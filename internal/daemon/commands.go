package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
)

// Register adds the show commands of a node to a control server. running
// returns the configuration in force (for show running-config).
func Register(srv *ctl.Server, n *node.Node, running func() *policy.Config) {
	snap := func(f func(node.Snapshot) (string, any)) ctl.Handler {
		return func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
			s, err := n.State(ctx)
			if err != nil {
				return nil, err
			}
			text, data := f(s)
			return &ctl.Reply{Text: text, Data: data}, nil
		}
	}
	srv.Handle("show crypto gdoi", "groups, their policy and registration state", snap(show.GDOI))
	srv.Handle("show crypto gdoi ks members", "group members registered with this key server", snap(show.KSMembers))
	srv.Handle("show crypto gdoi gm", "this group member's registrations, KEK and TEK policy", snap(show.GM))
	srv.Handle("show crypto ipsec sa", "the group SAs installed", snap(show.IPsecSA))
	srv.Handle("show crypto isakmp sa", "phase-1 SAs", snap(show.ISAKMPSA))
	srv.Handle("show crypto isakmp listen", "the local addresses isakmpd serves (UDP)", snap(listening))
	srv.Handle("show running-config", "the configuration in force", func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		c := running()
		return &ctl.Reply{Text: c.Render(), Data: map[string]string{"config": c.Render()}}, nil
	})
	// The hostname of the configuration in force: a reload or commit
	// changes it live, the node keeps the one it started with.
	srv.Handle("show version", "software version", snap(func(s node.Snapshot) (string, any) {
		s.Hostname = running().Hostname
		return show.Version(s)
	}))
	srv.Handle("show crypto gdoi ks replay", "anti-replay policy and TBAR pseudotime of the groups this KS serves", snap(show.KSReplay))
	srv.Handle("show crypto gdoi gm replay", "anti-replay state of this GM's TEKs", snap(show.GMReplay))
	srv.Handle("show crypto isakmp statistics", "phase-1 counters: every drop reason, all local addresses", snap(show.ISAKMPStatistics))
	srv.Handle("show crypto gdoi gm counters", "group member counters: registrations, rekeys and every drop reason", snap(show.GMCounters))
	srv.Handle("show crypto gdoi ks counters", "key server counters: refused pulls, rekey acknowledgements and their drops", snap(show.KSCounters))
	srv.Handle("clear crypto gdoi [group WORD]", "GM: register again now over a new phase 1 (installed keys stay until replaced)",
		func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			var groups []string
			var err error
			if derr := n.Do(ctx, func() { groups, err = n.Reregister(req.Args["group"], n.Now()) }); derr != nil {
				return nil, derr
			}
			if err != nil {
				return nil, fmt.Errorf("%% %w", err)
			}
			var b strings.Builder
			for _, g := range groups {
				fmt.Fprintf(&b, "Re-registering group %s with its key server\n", g)
			}
			return &ctl.Reply{Text: b.String(), Data: map[string][]string{"groups": groups}}, nil
		})
	srv.Handle("clear crypto isakmp", "delete every phase-1 SA, telling each peer",
		func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
			var k int
			if err := n.Do(ctx, func() { k = n.ClearPhase1(n.Now()) }); err != nil {
				return nil, err
			}
			return &ctl.Reply{Text: fmt.Sprintf("%d phase-1 SAs deleted\n", k), Data: map[string]int{"deleted": k}}, nil
		})
}

// listening renders the addresses served, one a line.
func listening(s node.Snapshot) (string, any) {
	var b strings.Builder
	fmt.Fprintf(&b, "ISAKMP listening addresses (UDP): %d\n", len(s.Addrs))
	addrs := make([]string, len(s.Addrs))
	for i, a := range s.Addrs {
		addrs[i] = a.String()
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String(), map[string][]string{"listen": addrs}
}
