package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/mcast"
)

// received is what one receiver got in one phase.
type received struct {
	seqs    map[uint32]bool
	badFrom []netip.AddrPort
	badTTL  []int
	err     error
}

// collect reads datagrams of the given phase from conn until it has want
// distinct ones or none came for idle; it checks each one's source and TTL.
func collect(conn *net.UDPConn, phase byte, want int, from netip.AddrPort, ttl int, idle time.Duration) received {
	r := received{seqs: map[uint32]bool{}}
	buf := make([]byte, 64)
	oob := make([]byte, 64)
	for len(r.seqs) < want {
		if err := conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
			r.err = err
			return r
		}
		n, oobn, _, src, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		if n != 5 || buf[0] != phase {
			continue // a late datagram of an earlier phase
		}
		r.seqs[binary.BigEndian.Uint32(buf[1:5])] = true
		if src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port()); src != from {
			r.badFrom = append(r.badFrom, src)
		}
		got := -1
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			r.err = err
			return r
		}
		for _, m := range msgs {
			if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL && len(m.Data) >= 4 {
				got = int(binary.NativeEndian.Uint32(m.Data))
			}
		}
		if got != ttl {
			r.badTTL = append(r.badTTL, got)
		}
	}
	return r
}

// TestBridgeMulticast: four namespaces on one bridge, a key server's
// multicast sender and three group members. With TTL 1 on the bridge
// interface all three members receive all 200 datagrams, with TTL 1 and the
// sender's address and port as source. Then DropRandom loses 20% of each
// member's incoming udp/848 at random: each receives between 60% and 95%
// of a new 200, and the nftables counters account for exactly the rest.
//
// proves: T1 (multicast delivery harness)
func TestBridgeMulticast(t *testing.T) {
	RequireNft(t)
	br := Bridge(t, "gvtmcbr")
	const port = 848
	sender := NewNetns(t, "gvt-mc-ks")
	ksAddr := netip.MustParseAddr("10.231.20.1")
	ksIf := AttachToBridge(t, br, sender, netip.PrefixFrom(ksAddr, 24))
	var members []*Netns
	var memberIfs []string
	for i := range 3 {
		ns := NewNetns(t, fmt.Sprintf("gvt-mc-gm%d", i+1))
		members = append(members, ns)
		memberIfs = append(memberIfs, AttachToBridge(t, br, ns, netip.MustParsePrefix(fmt.Sprintf("10.231.20.%d/24", i+2))))
	}
	group := netip.MustParseAddrPort("239.192.20.1:848")

	var s *mcast.Sender
	sender.Do(t, func() error {
		var err error
		s, err = mcast.NewSender(netip.AddrPortFrom(ksAddr, port), ksIf, 1)
		return err
	})
	t.Cleanup(func() { s.Close() })
	conns := make([]*net.UDPConn, len(members))
	for i, ns := range members {
		ns.Do(t, func() error {
			c, err := mcast.Listen(group, memberIfs[i])
			if err != nil {
				return err
			}
			conns[i] = c
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
			}); err != nil {
				return err
			}
			return serr
		})
		t.Cleanup(func() { conns[i].Close() })
	}

	const n = 200
	phase := func(p byte, idle time.Duration) []received {
		t.Helper()
		results := make([]received, len(conns))
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() { results[i] = collect(c, p, n, s.LocalAddr(), 1, idle) })
		}
		for seq := range uint32(n) {
			b := []byte{p, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(b[1:], seq)
			if err := s.Send(group, b); err != nil {
				t.Errorf("send %d: %v", seq, err)
			}
			if seq%10 == 9 {
				time.Sleep(time.Millisecond) // no burst beyond the backlog
			}
		}
		wg.Wait()
		for i, r := range results {
			if r.err != nil {
				t.Errorf("member %d: %v", i+1, r.err)
			}
			if len(r.badFrom) > 0 {
				t.Errorf("member %d: datagrams from %v, want %v", i+1, r.badFrom, s.LocalAddr())
			}
			if len(r.badTTL) > 0 {
				t.Errorf("member %d: datagrams with TTL %v, want 1", i+1, r.badTTL)
			}
		}
		return results
	}

	for i, r := range phase(1, 3*time.Second) {
		if len(r.seqs) != n {
			t.Errorf("member %d received %d of %d datagrams without loss", i+1, len(r.seqs), n)
		}
	}
	if t.Failed() {
		return
	}

	for _, ns := range members {
		DropRandom(t, ns, 20, "udp", port)
	}
	for i, r := range phase(2, time.Second) {
		got := len(r.seqs)
		dropped := DropCounts(t, members[i], "udp", port)
		t.Logf("member %d: received %d of %d with 20%% loss, nftables dropped %d", i+1, got, n, dropped)
		if got < n*60/100 || got > n*95/100 {
			t.Errorf("member %d received %d of %d with 20%% loss, want 60%% to 95%%", i+1, got, n)
		}
		if got+dropped != n {
			t.Errorf("member %d: received %d + dropped %d != sent %d", i+1, got, dropped, n)
		}
	}
}

// TestDoAndDropRandomCleanup: a socket made in Do is in the namespace (its
// interface list is the namespace's), and DropRandom's table is gone after
// the subtest's cleanup.
func TestDoAndDropRandomCleanup(t *testing.T) {
	RequireNft(t)
	ns := NewNetns(t, "gvt-do")
	ns.Do(t, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" {
			return fmt.Errorf("interfaces %v, want only lo", ifs)
		}
		return nil
	})
	t.Run("drop", func(t *testing.T) {
		DropRandom(t, ns, 50, "udp", 4500)
		DropRandom(t, ns, 10, "udp", 4500) // replaces
		if out := ns.Run(t, "nft", "list", "table", "inet", "testnet_drop_udp_4500"); !containsAll(out, "mod 100 < 10", "udp dport 4500") {
			t.Errorf("table:\n%s", out)
		}
	})
	if out := ns.Run(t, "nft", "list", "tables"); containsAll(out, "testnet_drop") {
		t.Errorf("table left after cleanup:\n%s", out)
	}
	if err := ns.do(func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("do returned %v, want fn's error", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
