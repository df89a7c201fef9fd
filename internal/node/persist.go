package node

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// Bounds on a stored in-flight rekey (the record is integrity-checked, but
// a restart must not trust it with unbounded work).
const (
	maxStoredPush    = 64 << 10
	maxStoredPending = 1 << 20
)

// restore loads the key server's groups from the store (a restart) and
// writes the current state back (a first start). A rekey that was still
// being delivered when the KS stopped is delivered again to the members
// that had not acknowledged it, once the sockets are open (checkServed).
func (n *Node) restore(now time.Time) error {
	st := n.o.Store
	if st == nil {
		return nil
	}
	stored, err := st.LoadGroups()
	if err != nil {
		return err
	}
	n.ks.SetNow(now)
	for _, g := range stored {
		if err := n.ks.Restore(g, now); err != nil {
			n.log.Warn("stored state not restored", "group", g.Name, "err", err)
			continue
		}
		n.log.Info("key server state restored", "group", g.Name, "seq", g.SeqReserved, "members", len(g.Members))
		if d := n.resumed(g, now); d != nil {
			n.deliveries = append(n.deliveries, d)
			syslog.Log(n.log, syslog.Notice, "KS_REKEY_RESUMED", "Resending rekey with seq # %d for group %s to %d members that had not acknowledged it before the restart",
				d.push.Seq, g.Name, len(d.queue))
		}
	}
	return n.save()
}

// resumed is the paused delivery of g's interrupted rekey, or nil: none
// was in flight, a newer rekey was built since, or the record is out of
// bounds.
func (n *Node) resumed(g *store.GroupState, now time.Time) *delivery {
	f := g.InFlight
	if f == nil || f.Seq != g.Seq || len(f.Data) == 0 || len(f.Data) > maxStoredPush || len(f.OldData) > maxStoredPush ||
		len(f.Pending)+len(f.PendingOld) > maxStoredPending || len(f.Pending)+len(f.PendingOld) == 0 {
		return nil
	}
	p := &ks.Push{Group: g.Name, Seq: f.Seq, Data: f.Data, OldData: f.OldData, KEK: gdoi.KEK{SPI: f.KEKSPI, Key: f.KEKKey},
		Policy: n.ks.RekeyPolicy(g.Name), Removal: f.Removal, NewKEK: f.NewKEK, Members: f.Pending, OldMembers: f.PendingOld}
	d := &delivery{push: p, pending: map[netip.Addr]*target{}, old: map[netip.AddrPort]bool{}, sent: f.Sent}
	d.queue = append(d.queue, f.Pending...)
	for _, m := range f.PendingOld {
		if len(f.OldData) == 0 {
			continue
		}
		d.queue = append(d.queue, m)
		d.old[m] = true
	}
	return d // sock nil: paused until checkServed finds its socket
}

// groupState is the group's state to store: the KS's, with the newest
// unicast rekey still unacknowledged by some members (d, or the newest
// delivery in flight when d is nil).
func (n *Node) groupState(name string, d *delivery) (*store.GroupState, error) {
	gs, err := n.ks.State(name)
	if err != nil {
		return nil, err
	}
	if d == nil {
		for _, x := range n.deliveries {
			if x.push.Group == name && (d == nil || x.push.Seq > d.push.Seq) {
				d = x
			}
		}
	}
	if d == nil || d.multicast || len(d.queue)+len(d.pending) == 0 {
		return gs, nil
	}
	f := &store.PushState{Seq: d.push.Seq, KEKSPI: d.push.KEK.SPI, KEKKey: d.push.KEK.Key, Data: d.push.Data, OldData: d.push.OldData,
		Removal: d.push.Removal, NewKEK: d.push.NewKEK, Sent: d.sent}
	add := func(to netip.AddrPort) {
		if d.old[to] {
			f.PendingOld = append(f.PendingOld, to)
		} else {
			f.Pending = append(f.Pending, to)
		}
	}
	for _, to := range d.queue {
		add(to)
	}
	for _, t := range d.pending {
		add(t.to)
	}
	gs.InFlight = f
	return gs, nil
}

// save writes every group's state.
func (n *Node) save() error {
	for _, name := range n.ks.Groups() {
		gs, err := n.groupState(name, nil)
		if err == nil {
			err = n.o.Store.SaveGroup(gs)
		}
		if err != nil {
			n.log.Error("saving key server state failed", "group", name, "err", err)
			return fmt.Errorf("node: saving group %s: %w", name, err)
		}
	}
	n.flightDirty = false // a failed save is tried again
	return nil
}
