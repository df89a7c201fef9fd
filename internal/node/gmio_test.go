package node

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// ackGate is a GM's socket on a network that loses its rekey ACKs while
// drop is set: a member whose ACKs never reach the KS, faked at the I/O
// boundary (the member itself still decides to acknowledge and counts it).
type ackGate struct {
	PacketConn
	drop atomic.Bool
}

func (c *ackGate) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.drop.Load() && len(b) >= isakmp.HeaderLen && isakmp.ExchangeType(b[18]) == isakmp.ExchangePushAck {
		return len(b), nil // lost on the way
	}
	return c.PacketConn.WriteToUDPAddrPort(b, to)
}

// gateAcks puts n's sockets behind ackGates; call it before Run (start
// does for every GM).
func gateAcks(n *Node) {
	for _, s := range n.socks {
		s.conn = &ackGate{PacketConn: s.conn}
		s.batch = nil // every datagram through the gate (batch.go)
	}
}

// dropAcks makes the network lose (on) or deliver (off) n's rekey ACKs.
func dropAcks(t *testing.T, n *Node, on bool) {
	t.Helper()
	gated := false
	n.Do(context.Background(), func() {
		for _, s := range n.socks {
			if g, ok := s.conn.(*ackGate); ok {
				g.drop.Store(on)
				gated = true
			}
		}
	})
	if !gated {
		t.Fatal("the node's sockets are not gated (start gates a GM's)")
	}
}

// settle waits until n has handled every datagram sent to it before the
// call: it sends n a datagram that is not ISAKMP and waits for n to count
// it (malformed). Loopback delivers in order into n's socket, so what was
// sent earlier has been handled by then; a test asserting that nothing
// more arrived needs no sleep.
func settle(t *testing.T, n *Node) {
	t.Helper()
	var before uint64
	n.Do(context.Background(), func() { before = counter(n.ISAKMPCounters(), "malformed") })
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(n.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("settle")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node to settle", n, func() bool { return counter(n.ISAKMPCounters(), "malformed") > before })
}
