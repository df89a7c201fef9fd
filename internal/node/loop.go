package node

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The loop's inputs. Datagrams come from a reader goroutine per socket
// (read) through n.in, except for a node with one socket of its own and
// nothing else to read (a key server on one address: directSock): the
// loop then reads that socket itself, with a deadline at its next timer,
// and other goroutines wake it by moving the deadline into the past
// (wake). A reader handing each batch to the loop cost a thread wake-up
// per batch on top of the socket's: with GOMAXPROCS=1 (one thread for
// both) the KS's CPU per registration was 15-20% lower (issue 18).
// Functions other goroutines run on the loop (Do, lookupSource) wait in
// the inbox either way.

// command is a function queued for the loop.
type command struct {
	f     func()
	taken bool // by the loop (under inboxMu)
}

// post queues c for the loop and wakes it.
func (n *Node) post(c *command) {
	n.inboxMu.Lock()
	n.inbox = append(n.inbox, c)
	n.inboxMu.Unlock()
	n.wake()
}

// withdraw takes c back unless the loop took it; it reports whether it
// did.
func (n *Node) withdraw(c *command) bool {
	n.inboxMu.Lock()
	defer n.inboxMu.Unlock()
	if c.taken {
		return false
	}
	if i := slices.Index(n.inbox, c); i >= 0 {
		n.inbox = slices.Delete(n.inbox, i, i+1)
	}
	return true
}

// wake interrupts the loop's wait: its select, or its read of the direct
// socket.
func (n *Node) wake() {
	select {
	case n.wakeCh <- struct{}{}:
	default:
	}
	if c := n.directConn.Load(); c != nil {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}

// runInbox runs what other goroutines queued; it reports whether there
// was anything.
func (n *Node) runInbox() bool {
	n.inboxMu.Lock()
	q := n.inbox
	n.inbox = nil
	for _, c := range q {
		c.taken = true
	}
	n.inboxMu.Unlock()
	for _, c := range q {
		c.f()
	}
	return len(q) > 0
}

// directSock is the socket the loop can read itself: the node's only one,
// batching, with no registration of a GM (whose multicast sockets have
// readers of their own); nil otherwise.
func (n *Node) directSock() *sock {
	if len(n.socks) != 1 || len(n.mcastSocks) > 0 || len(n.regs) > 0 {
		return nil
	}
	s := n.socks[0]
	if _, ok := s.conn.(*net.UDPConn); !ok || s.batch == nil || s.closed {
		return nil
	}
	return s
}

// directValid reports whether the direct socket is still the node's only
// one (Refresh may have opened others, with readers, or closed it).
func (n *Node) directValid() bool {
	return n.directSock() == n.direct
}

// leaveDirect hands the direct socket to a reader goroutine, if it is
// still open, and has the loop wait in its select from now on.
func (n *Node) leaveDirect() {
	s := n.direct
	n.direct = nil
	n.directConn.Store(nil)
	s.conn.(*net.UDPConn).SetReadDeadline(time.Time{})
	if !s.closed && slices.Contains(n.socks, s) {
		go n.read(s)
	}
	n.wake() // anything posted meanwhile woke the socket, not the select
}

// readDirect waits for the direct socket's datagrams until next (zero:
// an hour) or a wake, and handles what one recvmmsg returned; commands
// queued meanwhile run first. It returns ctx's error once ctx ends.
func (n *Node) readDirect(ctx context.Context, r *directReader, next time.Time) error {
	s := n.direct
	conn := s.conn.(*net.UDPConn)
	if next.IsZero() {
		next = n.o.Now().Add(time.Hour)
	}
	// The deadline first, then the inbox: a post after this look moves
	// the deadline after ours. With a timer already due, no deadline and
	// a read that does not wait (MSG_DONTWAIT): a read whose deadline has
	// passed fails before it looks at the socket, so a timer left in the
	// past (a role's bug) would make the KS deaf, not just busy.
	flags := 0
	if wait := next.Sub(n.o.Now()); wait > 0 {
		conn.SetReadDeadline(time.Now().Add(wait))
	} else {
		conn.SetReadDeadline(time.Time{})
		flags = unix.MSG_DONTWAIT
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.runInbox() {
		return nil
	}
	select {
	case <-n.wakeCh: // the inbox is empty: a stale wake
	default:
	}
	n.endTurn()
	k, err := r.read(conn, flags)
	n.beginTurn()
	if err != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, unix.EAGAIN) {
			n.leaveDirect() // the socket failed or was closed: as read, no more from it
		}
		return nil
	}
	s.io.readCalls.Add(1)
	s.io.readDatagrams.Add(uint64(k))
	for i := range k {
		from, data, ok := r.datagram(i)
		if !ok {
			continue // as readBatches
		}
		n.datagram(datagram{sock: s, from: from, data: data}) // the read's buffer: see datagram
	}
	return nil
}
