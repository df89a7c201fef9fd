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
	srv.Handle("show version", "software version", snap(show.Version))
	srv.Handle("show crypto gdoi ks replay", "anti-replay policy and TBAR pseudotime of the groups this KS serves", snap(show.KSReplay))
	srv.Handle("show crypto gdoi gm replay", "anti-replay state of this GM's TEKs", snap(show.GMReplay))

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
