package mcast

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// getInt reads an integer IPPROTO_IP socket option.
func getInt(t *testing.T, conn *net.UDPConn, opt int) int {
	t.Helper()
	var v int
	err := control(conn, func(fd int) error {
		var err error
		v, err = unix.GetsockoptInt(fd, unix.IPPROTO_IP, opt)
		return err
	})
	if err != nil {
		t.Fatalf("getsockopt %d: %v", opt, err)
	}
	return v
}

// getMulticastIF reads IP_MULTICAST_IF back (Linux returns the address).
func getMulticastIF(t *testing.T, conn *net.UDPConn) netip.Addr {
	t.Helper()
	var a netip.Addr
	err := control(conn, func(fd int) error {
		in, err := unix.GetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF)
		a = netip.AddrFrom4(in)
		return err
	})
	if err != nil {
		t.Fatalf("getsockopt IP_MULTICAST_IF: %v", err)
	}
	return a
}

// TestSetMulticastOptions reads back what SetMulticastOptions set on a
// plain socket, the daemon's case. Needs no privileges.
func TestSetMulticastOptions(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := SetMulticastOptions(conn, "lo", 7); err != nil {
		t.Fatal(err)
	}
	if got := getInt(t, conn, unix.IP_MULTICAST_TTL); got != 7 {
		t.Errorf("IP_MULTICAST_TTL = %d, want 7", got)
	}
	if got := getInt(t, conn, unix.IP_MULTICAST_LOOP); got != 1 {
		t.Errorf("IP_MULTICAST_LOOP = %d, want 1", got)
	}
	if got := getMulticastIF(t, conn); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("IP_MULTICAST_IF = %v, want lo's 127.0.0.1", got)
	}

	for _, tc := range []struct {
		ifName string
		ttl    int
	}{{"lo", -1}, {"lo", 256}, {"no-such-if0", 1}} {
		if err := SetMulticastOptions(conn, tc.ifName, tc.ttl); err == nil {
			t.Errorf("SetMulticastOptions(%q, %d) succeeded", tc.ifName, tc.ttl)
		}
	}
	if err := SetMulticastOptions(nil, "lo", 1); err == nil {
		t.Error("SetMulticastOptions(nil) succeeded")
	}
}

func TestBadAddresses(t *testing.T) {
	if _, err := Listen(netip.MustParseAddrPort("10.0.0.1:848"), ""); err == nil {
		t.Error("Listen on a unicast address succeeded")
	}
	if _, err := Listen(netip.MustParseAddrPort("[ff02::1]:848"), ""); err == nil {
		t.Error("Listen on an IPv6 group succeeded")
	}
	if _, err := NewSender(netip.MustParseAddrPort("[::1]:0"), "", 1); err == nil {
		t.Error("NewSender on IPv6 succeeded")
	}
	s, err := NewSender(netip.MustParseAddrPort("127.0.0.1:0"), "lo", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(netip.MustParseAddrPort("127.0.0.1:9"), []byte("x")); err == nil {
		t.Error("Send to a unicast address succeeded")
	}
}

// The delivery tests run on lo in the test's own namespace and need no
// privileges: lo lacks the MULTICAST flag, but Linux sends and loops back
// multicast on it all the same when the socket names lo with
// IP_MULTICAST_IF, and memberships on lo end with the sockets. (The netns
// test of internal/testnet covers a real L2 segment.)

// recvTTL enables IP_RECVTTL on a receiving socket.
func recvTTL(conn *net.UDPConn) error {
	return control(conn, func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTTL, 1) })
}

// readOne reads a datagram and the TTL it arrived with.
func readOne(conn *net.UDPConn, timeout time.Duration) ([]byte, netip.AddrPort, int, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, netip.AddrPort{}, 0, err
	}
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return nil, netip.AddrPort{}, 0, err
	}
	ttl := -1
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, netip.AddrPort{}, 0, err
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL && len(m.Data) >= 4 {
			ttl = int(m.Data[0]) // int in host order; TTL fits in the low byte (little-endian)
		}
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), ttl, nil
}

// expectNothing fails the test if conn receives a datagram within d.
func expectNothing(t *testing.T, conn *net.UDPConn, d time.Duration, what string) {
	t.Helper()
	b, from, _, err := readOne(conn, d)
	if err == nil {
		t.Errorf("%s: received %q from %v", what, b, from)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: %v", what, err)
	}
}

// TestLoopbackDelivery: a sender and two receivers of the same group and
// port on lo; both receive every datagram,
// with the configured TTL and the sender's address and port as source; a
// receiver of another group on the same port receives none of them, and
// neither receives the port's unicast.
//
// proves: T1 (multicast rekeys: configured TTL and interface; GMs join the group)
func TestLoopbackDelivery(t *testing.T) {
	group := netip.MustParseAddr("239.192.7.1")
	var (
		s                 *Sender
		r1, r2, other, uc *net.UDPConn
	)
	setup := func() error {
		var err error
		// The unicast socket of the "daemon", plain as internal/node's.
		uc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		port := uint16(uc.LocalAddr().(*net.UDPAddr).Port)
		if r1, err = Listen(netip.AddrPortFrom(group, port), "lo"); err != nil {
			return err
		}
		if r2, err = Listen(netip.AddrPortFrom(group, port), "lo"); err != nil {
			return err
		}
		if other, err = Listen(netip.AddrPortFrom(netip.MustParseAddr("239.192.7.2"), port), "lo"); err != nil {
			return err
		}
		for _, c := range []*net.UDPConn{r1, r2, other} {
			if err := recvTTL(c); err != nil {
				return err
			}
		}
		s, err = NewSender(netip.MustParseAddrPort("127.0.0.1:0"), "lo", 5)
		return err
	}
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{s, r1, r2, other, uc} {
		defer c.Close()
	}
	port := r1.LocalAddr().(*net.UDPAddr).Port
	dst := netip.AddrPortFrom(group, uint16(port))

	if got := getInt(t, s.Conn(), unix.IP_MULTICAST_TTL); got != 5 {
		t.Errorf("sender IP_MULTICAST_TTL = %d, want 5", got)
	}
	if got := getInt(t, s.Conn(), unix.IP_MULTICAST_LOOP); got != 1 {
		t.Errorf("sender IP_MULTICAST_LOOP = %d, want 1", got)
	}
	if got := getMulticastIF(t, s.Conn()); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("sender IP_MULTICAST_IF = %v, want lo's 127.0.0.1", got)
	}
	if got := getInt(t, r1, unix.IP_MULTICAST_ALL); got != 0 {
		t.Errorf("receiver IP_MULTICAST_ALL = %d, want 0", got)
	}

	const n = 20
	for i := range n {
		if err := s.Send(dst, []byte{'r', byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for ri, r := range []*net.UDPConn{r1, r2} {
		for i := range n {
			b, from, ttl, err := readOne(r, 2*time.Second)
			if err != nil {
				t.Fatalf("receiver %d, datagram %d: %v", ri+1, i, err)
			}
			if !bytes.Equal(b, []byte{'r', byte(i)}) {
				t.Errorf("receiver %d, datagram %d: got %q", ri+1, i, b)
			}
			if from != s.LocalAddr() {
				t.Errorf("receiver %d: from %v, want the sender's %v", ri+1, from, s.LocalAddr())
			}
			if ttl != 5 {
				t.Errorf("receiver %d: TTL %d, want 5", ri+1, ttl)
			}
		}
	}
	expectNothing(t, other, 100*time.Millisecond, "receiver of another group")

	// Unicast to the port goes to the unicast socket only.
	c, err := net.DialUDP("udp4", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("unicast")); err != nil {
		t.Fatal(err)
	}
	if b, _, _, err := readOne(uc, 2*time.Second); err != nil || string(b) != "unicast" {
		t.Errorf("unicast socket: %q, %v", b, err)
	}
	expectNothing(t, r1, 100*time.Millisecond, "group receiver, after unicast")
}

// TestSenderSharesPort: the daemon's socket and a Sender on the same
// address and port (possible when the daemon's socket set SO_REUSEADDR):
// multicast from the daemon's socket with SetMulticastOptions and from the
// Sender both arrive with that source, and all unicast to the port still
// goes to the daemon's socket, none to the Sender's.
//
// proves: T1 (multicast rekeys sent from the KS address and port)
func TestSenderSharesPort(t *testing.T) {
	group := netip.MustParseAddr("239.192.7.3")
	var (
		s        *Sender
		daemon   *net.UDPConn
		receiver *net.UDPConn
	)
	setup := func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setReuse(int(fd)) }); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		daemon = pc.(*net.UDPConn)
		if err := SetMulticastOptions(daemon, "lo", 1); err != nil {
			return err
		}
		local := netip.MustParseAddrPort(daemon.LocalAddr().String())
		if s, err = NewSender(local, "lo", 1); err != nil {
			return err
		}
		receiver, err = Listen(netip.AddrPortFrom(group, local.Port()), "lo")
		return err
	}
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	defer s.Close()
	defer receiver.Close()
	local := netip.MustParseAddrPort(daemon.LocalAddr().String())
	if s.LocalAddr() != local {
		t.Fatalf("sender on %v, want %v", s.LocalAddr(), local)
	}
	dst := netip.AddrPortFrom(group, local.Port())
	if _, err := daemon.WriteToUDPAddrPort([]byte("from daemon"), dst); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(dst, []byte("from sender")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"from daemon", "from sender"} {
		b, from, _, err := readOne(receiver, 2*time.Second)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if string(b) != want || from != local {
			t.Errorf("got %q from %v, want %q from %v", b, from, want, local)
		}
	}

	const n = 50
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(local))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("unicast")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if _, _, _, err := readOne(daemon, 2*time.Second); err != nil {
			t.Fatalf("daemon socket got %d of %d unicast datagrams: %v", i, n, err)
		}
	}
	expectNothing(t, s.Conn(), 100*time.Millisecond, "sender socket")
}
