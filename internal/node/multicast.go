package node

import (
	"net/netip"

	"github.com/groupvpn/groupvpn/internal/mcast"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// joinRekeyGroup makes a GM receive its group's multicast rekeys: a socket
// bound to the group address on the interface of the address it registered
// from (SPEC T1: "GMs join the group"). Its datagrams are routed like any
// other; only GROUPKEY-PUSH messages are accepted from it.
func (n *Node) joinRekeyGroup(r *registration, k *sadb.KEK) {
	if k == nil || !k.Multicast.IsValid() || r.sock == nil || n.joined[k.Multicast] {
		return
	}
	ifName := r.sock.ifName // looked up when the socket was opened, not on the loop
	conn, err := mcast.Listen(k.Multicast, ifName)
	if err != nil {
		n.log.Warn("cannot join the multicast rekey group; rekeys will be missed and the GM re-registers instead",
			"group", r.cfg.Name, "address", k.Multicast.String(), "interface", ifName, "err", err)
		return
	}
	growReadBuffer(conn)
	s := &sock{conn: conn, local: k.Multicast}
	if n.joined == nil {
		n.joined = map[netip.AddrPort]bool{}
	}
	n.joined[k.Multicast] = true
	n.mcastSocks = append(n.mcastSocks, s)
	go n.read(s)
	n.log.Info("joined the multicast rekey group", "group", r.cfg.Name, "address", k.Multicast.String(), "interface", ifName)
}
