package node

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Refresh makes the node listen on exactly listen (SPEC D4): a socket, with
// its own IKEv1 endpoint and reader, is opened for each address not served
// yet, and the sockets of addresses no longer listed are closed (their
// readers end on the read error). The phase-1 SAs of the sockets that stay,
// the GM registrations and the key-server state are untouched; the phase-1
// SAs of a closed socket go with it. Use it inside Do.
//
// An address that cannot be bound is reported in err and skipped; the other
// changes are made. A list that would leave no socket is refused whole.
func (n *Node) Refresh(listen []netip.AddrPort) (added, removed []netip.AddrPort, err error) {
	if len(listen) == 0 {
		return nil, nil, errors.New("node: no address to listen on")
	}
	served := func(a netip.AddrPort, s *sock) bool {
		return a.Addr().Unmap() == s.local.Addr().Unmap() && (a.Port() == s.local.Port() || a.Port() == 0)
	}
	var keep, gone []*sock
	for _, s := range n.socks {
		if slices.ContainsFunc(listen, func(a netip.AddrPort) bool { return served(a, s) }) {
			keep = append(keep, s)
		} else {
			gone = append(gone, s)
		}
	}
	var opened []*sock
	var errs []error
	for _, a := range listen {
		if slices.ContainsFunc(keep, func(s *sock) bool { return served(a, s) }) ||
			slices.ContainsFunc(opened, func(s *sock) bool { return served(a, s) }) {
			continue
		}
		s, err := n.open(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		opened = append(opened, s)
	}
	if len(keep)+len(opened) == 0 {
		for _, s := range opened {
			s.conn.Close()
		}
		errs = append(errs, fmt.Errorf("node: refresh would leave no address to listen on; still serving %v", n.Addrs()))
		return nil, nil, errors.Join(errs...)
	}
	n.socks = append(keep, opened...)
	for _, s := range opened {
		added = append(added, s.local)
		if n.stopped != nil {
			go n.read(s)
		}
	}
	for _, s := range gone {
		n.flushSock(s) // what this turn sent on it still leaves
		s.closed = true
		n.retiredDrops += kernelDrops(s.conn) // before the socket is gone
		s.conn.Close()
		n.retired = mergeCounters(n.retired, s.ep.Stats.Counters())
		n.retiredLog += s.ep.LogSuppressed()
		removed = append(removed, s.local)
		n.forget(s)
	}
	n.checkServed() // deliveries from a closed socket move, or pause
	return added, removed, errors.Join(errs...)
}

// forget drops what refers to a closed socket: the GROUPKEY-PULL
// exchanges served on its phase-1 SAs, a registration in progress through
// it (it starts again, picking a socket anew), and rekey deliveries leaving
// from it (they go on from another socket).
func (n *Node) forget(s *sock) {
	now := n.o.Now()
	sas := s.ep.SAs()
	for _, sa := range sas {
		n.serves.dropSA(sa)
		delete(n.suspects, sa)
	}
	for _, r := range n.regs {
		if r.sock != s {
			continue
		}
		// A registration in progress through it fails over (and picks a
		// socket anew); a registered or idle one keeps its keys and runs a
		// new phase 1 next time, from the socket the routing picks now.
		n.execute(r, r.m.LocalGone(s.local.Addr(), now), now)
		if r.sock == s {
			// Meanwhile the first socket of the family (never the closed
			// one); then the one the routing picks, looked up off the loop.
			fallback := n.sockFrom(netip.Addr{}, errNotLooked, r.m.KS())
			r.sock = fallback
			n.lookupSource(r.m.KS(), func(ns *sock) {
				if r.sock == fallback {
					r.sock = ns
				}
			})
		}
	}
}
