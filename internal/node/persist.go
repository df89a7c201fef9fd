package node

import (
	"fmt"
	"time"
)

// restore loads the key server's groups from the store (a restart) and
// writes the current state back (a first start).
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
	}
	return n.save()
}

// save writes every group's state.
func (n *Node) save() error {
	for _, name := range n.ks.Groups() {
		gs, err := n.ks.State(name)
		if err == nil {
			err = n.o.Store.SaveGroup(gs)
		}
		if err != nil {
			n.log.Error("saving key server state failed", "group", name, "err", err)
			return fmt.Errorf("node: saving group %s: %w", name, err)
		}
	}
	return nil
}
