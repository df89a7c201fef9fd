package node

import (
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// SetDPD changes the dead peer detection timer (crypto isakmp keepalive)
// of every endpoint, established SAs included, live: a reload applies it.
// Use inside Do.
func (n *Node) SetDPD(d ike.DPD, now time.Time) {
	n.o.IKE.DPD = d
	for _, s := range n.socks {
		n.process(s, s.ep.DPDChanged(now), now)
	}
}

// DPD is the dead peer detection timer in force; use inside Do.
func (n *Node) DPD() ike.DPD { return n.o.IKE.DPD }
