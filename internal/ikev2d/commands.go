package ikev2d

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// Serve registers ikev2d's commands on a control server (groupvpn cli -s
// SOCKET): show crypto gdoi, show crypto gdoi ks members, clear crypto
// gdoi [group WORD] ks members [now] (SPEC R1, R4) and crypto gdoi ks
// [group WORD] rekey [replace-now] (SPEC P2-P4), with isakmpd's texts
// where they apply. Every handler runs on the router's loop.
func (r *Router) Serve(srv *ctl.Server) {
	on := func(f func(req *ctl.Request) (string, error)) ctl.Handler {
		return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			var text string
			var err error
			if derr := r.Do(ctx, func() { text, err = f(req) }); derr != nil {
				return nil, derr
			}
			if err != nil {
				return nil, err
			}
			return &ctl.Reply{Text: text}, nil
		}
	}
	srv.HandleReadOnly("show crypto gdoi", "G-IKEv2 groups: key-server keys and members, member registrations", on(func(*ctl.Request) (string, error) { return r.showGDOI(), nil }))
	srv.HandleReadOnly("show crypto gdoi ks members", "G-IKEv2 members registered with this key server", on(func(*ctl.Request) (string, error) { return r.showMembers(), nil }))
	srv.HandleReadOnly("show crypto ikev2 statistics", "IKEv2 endpoint and router drop counters", on(func(*ctl.Request) (string, error) { return r.showStats(), nil }))
	srv.Handle("clear crypto gdoi [group WORD] ks members [now]", "remove every GM from the group: GSA_REKEY with D(GIKE_UPDATE), new keys, GMs re-register",
		on(func(req *ctl.Request) (string, error) {
			names, err := r.ksGroups(req.Args["WORD"])
			if err != nil {
				return "", err
			}
			var b strings.Builder
			for _, n := range names {
				if err := r.Remove(n, req.Has("now")); err != nil {
					return b.String(), fmt.Errorf("group %s: %w", n, err)
				}
				fmt.Fprintf(&b, "Group %s: every member excluded (G-IKEv2 GSA_REKEY, D(GIKE_UPDATE)); they register again for the new keys\n", n)
			}
			return b.String(), nil
		}))
	srv.Handle("crypto gdoi ks [group WORD] rekey [replace-now]", "send a rekey built from the running policy (policy replace)",
		on(func(req *ctl.Request) (string, error) {
			names, err := r.ksGroups(req.Args["WORD"])
			if err != nil {
				return "", err
			}
			var b strings.Builder
			for _, n := range names {
				if err := r.Replace(n, req.Has("replace-now")); err != nil {
					return b.String(), fmt.Errorf("group %s: %w", n, err)
				}
				fmt.Fprintf(&b, "Group %s: policy-replace GSA_REKEY sent\n", n)
			}
			return b.String(), nil
		}))
}

func (r *Router) ksGroups(name string) ([]string, error) {
	if r.ks == nil {
		return nil, fmt.Errorf("this ikev2d is not a key server")
	}
	all := r.ks.srv.Groups()
	if name == "" {
		return all, nil
	}
	if !slices.Contains(all, name) {
		return nil, fmt.Errorf("no key-server group %s", name)
	}
	return []string{name}, nil
}

func (r *Router) showGDOI() string {
	var b strings.Builder
	now := r.o.Now()
	if r.ks != nil {
		for _, n := range r.ks.srv.Groups() {
			st, err := r.ks.srv.State(n, now)
			if err != nil {
				continue
			}
			fmt.Fprintf(&b, "GROUP INFORMATION (G-IKEv2 key server)\n    Group Name               : %s\n    Group Identity           : %d\n    Group Members            : %d\n    Rekey Sequence Number    : %d\n", st.Name, st.ID, len(st.Members), st.Seq)
			for _, t := range st.TEKs {
				fmt.Fprintf(&b, "    TEK SPI                  : 0x%08X (expires %s)\n", t.SPI, t.Expires.UTC().Format("15:04:05"))
			}
			fmt.Fprintf(&b, "    Registrations answered   : %d, refused %d, rekeys sent %d\n", r.ks.Registered, r.ks.Refused, r.ks.Rekeys)
		}
	}
	for _, m := range r.Members() {
		status := "Not registered"
		if m.Registered {
			status = "Registered"
		}
		fmt.Fprintf(&b, "GROUP MEMBER (G-IKEv2)\n    Group Name               : %s\n    Key Server               : %s\n    Registration status      : %s\n    Succeeded registration   : %d\n    Failed registration      : %d\n    Rekeys applied           : %d\n",
			m.Group, m.Server, status, m.Registrations, m.Failures, m.Rekeys)
		if m.LastError != "" {
			fmt.Fprintf(&b, "    Last error               : %s\n", m.LastError)
		}
		for _, t := range r.o.Dataplane.TEKs() {
			if t.Group == m.Group {
				fmt.Fprintf(&b, "    TEK SPI                  : 0x%08X\n", t.SPI)
			}
		}
	}
	if b.Len() == 0 {
		return "No G-IKEv2 group is configured\n"
	}
	return b.String()
}

func (r *Router) showMembers() string {
	if r.ks == nil {
		return "This ikev2d is not a key server\n"
	}
	var b strings.Builder
	for _, n := range r.ks.srv.Groups() {
		st, err := r.ks.srv.State(n, r.o.Now())
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "Group Member Information : %s\n", n)
		for _, m := range st.Members {
			fmt.Fprintf(&b, "  Group Member ID : %s  port %d  identity %s  registrations %d  removed %v\n", m.Address, m.Port, m.Identity, m.Registrations, m.Removed)
		}
	}
	return b.String()
}

func (r *Router) showStats() string {
	var b strings.Builder
	for _, c := range r.Stats().Counters() {
		fmt.Fprintf(&b, "%-28s %d\n", c.Name, c.Value)
	}
	fmt.Fprintf(&b, "%-28s %d\n%-28s %d\n%-28s %d\n%-28s %d\n", "router_overload", r.overload.Load(), "router_not_ikev2", r.Drops.NotIKEv2,
		"rekey_no_member_group", r.Drops.RekeyNoGM, "multicast_not_rekey", r.Drops.McastNot)
	if r.ks != nil {
		fmt.Fprintf(&b, "Key server\n  %-26s %d\n  %-26s %d\n  %-26s %d\n  %-26s %d\n  %-26s %d\n", "registered", r.ks.Registered, "refused", r.ks.Refused,
			"rekeys_sent", r.ks.Rekeys, "rekeys_resent", r.ks.Resent, "members_left", r.ks.Left)
	}
	for _, m := range r.gm {
		fmt.Fprintf(&b, "Group member %s\n", m.g.Name)
		for _, c := range m.m.Stats.Counters() {
			fmt.Fprintf(&b, "  %-26s %d\n", c.Name, c.Value)
		}
	}
	return b.String()
}
