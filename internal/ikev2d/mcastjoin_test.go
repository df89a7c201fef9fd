package ikev2d

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// fakeMcastConn is a joined multicast socket that only records its Close.
type fakeMcastConn struct {
	dst    netip.AddrPort
	closed bool
}

func (c *fakeMcastConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (c *fakeMcastConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	return len(b), nil
}
func (c *fakeMcastConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.dst) }
func (c *fakeMcastConn) Close() error        { c.closed = true; return nil }

// proves: T1, S5 (issue 17, review finding 10: a member holds one joined
// multicast rekey socket per group: the same destination again opens
// nothing, a new destination closes the old socket, a unicast Rekey SA
// leaves it, groups with one destination share a socket closed with the
// last of them; a failing join is logged once a minute, not per rekey)
func TestMulticastRekeySocketsLeft(t *testing.T) {
	var opened []*fakeMcastConn
	fail := false
	clock := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	logs := &testnet.Buffer{}
	r, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:848")}}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Logger: slog.New(slog.NewTextHandler(logs, nil)),
			Now: func() time.Time { return clock },
			ListenMulticast: func(dst netip.AddrPort, _ string) (PacketConn, error) {
				if fail {
					return nil, errors.New("no multicast route")
				}
				c := &fakeMcastConn{dst: dst}
				opened = append(opened, c)
				return c, nil
			}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.closeAll()
	local := netip.MustParseAddr("127.0.0.1")
	d1, d2 := netip.MustParseAddrPort("239.192.8.8:848"), netip.MustParseAddrPort("239.192.8.9:848")
	r.join("G2", d1, local)
	r.join("G2", d1, local) // every rekey of the same Rekey SA
	if len(opened) != 1 || len(r.joined) != 1 {
		t.Fatalf("same destination twice: %d sockets opened, %d joined", len(opened), len(r.joined))
	}
	r.join("G2", d2, local) // a new KEK policy moves the group
	if len(opened) != 2 || !opened[0].closed || opened[1].closed || len(r.joined) != 1 || r.joined[0].local != d2 {
		t.Fatalf("new destination: old closed %v, %d joined", opened[0].closed, len(r.joined))
	}
	r.join("G3", d2, local) // another group on the same destination shares it
	if len(opened) != 2 {
		t.Fatalf("a shared destination opened %d sockets", len(opened))
	}
	r.leaveMulticast("G2")
	if opened[1].closed {
		t.Fatal("the socket G3 still uses was closed")
	}
	r.leaveMulticast("G3")
	if !opened[1].closed || len(r.joined) != 0 || len(r.joinedBy) != 0 {
		t.Fatalf("left by every group: closed %v, %d joined", opened[1].closed, len(r.joined))
	}
	fail = true
	for i := 0; i < 100; i++ {
		r.join("G2", d1, local)
		clock = clock.Add(time.Second)
	}
	if n := strings.Count(logs.String(), "cannot join the multicast rekey group"); n != 2 {
		t.Fatalf("100 failed joins over 100 s logged %d warnings, want 2 (one a minute)", n)
	}
}
