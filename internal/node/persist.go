package node

import (
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// restore loads the key server's groups from the store (a restart) and
// writes the current state back (a first start). A rekey that was still
// being delivered when the KS stopped is delivered again to the members
// that had not acknowledged it, once the sockets are open (checkServed).
func (n *Node) restore(now time.Time) error {
	res, err := n.delivery.Restore(now)
	if err != nil {
		return err
	}
	n.apply(res)
	return nil
}

// persist writes the states the delivery's periodic save returned; a
// failed write is tried again at the next save.
func (n *Node) persist(states []*ks.GroupState) {
	for _, gs := range states {
		if err := n.o.Store.SaveGroup(gs); err != nil {
			n.log.Error("saving key server state failed", "group", gs.Name, "err", err)
			n.delivery.SaveFailed()
			return
		}
	}
}
