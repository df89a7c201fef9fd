package node

import (
	"net/netip"
	"time"

	"github.com/groupvpn/groupvpn/internal/gm"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// onPush routes a GROUPKEY-PUSH to the member holding the KEK its cookies
// name (RFC 6407 §4.4); the member (gm.Member.Push) decides the rest.
func (n *Node) onPush(s *sock, from netip.AddrPort, data []byte, now time.Time) {
	spi, ok := gm.PushSPI(data)
	if !ok {
		n.stats.pushMalformed++
		return
	}
	for _, r := range n.regs {
		if !r.m.HoldsKEK(spi) {
			continue
		}
		var local netip.Addr
		if r.sock != nil {
			local = r.sock.local.Addr()
		}
		n.execute(r, r.m.Push(gm.Push{From: from, To: s.local, Data: data, Local: local}, now), now)
		return
	}
	n.stats.pushUnknownKEK++
}

func (n *Node) version() version.Version { return n.o.IKE.Version.OrCurrent() }

// behavesOld: a node announcing a version before GM removal and policy
// replace also behaves like one (SPEC V1).
func (n *Node) behavesOld() bool { return n.version().Less(ks.FeatureVersion) }
