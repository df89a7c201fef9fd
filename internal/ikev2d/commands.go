package ikev2d

import (
	"context"
	"fmt"
	"strings"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/version"
)

// Serve registers ikev2d's commands on a control server (groupvpn cli -s
// SOCKET): show crypto gdoi, show crypto gdoi ks members, clear crypto
// gdoi [group WORD] ks members [now] (SPEC R1, R4) and crypto gdoi ks
// [group WORD] rekey [replace-now] (SPEC P2-P4), with isakmpd's texts
// where they apply, and isakmpd's audit trail of the commands that change
// state (daemon.Audit, to the router's logger). Every handler runs on the
// router's loop.
func (r *Router) Serve(srv *ctl.Server) {
	daemon.Audit(srv, r.log)
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
	srv.HandleReadOnly("show crypto ikev2 sa", "the IKEv2 SAs of ordinary peers (UDP 500; registrations: show crypto gdoi)", on(func(*ctl.Request) (string, error) { return r.showPlainSAs(), nil }))
	srv.HandleReadOnly("show crypto ikev2 statistics", "IKEv2 endpoint and router drop counters", on(func(*ctl.Request) (string, error) { return r.showStats(), nil }))
	feature := func(req *ctl.Request) (*ctl.Reply, error) { return r.features(req) }
	srv.HandleReadOnly("show crypto gdoi feature gm-removal", "which devices support GM removal (versions; every G-IKEv2 member does)", r.onReply(feature))
	srv.HandleReadOnly("show crypto gdoi feature policy-replace", "which devices support policy replace (versions; every G-IKEv2 member does)", r.onReply(feature))
	// The removal and replace commands ask, answer and refuse with
	// isakmpd's texts (the daemon package's dialog, SPEC R1, R4, P2).
	srv.Handle("clear crypto gdoi [group WORD] ks members [now]", "remove every GM from the group: GSA_REKEY with D(GIKE_UPDATE), new keys, GMs re-register",
		on(func(req *ctl.Request) (string, error) {
			names, err := daemon.SelectKSGroups(r.ksGroupNames(), req)
			if err != nil {
				return "", err
			}
			// Every question first: ctl runs the handler again from the
			// start with each answer, so nothing may change before the
			// last one. The groups up to the first "no" are removed.
			now := req.Has("now")
			var confirmed []string
			for _, n := range names {
				if err := r.ks.srv.CheckPrimaryRemoval(n); err != nil {
					return "", err
				}
				ok, err := daemon.ConfirmRemoval(req, n, now, allSupport(r.featureRows(n)))
				if err != nil {
					return "", err
				}
				if !ok {
					break
				}
				confirmed = append(confirmed, n)
			}
			var b strings.Builder
			for _, n := range confirmed {
				if err := r.Remove(n, now); err != nil {
					return "", err
				}
				b.WriteString(daemon.RemovalSent(n))
			}
			return b.String(), nil
		}))
	srv.Handle("crypto gdoi ks [group WORD] rekey [replace-now]", "send a rekey built from the running policy (policy replace)",
		on(func(req *ctl.Request) (string, error) {
			names, err := daemon.SelectKSGroups(r.ksGroupNames(), req)
			if err != nil {
				return "", err
			}
			var b strings.Builder
			for _, n := range names {
				if err := r.Replace(n, req.Has("replace-now")); err != nil {
					return "", err
				}
				b.WriteString(daemon.ReplaceSent(n))
			}
			return b.String(), nil
		}))
}

// onReply runs f on the router's loop.
func (r *Router) onReply(f func(req *ctl.Request) (*ctl.Reply, error)) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		var rep *ctl.Reply
		var err error
		if derr := r.Do(ctx, func() { rep, err = f(req) }); derr != nil {
			return nil, derr
		}
		return rep, err
	}
}

// ksGroupNames are the groups this ikev2d serves as key server (none when
// it is no key server).
func (r *Router) ksGroupNames() []string {
	if r.ks == nil {
		return nil
	}
	return r.ks.srv.Groups()
}

// featureRows are group name's rows of `show crypto gdoi feature ...`:
// ks's table (this KS with its version, any peer KS as announced), where
// every member is a G-IKEv2 member and supports both features. RFC 9838
// has GM removal (a GSA_REKEY with D(GIKE_UPDATE), section 4.4.1) and
// policy replace (a GSA_REKEY with new SAs and the old ones' Delete) in
// the protocol itself, and a G-IKEv2 member announces no groupvpn
// version: its Version reads "unknown", its Feature Supported "Yes".
func (r *Router) featureRows(name string) (kss, gms []ks.FeatureRow) {
	kss, gms = r.ks.srv.Features(name, version.Current)
	for i := range gms {
		gms[i].Supported = true
	}
	return kss, gms
}

func allSupport(kss, gms []ks.FeatureRow) bool {
	for _, row := range append(kss, gms...) {
		if !row.Supported {
			return false
		}
	}
	return true
}

// features renders `show crypto gdoi feature gm-removal|policy-replace`
// with isakmpd's table (show.Features).
func (r *Router) features(req *ctl.Request) (*ctl.Reply, error) {
	var tables []show.FeatureTable
	for _, n := range r.ksGroupNames() {
		kss, gms := r.featureRows(n)
		tables = append(tables, show.FeatureTable{Group: n, KeyServers: kss, Members: gms})
	}
	if len(tables) == 0 {
		return nil, daemon.ErrFeaturesNotKS()
	}
	feature := req.Command[strings.LastIndexByte(req.Command, ' ')+1:] // gm-removal, policy-replace
	text, data := show.Features(feature, r.o.Now(), tables)
	return &ctl.Reply{Text: text, Data: data}, nil
}

func (r *Router) showGDOI() string {
	var b strings.Builder
	now := r.o.Now()
	if r.ks != nil {
		for _, n := range r.ks.srv.Groups() {
			st, err := r.ks.srv.KeysState(n, now)
			if err != nil {
				continue
			}
			fmt.Fprintf(&b, "GROUP INFORMATION (G-IKEv2 key server)\n    Group Name               : %s\n    Group Identity           : %d\n    Group Members            : %d\n    Rekey Sequence Number    : %d\n", st.Name, st.ID, r.ks.srv.MemberCount(n), st.Seq)
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
	fmt.Fprintf(&b, "%-28s %d\n", "plain_request_refused", r.Drops.PlainRefused)
	if r.ks != nil {
		fmt.Fprintf(&b, "Key server\n  %-26s %d\n  %-26s %d\n  %-26s %d\n  %-26s %d\n  %-26s %d\n  %-26s %d\n", "registered", r.ks.Registered, "refused", r.ks.Refused,
			"rekeys_sent", r.ks.Rekeys, "rekeys_resent", r.ks.Resent, "members_left", r.ks.Left, "log_records_suppressed", r.ks.LogSuppressed())
	}
	for _, m := range r.gm {
		fmt.Fprintf(&b, "Group member %s\n", m.g.Name)
		for _, c := range m.m.Stats.Counters() {
			fmt.Fprintf(&b, "  %-26s %d\n", c.Name, c.Value)
		}
	}
	return b.String()
}

// showPlainSAs lists the IKE SAs of ordinary IKEv2 peers in the columns of
// IOS's show crypto ikev2 sa.
func (r *Router) showPlainSAs() string {
	var b strings.Builder
	b.WriteString(" IPv4 Crypto IKEv2  SA\n\n")
	for i, sa := range r.PlainSAs() {
		in := sa.Info()
		fmt.Fprintf(&b, "Tunnel-id Local                 Remote                fvrf/ivrf            Status\n")
		fmt.Fprintf(&b, "%-9d %-21s %-21s %-20s READY\n", i+1, in.Local, in.Peer, "none/none")
		fmt.Fprintf(&b, "      Encr: %s, Auth verify: %s\n", in.Suite, in.AuthMethod)
		fmt.Fprintf(&b, "      Life/Active Time: %d/%d sec\n", int(in.Expires.Sub(in.EstablishedAt).Seconds()), int(r.o.Now().Sub(in.EstablishedAt).Seconds()))
		fmt.Fprintf(&b, "      Local spi: %x  Remote spi: %x  Remote id: %s\n\n", localSPI(in), remoteSPI(in), in.PeerID)
	}
	return b.String()
}

func localSPI(in ikev2.Info) []byte {
	if in.Initiator {
		return in.SPIi[:]
	}
	return in.SPIr[:]
}

func remoteSPI(in ikev2.Info) []byte {
	if in.Initiator {
		return in.SPIr[:]
	}
	return in.SPIi[:]
}
