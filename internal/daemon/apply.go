package daemon

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/version"
)

// Applying a new configuration to the running node (a reload: SIGHUP,
// refresh; a commit: configure terminal ... end).
//
// The node is built once from a configuration (Options, node.New). What it
// can change while running is, exactly:
//
//   - the policy of each key-server group it serves: TEKs, KEK, rekey
//     transport and retransmission, signing key, address, authorization,
//     receive-only, redundancy: added, removed, or its priority, peers
//     and timers changed (ks.Server.UpdatePolicy, atomically for all
//     groups, checked first on a scratch key server; the node starts,
//     stops or reconfigures the group's COOP elector, Node.UpdateKSPolicy);
//   - the fail mode of each group it is a member of and its fail-close
//     ACL (crypto map NAME gdoi fail-close: activate, match address;
//     node.SetFailClose: the data plane's fail mode, and the bootstrap
//     policy of a group that holds no keys yet);
//   - crypto isakmp keepalive (node.SetDPD: every established phase-1 SA
//     re-armed from its last proof of life);
//   - the pre-shared keys (read from the running configuration at each
//     exchange), the hostname, and anything that maps to the same node
//     options (names of ACLs, profiles, interfaces, ...).
//
// Everything else the node was built from cannot change live: the set of
// key-server groups and of member groups (adding, removing, renumbering a
// group, or changing a node's role in it), a member group's key servers,
// and phase 1 (crypto isakmp policy, crypto pki, crypto isakmp identity,
// groupvpn version). plan compares the node options of the running and the
// new configuration and refuses, with every reason, a configuration that
// differs in any of them: the running configuration then stays exactly as
// it was, and so does the node. One check serves every path (reload,
// commit), so what `show running-config` prints is always what runs.

// NotAppliedError refuses a configuration the running node cannot take;
// the running configuration and the node are unchanged.
type NotAppliedError struct {
	// Reasons say what cannot change live, one each.
	Reasons []string
	// Restart is true when the configuration is valid but needs a restart
	// of isakmpd to take effect.
	Restart bool
}

func (e *NotAppliedError) Error() string {
	var b strings.Builder
	if e.Restart {
		b.WriteString("% Not applied: the running node cannot make these changes without a restart, so the running configuration is unchanged:")
	} else {
		b.WriteString("% Not applied: the running configuration is unchanged:")
	}
	for _, r := range e.Reasons {
		b.WriteString("\n%   " + r)
	}
	if e.Restart {
		b.WriteString("\n% To make them, edit the configuration file and restart isakmpd (stopsrc -s isakmpd; startsrc -g ike)")
	}
	return b.String()
}

// livePlan is how a new configuration reaches the running node.
type livePlan struct {
	ks, oldKS []ks.GroupConfig // every key-server group, new and running (for a rollback)
	failClose []node.GMGroup   // member groups whose fail mode or fail-close ACL changes
	dpd       *ike.DPD         // crypto isakmp keepalive, when it changes
}

// plan checks that the running node can take new (running old) and says
// how. It changes nothing; a panic is a refusal.
func (d *Daemon) plan(old, new *policy.Config) (p *livePlan, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, &NotAppliedError{Reasons: []string{fmt.Sprintf("internal error while checking the configuration: %v (please report this)", r)}}
		}
	}()
	var reasons []string
	reasons = append(reasons, roleChanges(old, new)...)
	oo, err := Options(old, d.listen, d.port)
	if err != nil {
		// The running configuration was applied, so this cannot happen.
		return nil, &NotAppliedError{Reasons: []string{"the running configuration no longer maps to the node: " + err.Error()}}
	}
	no, err := Options(new, d.listen, d.port)
	if err != nil {
		return nil, &NotAppliedError{Reasons: append(reasons, "the configuration cannot run: "+err.Error()), Restart: false}
	}
	reasons = append(reasons, phase1Changes(oo.IKE, no.IKE)...)
	reasons = append(reasons, ksChanges(oo.KS, no.KS)...)
	fc, gm := gmChanges(oo.GM, no.GM)
	reasons = append(reasons, gm...)
	if len(reasons) > 0 {
		return nil, &NotAppliedError{Reasons: reasons, Restart: true}
	}
	// Every key-server group must be acceptable to a key server: try the
	// new policy on a scratch one, so that applying it cannot fail half way.
	scratch := ks.New(ks.Options{})
	now := time.Now()
	if d.Node != nil {
		now = d.Node.Now()
	}
	for _, g := range no.KS {
		if err := scratch.AddGroup(g, now); err != nil {
			return nil, &NotAppliedError{Reasons: []string{fmt.Sprintf("crypto gdoi group %s: the key server refuses its policy: %v", g.Name, err)}}
		}
	}
	p = &livePlan{ks: no.KS, oldKS: oo.KS, failClose: fc}
	if oo.IKE.DPD != no.IKE.DPD {
		p.dpd = &no.IKE.DPD
	}
	return p, nil
}

// roleChanges lists the groups a node would start or stop serving, as key
// server or member.
func roleChanges(old, new *policy.Config) []string {
	var out []string
	diff := func(role string, o, n []*policy.Group) {
		for _, g := range n {
			if !slices.ContainsFunc(o, func(x *policy.Group) bool { return x.Name == g.Name }) {
				out = append(out, fmt.Sprintf("crypto gdoi group %s: %s would be added", g.Name, role))
			}
		}
		for _, g := range o {
			if !slices.ContainsFunc(n, func(x *policy.Group) bool { return x.Name == g.Name }) {
				out = append(out, fmt.Sprintf("crypto gdoi group %s: %s would be removed (the node serves it)", g.Name, role))
			}
		}
	}
	diff("key-server group (server local)", old.KSGroups(), new.KSGroups())
	diff("member group (applied by a crypto map on an interface)", old.GMGroups(), new.GMGroups())
	return out
}

// phase1Changes lists what differs in phase 1, which the endpoints hold
// from their start. The pre-shared keys are not compared: they are read
// from the running configuration at each exchange.
func phase1Changes(o, n *ike.Config) []string {
	var out []string
	if !reflect.DeepEqual(o.Suites, n.Suites) {
		out = append(out, "crypto isakmp policy: the phase-1 proposals would change")
	}
	if !slices.EqualFunc(o.Creds.Chain, n.Creds.Chain, bytes.Equal) {
		out = append(out, "crypto pki certificate: the certificate chain would change")
	}
	if !sameSigner(o.Creds.Key, n.Creds.Key) {
		out = append(out, "crypto pki key: the phase-1 private key would change")
	}
	if (o.Creds.Roots == nil) != (n.Creds.Roots == nil) || (o.Creds.Roots != nil && !o.Creds.Roots.Equal(n.Creds.Roots)) {
		out = append(out, "crypto pki ca: the trusted CAs would change")
	}
	if !reflect.DeepEqual(o.LocalID, n.LocalID) || o.Identity != n.Identity {
		out = append(out, "crypto isakmp identity: the phase-1 identity would change")
	} else if o.Hostname != n.Hostname {
		out = append(out, fmt.Sprintf("hostname: the phase-1 identity (crypto isakmp identity hostname) would change (%s -> %s)", o.Hostname, n.Hostname))
	}
	if o.Version != n.Version {
		out = append(out, fmt.Sprintf("groupvpn version: the announced version would change (%s -> %s)", o.Version, n.Version))
	}
	// Whatever else phase 1 gains later is compared too.
	x, y := *o, *n
	for _, c := range []*ike.Config{&x, &y} {
		c.Suites, c.Creds, c.LocalID, c.Identity, c.Hostname, c.Version, c.Rand, c.Logger = nil, ike.Credentials{}, nil, 0, "", version.Version{}, nil, nil
		c.DPD = ike.DPD{} // crypto isakmp keepalive: applied live (livePlan.dpd)
	}
	if len(out) == 0 && !reflect.DeepEqual(x, y) {
		out = append(out, "phase-1 settings would change")
	}
	return out
}

func sameSigner(a, b crypto.Signer) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	pub, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(b.Public())
}

// ksChanges lists key-server groups renumbered (identity number); groups
// added or removed are roleChanges'.
func ksChanges(o, n []ks.GroupConfig) []string {
	var out []string
	for _, g := range n {
		i := slices.IndexFunc(o, func(x ks.GroupConfig) bool { return x.Name == g.Name })
		if i >= 0 && o[i].ID != g.ID {
			out = append(out, fmt.Sprintf("crypto gdoi group %s: identity number %d -> %d (the key server serves it as %d)", g.Name, o[i].ID, g.ID, o[i].ID))
		}
	}
	return out
}

// gmChanges lists member groups whose identity or key servers change, and
// returns the groups whose fail mode or fail-close ACL changes (applied
// live).
func gmChanges(o, n []node.GMGroup) ([]node.GMGroup, []string) {
	var out []string
	var fc []node.GMGroup
	for _, g := range n {
		i := slices.IndexFunc(o, func(x node.GMGroup) bool { return x.Name == g.Name })
		if i < 0 {
			continue // roleChanges
		}
		og := o[i]
		if og.ID != g.ID {
			out = append(out, fmt.Sprintf("crypto gdoi group %s: identity number %d -> %d (the member is registered as %d)", g.Name, og.ID, g.ID, og.ID))
		}
		if !slices.Equal(og.Servers, g.Servers) {
			out = append(out, fmt.Sprintf("crypto gdoi group %s: server address ipv4 would change (the member registers with %s)", g.Name, addrs(og.Servers)))
		}
		if og.SIDs != g.SIDs {
			out = append(out, fmt.Sprintf("crypto gdoi group %s: sender IDs would change", g.Name))
		}
		if og.FailClose != g.FailClose || !slices.Equal(og.FailCloseBypass, g.FailCloseBypass) {
			fc = append(fc, g)
		}
	}
	return fc, out
}

func addrs[T fmt.Stringer](xs []T) string {
	var s []string
	for _, x := range xs {
		s = append(s, x.String())
	}
	return strings.Join(s, " ")
}

// applyPlan makes the node run p: every key-server group's policy, then the
// fail modes. On the node's goroutine; a failure or a panic rolls the
// key-server groups back and is returned.
func (d *Daemon) applyPlan(p *livePlan) error {
	var err error
	derr := d.Node.Do(context.Background(), func() {
		var done []ks.GroupConfig
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error while applying the configuration: %v (please report this)", r)
			}
			if err != nil {
				for _, g := range done {
					if o := slices.IndexFunc(p.oldKS, func(x ks.GroupConfig) bool { return x.Name == g.Name }); o >= 0 {
						if rerr := d.Node.UpdateKSPolicy(p.oldKS[o]); rerr != nil {
							d.log.Error("group policy not rolled back", "group", g.Name, "err", rerr.Error())
						}
					}
				}
			}
		}()
		for _, g := range p.ks {
			if err = d.Node.UpdateKSPolicy(g); err != nil {
				err = fmt.Errorf("crypto gdoi group %s: %w", g.Name, err)
				return
			}
			done = append(done, g)
		}
		for _, g := range p.failClose {
			d.Node.SetFailClose(g.Name, g.FailClose, g.FailCloseBypass)
		}
		if p.dpd != nil {
			d.Node.SetDPD(*p.dpd, d.Node.Now())
		}
	})
	if derr != nil {
		return derr
	}
	if err != nil {
		return &NotAppliedError{Reasons: []string{err.Error()}}
	}
	return nil
}

// apply makes new the running configuration if the node can take it
// (plan, applyPlan) and returns the configuration it replaced; otherwise it
// changes nothing and returns the reason. The caller holds cm.mu and runs
// the commit hook.
func (d *Daemon) apply(new *policy.Config) (*policy.Config, error) {
	old := d.Config()
	p, err := d.plan(old, new)
	if err != nil {
		return nil, err
	}
	logs, err := d.prepareLogging(new) // logging.go
	if err != nil {
		return nil, err
	}
	if err := d.applyPlan(p); err != nil {
		if logs != nil {
			logs.Discard()
		}
		return nil, err
	}
	if logs != nil {
		if err := logs.Commit(); err != nil {
			d.log.Warn("logging: a destination no longer configured did not close cleanly", "err", err.Error())
		}
	}
	d.swapConfig(new)
	return old, nil
}

// runHook runs the commit hook; a panic in it is logged (the configuration
// is applied by then).
func (d *Daemon) runHook(old, new *policy.Config) {
	hook := d.configMode().hook
	if hook == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("commit hook panicked; the configuration is applied", "panic", fmt.Sprint(r))
		}
	}()
	hook(old, new)
}
