package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// The operator's prompts and messages of GM removal and policy replace
// (the seed, SPEC R1, R4, R5). They are interface: keep them byte for byte.
const (
	promptRemoval    = "% This GM-Removal message will shorten all GMs' key lifetimes and cause them to re-register before keys expiry.\nAre you sure you want to proceed ? [yes/no]: "
	promptRemovalNow = "% This GM-Removal immediate message will cleanup all GMs downloaded policies\n% This will cause all GMs to re-register.\nAre you sure you want to proceed ? [yes/no]: "
	warnRemoval      = "WARNING for group %s: some devices cannot support GM-REMOVAL and can cause network disruption. Please check 'show crypto gdoi feature'.\nAre you sure you want to proceed ? [yes/no]: "
)

// registerGDOI adds the GM-removal, policy-replace and version commands.
func registerGDOI(srv *ctl.Server, d *Daemon) {
	n := d.Node
	srv.HandleReadOnly("show crypto gdoi feature gm-removal", "which devices support GM removal (versions)", d.features)
	srv.HandleReadOnly("show crypto gdoi feature policy-replace", "which devices support policy replace (versions)", d.features)
	srv.HandleReadOnly("show crypto gdoi ks policy", "the running group policy and the changes not yet sent to the GMs", ksOnly(n, d.ksPolicy))
	srv.Handle("clear crypto gdoi [group WORD] ks members [now]", "remove every GM from the group: new keys, GMs re-register",
		func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			groups, err := d.ksGroups(ctx, req)
			if err != nil {
				return nil, err
			}
			now := req.Has("now")
			// Every question first, then the removals: ctl runs the
			// handler again from the start after each answer, so a
			// group removed between two questions would be removed
			// again on every later answer. A "no" ends the questions;
			// the groups answered yes before it are removed.
			var yes []string
			for _, g := range groups {
				info, err := n.KSGroup(ctx, g)
				if err != nil {
					return nil, err
				}
				if info.RemovalRefused != nil {
					return nil, info.RemovalRefused
				}
				// AllSupport: the COOP peers' versions included (ks.Server.Features)
				ok, err := ConfirmRemoval(req, g, now, info.AllSupport)
				if err != nil {
					return nil, err // a question (or a failure): nothing removed yet
				}
				if !ok {
					break
				}
				yes = append(yes, g)
			}
			var out []string
			for _, g := range yes {
				if _, serr := n.RemoveMembers(ctx, g, now); serr != nil {
					return &ctl.Reply{Text: strings.Join(out, "")}, serr
				}
				out = append(out, RemovalSent(g))
			}
			return &ctl.Reply{Text: strings.Join(out, "")}, nil
		})
	srv.Handle("crypto gdoi ks [group WORD] rekey [replace-now]", "send a rekey built from the running policy (policy replace)",
		func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			groups, err := d.ksGroups(ctx, req)
			if err != nil {
				return nil, err
			}
			var out []string
			for _, g := range groups {
				if _, rerr := n.ReplaceRekey(ctx, g, req.Has("replace-now")); rerr != nil {
					return nil, rerr
				}
				d.rekeySent()
				out = append(out, ReplaceSent(g))
			}
			return &ctl.Reply{Text: strings.Join(out, "")}, nil
		})
}

// ksGroups resolves [group NAME] to the groups a command acts on.
func (d *Daemon) ksGroups(ctx context.Context, req *ctl.Request) ([]string, error) {
	var groups []string
	d.Node.Do(ctx, func() { groups = d.Node.KSGroups() })
	return SelectKSGroups(groups, req)
}

// features renders the seed's version table (SPEC V4): the same for both
// features, which arrived together with 1.0.2.
func (d *Daemon) features(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
	n := d.Node
	var tables []show.FeatureTable
	for _, g := range n.KSGroups() {
		info, err := n.KSGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		tables = append(tables, show.FeatureTable{Group: g, KeyServers: info.KeyServers, Members: info.Members})
	}
	if len(tables) == 0 {
		return nil, ErrFeaturesNotKS()
	}
	feature := req.Command[strings.LastIndexByte(req.Command, ' ')+1:] // gm-removal, policy-replace
	text, data := show.Features(feature, n.Now(), tables)
	return &ctl.Reply{Text: text, Data: data}, nil
}

// ksPolicy renders `show crypto gdoi ks policy`: the running policy per
// group and the committed changes that have not reached the GMs (SPEC P7).
func (d *Daemon) ksPolicy(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
	d.mu.Lock()
	base, run := d.baseline, d.config
	d.mu.Unlock()
	changes := policy.Diff(base, run)
	var b strings.Builder
	for _, g := range run.KSGroups() {
		s := g.Server
		fmt.Fprintf(&b, "Key Server Policy:\nFor group %s (identity %d):\n", g.Name, g.Identity)
		fmt.Fprintf(&b, "    KEK: AES-CBC %d, lifetime %d s, rekey %s\n", s.RekeyKeyBits, int(s.RekeyLifetime/time.Second), s.Mode())
		for _, sa := range s.SAs {
			ts := ""
			if sa.Profile != nil && len(sa.Profile.TransformSets) > 0 {
				ts = strings.Join(sa.Profile.TransformSets[0].Transforms(), " ")
			}
			fmt.Fprintf(&b, "    TEK sa ipsec %d: profile %s (%s), lifetime %d s, match address ipv4 %s, replay %s %d\n",
				sa.Seq, sa.ProfileName, ts, int(profileLifetime(sa)/time.Second), sa.MatchACLName, sa.Replay, sa.ReplayWindow)
		}
		b.WriteString("\n")
	}
	b.WriteString("Pending policy changes (not yet sent to the group members):\n")
	b.WriteString(policy.FormatChanges(changes))
	return &ctl.Reply{Text: b.String(), Data: show.KSPolicyView(d.Node.Now(), run, changes)}, nil
}

func profileLifetime(sa *policy.SAIPsec) time.Duration {
	if sa.Profile == nil {
		return 0
	}
	return sa.Profile.Lifetime
}

// ApplyConfig is the default commit hook: after a committed configuration
// (configure terminal, or a reload: SetConfig) has become the running one
// and the node runs it (apply.go: the KS groups' new policy is installed
// without sending anything, SPEC P1), the primary KS logs POLICY_CHANGE for
// each group whose policy changed.
func (d *Daemon) ApplyConfig(old, new *policy.Config) {
	changed := map[string]bool{}
	for _, c := range policy.Diff(old, new) {
		changed[c.Group] = true
	}
	for _, g := range new.KSGroups() {
		if !changed[g.Name] {
			continue
		}
		if info, err := d.Node.KSGroup(context.Background(), g.Name); err == nil && info.Primary {
			syslog.Log(d.log, syslog.Notice, "POLICY_CHANGE", "GDOI group %s policy has changed. Use 'crypto gdoi ks rekey' to send a rekey, or the changes will be send in the next scheduled rekey", g.Name)
		}
	}
}

// rekeySent marks the running policy as the one the GMs have.
func (d *Daemon) rekeySent() {
	d.mu.Lock()
	d.baseline = d.config
	d.mu.Unlock()
}
