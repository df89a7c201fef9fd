package node

import (
	"context"
	"errors"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// The node's API to other goroutines (the control socket, the daemon,
// benchmarks): each method runs on the node's goroutine through Do and
// returns what it produced. Methods documented "use inside Do" are for
// functions already running there.

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = errors.New("node: stopped")

// call runs f on the node's goroutine and returns its result.
func call[T any](ctx context.Context, n *Node, f func() (T, error)) (T, error) {
	var v T
	var err error
	if derr := n.Do(ctx, func() { v, err = f() }); derr != nil {
		return v, derr
	}
	return v, err
}

// Rekey builds and sends the group's next rekey now, as the schedule
// would (SPEC T1).
func (n *Node) Rekey(ctx context.Context, group string) error {
	_, err := call(ctx, n, func() (struct{}, error) { return struct{}{}, n.sendRekey(group, n.o.Now()) })
	return err
}

// ReplaceRekey is `crypto gdoi ks [group NAME] rekey [replace-now]`: the
// policy-replace rekey (SPEC P2-P6).
func (n *Node) ReplaceRekey(ctx context.Context, group string, replaceNow bool) (*ks.Push, error) {
	return call(ctx, n, func() (*ks.Push, error) { return n.sendReplaceRekey(group, replaceNow, n.o.Now()) })
}

// RemoveMembers is `clear crypto gdoi [group NAME] ks members [now]`
// (SPEC R1-R4).
func (n *Node) RemoveMembers(ctx context.Context, group string, removeNow bool) (*ks.Push, error) {
	return call(ctx, n, func() (*ks.Push, error) { return n.sendRemoval(group, removeNow, n.o.Now()) })
}

// RekeysInFlight is the number of rekeys still being delivered.
func (n *Node) RekeysInFlight(ctx context.Context) (int, error) {
	return call(ctx, n, func() (int, error) {
		if n.delivery == nil {
			return 0, nil
		}
		return n.delivery.InFlight(), nil
	})
}

// KSGroupInfo is what the operator's KS commands check before they act.
type KSGroupInfo struct {
	Primary bool // this KS is the group's primary
	// RemovalRefused is why a GM removal would be refused (a secondary
	// KS, an unknown group); nil: allowed.
	RemovalRefused error
	// KeyServers and Members list the devices with their versions and
	// whether they support GM removal and policy replace (SPEC V4);
	// AllSupport: every one does.
	KeyServers, Members []ks.FeatureRow
	AllSupport          bool
}

// KSGroup describes a KS group for the operator's commands.
func (n *Node) KSGroup(ctx context.Context, group string) (KSGroupInfo, error) {
	return call(ctx, n, func() (KSGroupInfo, error) {
		if n.ks == nil {
			return KSGroupInfo{}, errNotKS
		}
		v := n.version()
		i := KSGroupInfo{Primary: n.ks.Primary(group), RemovalRefused: n.ks.CheckPrimaryRemoval(group), AllSupport: n.ks.AllSupport(group, v)}
		i.KeyServers, i.Members = n.ks.Features(group, v)
		return i, nil
	})
}

// UpdateKSPolicy replaces a KS group's configured policy (a committed
// configuration change); nothing is sent (SPEC P1). Use inside Do (the
// daemon applies a configuration as one step on the node's goroutine).
//
// A changed `redundancy` is applied too (SPEC C1): peers added or removed,
// priority and timers changed on the running election; redundancy added
// starts COOP for the group, removed makes this KS its lone primary.
func (n *Node) UpdateKSPolicy(g ks.GroupConfig) error {
	if n.ks == nil {
		return errNotKS
	}
	// Redundancy is checked first: a reload that cannot be applied
	// changes nothing.
	if err := n.checkCoop(g); err != nil {
		return err
	}
	if err := n.ks.UpdatePolicy(g); err != nil {
		return err
	}
	return n.updateCoop(g, n.o.Now())
}
