package iked

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// proves: S1, S5 (issue 11 items 8, 10: a daemon that stalled once and
// reads again is served again — found by the broker counters in the
// hostile campaign: after one stall every later datagram was lost as a
// send error, because the expired write deadline of the stall made each
// non-blocking offer fail before it was tried)
func TestStalledDaemonRecovers(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})

	slow, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	hello, _ := AppendFrame(nil, &Frame{Type: FrameHello, Name: "slow", IKEVersion: 1, API: APIVersion})
	slow.Write(hello)
	buf := make([]byte, MaxFrame)
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := slow.Read(buf); err != nil {
		t.Fatalf("welcome: %v", err)
	}

	pr := peer(t, "127.0.0.1")
	big := ikeMsg(0x10, strings.Repeat("x", 4000))
	deadline := time.Now().Add(20 * time.Second)
	for s.Stats().Stalled == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never stalled: %+v", s.Stats())
		}
		for range 50 {
			send(t, pr, big, a)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The daemon reads again: it drains its queue...
	for {
		slow.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := slow.Read(buf); err != nil {
			break
		}
	}
	// ...and the next datagram reaches it.
	msg := ikeMsg(0x10, "after the stall")
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	for tries := 0; ; tries++ {
		send(t, pr, msg, a)
		n, err := slow.Read(buf)
		if err != nil {
			t.Fatalf("no datagram after the stall: %v; stats %+v", err, s.Stats())
		}
		f, err := ParseFrame(buf[:n])
		if err == nil && bytes.Equal(f.Payload, msg) {
			break
		}
	}
	if st := s.Stats(); st.SendErrors != 0 {
		t.Errorf("send errors after a stall: %+v", st)
	}
}
