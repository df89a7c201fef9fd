package iked

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// proves: S1 (issue 11 item 10: 200 silent connections to the broker
// socket hold at most MaxConns goroutines; the others are refused with a
// welcome saying why, and counted; a daemon registers once they are gone)
func TestBrokerConnectionCap(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	inv := &inventory{}
	inv.set(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get, MaxConns: 4})
	base := runtime.NumGoroutine()
	var silent []net.Conn
	for range 200 {
		c, err := net.Dial("unixpacket", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	eventually(t, "196 refused", func() bool { return s.Stats().Refused == 196 })
	if g := runtime.NumGoroutine() - base; g > 4+maxLingering+16 {
		t.Errorf("200 silent connections cost %d goroutines", g)
	}
	// once the refusals under way are done, a daemon at the cap is told why
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	eventually(t, "a refusal that says why", func() bool {
		_, err = Dial(ctx, path, "isakmpd", 1)
		return err != nil && strings.Contains(err.Error(), "too many connections (limit 4)")
	})
	for _, c := range silent {
		c.Close()
	}
	eventually(t, "a daemon registers", func() bool {
		c, err := Dial(ctx, path, "isakmpd", 1)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// proves: S1 (issue 11 item 10: a registered daemon that stops reading
// loses its datagrams after forwardTimeout, counted as stalled, instead of
// blocking the UDP reader that serves the other IKE version)
func TestStalledDaemonDoesNotBlockTheOther(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})

	// a version-1 daemon that says hello and never reads again
	deaf, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	hello, err := AppendFrame(nil, &Frame{Type: FrameHello, Name: "deaf", IKEVersion: 1, API: APIVersion})
	if err != nil {
		t.Fatal(err)
	}
	deaf.Write(hello)
	deaf.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := deaf.Read(make([]byte, MaxFrame)); err != nil {
		t.Fatalf("welcome: %v", err)
	}
	v2 := dial(t, path, "ikev2d", 2)
	c2 := listen(t, v2, a)

	pr := peer(t, "127.0.0.1")
	big := ikeMsg(0x10, strings.Repeat("x", 4000))
	deadline := time.Now().Add(20 * time.Second)
	for s.Stats().Stalled == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the deaf daemon never stalled: %+v", s.Stats())
		}
		for range 50 {
			send(t, pr, big, a)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ikev2d is still served on the same UDP socket, behind the queue of
	// datagrams for the deaf daemon
	send(t, pr, ikeMsg(0x20, "ike_sa_init"), a)
	if r := readConn(t, c2, 2*time.Second); r.err != nil || !strings.HasSuffix(string(r.data), "ike_sa_init") {
		t.Fatalf("ikev2d read %q, %v", r.data, r.err)
	}
}
