package iked

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ikeMsg returns an IKE message of n octets (at least a header) with the
// version octet ver at offset 17 (RFC 2408 §3.1, RFC 7296 §3.1) and tag
// in the payload for recognition.
func ikeMsg(ver byte, tag string) []byte {
	b := make([]byte, ikeHeaderLen, ikeHeaderLen+len(tag))
	for i := range 8 {
		b[i] = byte(i + 1) // initiator SPI/cookie: never the non-ESP marker
	}
	b[versionOffset] = ver
	return append(b, tag...)
}

// freePort returns a UDP port free on every address of addrs now.
func freePort(t *testing.T, addrs ...string) uint16 {
	t.Helper()
	for range 50 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addrs[0])})
		if err != nil {
			t.Fatal(err)
		}
		p := uint16(c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
		ok := true
		for _, a := range addrs[1:] {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(a), Port: int(p)})
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// inventory is an injectable address inventory.
type inventory struct {
	mu    sync.Mutex
	addrs []netip.AddrPort
}

func (i *inventory) set(addrs ...netip.AddrPort) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.addrs = addrs
}

func (i *inventory) get() ([]netip.AddrPort, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]netip.AddrPort(nil), i.addrs...), nil
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a broker on a socket in t.TempDir() until the test ends.
func startServer(t *testing.T, o Options) (*Server, string, context.CancelFunc) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	path := filepath.Join(t.TempDir(), "iked.sock")
	s := New(o)
	if err := s.Start(path); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s, path, cancel
}

func dial(t *testing.T, path, name string, v int) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, name, v)
	if err != nil {
		t.Fatalf("Dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func listen(t *testing.T, c *Client, a netip.AddrPort) *Conn {
	t.Helper()
	cn, err := c.Listen(a)
	if err != nil {
		t.Fatalf("Listen %s: %v", a, err)
	}
	t.Cleanup(func() { cn.Close() })
	return cn
}

type readResult struct {
	data []byte
	from netip.AddrPort
	err  error
}

// readConn reads one datagram from a Conn or fails after d.
func readConn(t *testing.T, cn *Conn, d time.Duration) readResult {
	t.Helper()
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, MaxPayload)
		n, from, err := cn.ReadFromUDPAddrPort(buf)
		ch <- readResult{buf[:n], from, err}
	}()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("no datagram on %v within %v", cn.LocalAddr(), d)
		return readResult{}
	}
}

// peer is a remote IKE peer: a plain UDP socket.
func peer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// peerRead reads one datagram at the peer, returning payload and source.
func peerRead(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, MaxPayload)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

func send(t *testing.T, c *net.UDPConn, b []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatalf("peer send to %s: %v", to, err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proves: D1 (a v1 datagram reaches isakmpd with its local and remote
// address; the reply leaves from the address the peer used)
func TestV1DatagramRoundTrip(t *testing.T) {
	p := freePort(t, "127.0.0.1", "127.0.0.2")
	a1 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	a2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), p)
	inv := &inventory{}
	inv.set(a1, a2)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	if got := s.Addrs(); len(got) != 2 || got[0] != a1 || got[1] != a2 {
		t.Fatalf("Addrs = %v, want [%v %v]", got, a1, a2)
	}
	c := dial(t, path, "isakmpd", 1)
	c1 := listen(t, c, a1)
	c2 := listen(t, c, a2)
	if la := c2.LocalAddr().(*net.UDPAddr).AddrPort(); la != a2 {
		t.Fatalf("LocalAddr = %v, want %v", la, a2)
	}
	pr := peer(t, "127.0.0.1")
	msg := ikeMsg(0x10, "main mode 1")
	send(t, pr, msg, a2)
	r := readConn(t, c2, 5*time.Second)
	if r.err != nil || !bytes.Equal(r.data, msg) || r.from != addrOf(pr) {
		t.Fatalf("Conn %v read %x from %v err %v; want %x from %v", a2, r.data, r.from, r.err, msg, addrOf(pr))
	}
	reply := ikeMsg(0x10, "reply")
	if n, err := c2.WriteToUDPAddrPort(reply, addrOf(pr)); err != nil || n != len(reply) {
		t.Fatalf("WriteToUDPAddrPort = %d, %v", n, err)
	}
	got, from := peerRead(t, pr)
	if !bytes.Equal(got, reply) || from != a2 {
		t.Fatalf("peer got %x from %v; want %x from %v (the address it sent to)", got, from, reply, a2)
	}
	// The same through the other address: each reply leaves from its own.
	send(t, pr, msg, a1)
	if r := readConn(t, c1, 5*time.Second); r.err != nil || r.from != addrOf(pr) {
		t.Fatalf("Conn %v read from %v err %v", a1, r.from, r.err)
	}
	c1.WriteToUDPAddrPort(reply, addrOf(pr))
	if _, from := peerRead(t, pr); from != a1 {
		t.Fatalf("reply left from %v, want %v", from, a1)
	}
	eventually(t, "2 received, forwarded and sent", func() bool {
		st := s.Stats()
		return st.Received == 2 && st.Forwarded == 2 && st.Sent == 2
	})
}

// proves: D1 (demux by IKE major version: v2 goes to ikev2d, not isakmpd;
// a version nobody serves is dropped and counted)
func TestVersionDemux(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	v1 := listen(t, dial(t, path, "isakmpd", 1), a)
	v2 := listen(t, dial(t, path, "ikev2d", 2), a)
	pr := peer(t, "127.0.0.1")

	m2 := ikeMsg(0x20, "g-ikev2 GSA_AUTH")
	send(t, pr, m2, a)
	if r := readConn(t, v2, 5*time.Second); r.err != nil || !bytes.Equal(r.data, m2) {
		t.Fatalf("ikev2d read %x err %v, want %x", r.data, r.err, m2)
	}
	m1 := ikeMsg(0x10, "gdoi GROUPKEY-PULL")
	send(t, pr, m1, a)
	// isakmpd's first datagram is the v1 one: the v2 one never reached it.
	if r := readConn(t, v1, 5*time.Second); r.err != nil || !bytes.Equal(r.data, m1) {
		t.Fatalf("isakmpd read %x err %v, want %x", r.data, r.err, m1)
	}
	send(t, pr, ikeMsg(0x30, "v3"), a)
	eventually(t, "the v3 datagram counted as no daemon, 2 forwarded", func() bool {
		st := s.Stats()
		return st.NoDaemon == 1 && st.Forwarded == 2
	})
}

// proves: D3, D4 (Refresh listens on new addresses and closes the gone
// ones; the connected daemon stays connected)
func TestRefreshAddsAndRemoves(t *testing.T) {
	p := freePort(t, "127.0.0.1", "127.0.0.3")
	old := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	added := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), p)
	inv := &inventory{}
	inv.set(old)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	c := dial(t, path, "isakmpd", 1)
	oldConn := listen(t, c, old)
	if _, err := c.Listen(added); err == nil {
		t.Fatal("Listen on an address iked does not serve yet succeeded (D3: not until refresh)")
	}
	pr := peer(t, "127.0.0.1")

	inv.set(added)
	gotAdded, gotRemoved, err := s.Refresh()
	if err != nil || len(gotAdded) != 1 || gotAdded[0] != added || len(gotRemoved) != 1 || gotRemoved[0] != old {
		t.Fatalf("Refresh = %v, %v, %v; want [%v] [%v] nil", gotAdded, gotRemoved, err, added, old)
	}
	if got := s.Addrs(); len(got) != 1 || got[0] != added {
		t.Fatalf("Addrs after refresh = %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := c.Addrs(ctx); err != nil || len(got) != 1 || got[0] != added {
		t.Fatalf("client Addrs after refresh = %v, %v", got, err)
	}
	// The removed address no longer answers: its socket is closed (the
	// port can be bound again) and what is sent there reaches nobody.
	rebind, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(old))
	if err != nil {
		t.Fatalf("removed address still bound by iked: %v", err)
	}
	rebind.Close()
	before := s.Stats().Received
	send(t, pr, ikeMsg(0x10, "to the gone address"), old)
	// The new address answers, through the same client connection.
	newConn := listen(t, c, added)
	msg := ikeMsg(0x10, "to the new address")
	send(t, pr, msg, added)
	r := readConn(t, newConn, 5*time.Second)
	if r.err != nil || !bytes.Equal(r.data, msg) {
		t.Fatalf("new address: read %x err %v", r.data, r.err)
	}
	newConn.WriteToUDPAddrPort(msg, addrOf(pr))
	if _, from := peerRead(t, pr); from != added {
		t.Fatalf("reply from %v, want %v", from, added)
	}
	if got := s.Stats().Received; got != before+1 {
		t.Fatalf("received %d datagrams after refresh, want 1 (the gone address must not answer)", got-before)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("client disconnected by refresh: %v", err)
	}
	// A send from the removed address is dropped and counted.
	oldConn.WriteToUDPAddrPort(msg, addrOf(pr))
	eventually(t, "send from a removed address counted", func() bool { return s.Stats().NoSocket == 1 })
	// Back again: a second refresh restores it.
	inv.set(old, added)
	if a, r, err := s.Refresh(); err != nil || len(a) != 1 || a[0] != old || len(r) != 0 {
		t.Fatalf("second Refresh = %v, %v, %v", a, r, err)
	}
	send(t, pr, msg, old)
	if r := readConn(t, oldConn, 5*time.Second); r.err != nil || !bytes.Equal(r.data, msg) {
		t.Fatalf("restored address: read %x err %v", r.data, r.err)
	}
}

// proves: D1 (one daemon per IKE version; a second is refused with who
// serves it; the version is free again when the first disconnects)
func TestSecondDaemonRefused(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	inv := &inventory{}
	inv.set(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	first := dial(t, path, "isakmpd", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, path, "isakmpd", 1)
	want := fmt.Sprintf("IKE version 1 is already served by isakmpd (pid %d)", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Dial err = %v, want it to say %q", err, want)
	}
	if s.Stats().Refused != 1 {
		t.Fatalf("stats = %+v", s.Stats())
	}
	// ikev2d registers beside it.
	dial(t, path, "ikev2d", 2)
	// A restarted isakmpd registers again.
	first.Close()
	eventually(t, "version 1 freed", func() bool {
		c, err := Dial(ctx, path, "isakmpd", 1)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// proves: D1 (iked speaks one API version and says which)
func TestHelloAPIRefused(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	inv := &inventory{}
	inv.set(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
	_, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	raw := rawConn(t, path)
	b, _ := AppendFrame(nil, &Frame{Type: FrameHello, API: APIVersion + 1, IKEVersion: 1, Name: "isakmpd"})
	raw.Write(b)
	f := rawRead(t, raw)
	if f.Type != FrameWelcome || f.OK || !strings.Contains(f.Message, fmt.Sprintf("iked speaks API %d", APIVersion)) {
		t.Fatalf("answer = %+v", f)
	}
}

func rawConn(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unixpacket", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

func rawRead(t *testing.T, c *net.UnixConn) Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, MaxFrame+1)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("raw read: %v", err)
	}
	f, err := ParseFrame(buf[:n])
	if err != nil {
		t.Fatalf("raw parse: %v", err)
	}
	return f
}

// proves: D1 (malformed frames and short datagrams are dropped and
// counted; the broker keeps serving)
func TestMalformedAndShortCounted(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})

	// Garbage instead of a hello: refused.
	g := rawConn(t, path)
	g.Write([]byte{0xff, 1, 2, 3})
	if f := rawRead(t, g); f.Type != FrameWelcome || f.OK {
		t.Fatalf("answer to garbage = %+v", f)
	}

	// A registered daemon sending garbage: dropped, counted, still served.
	raw := rawConn(t, path)
	hello, _ := AppendFrame(nil, &Frame{Type: FrameHello, API: APIVersion, IKEVersion: 1, Name: "isakmpd"})
	raw.Write(hello)
	if f := rawRead(t, raw); !f.OK || len(f.Addrs) != 1 || f.Addrs[0] != a {
		t.Fatalf("welcome = %+v", f)
	}
	for _, junk := range [][]byte{{0}, {byte(FrameDatagram), 4, 1}, {byte(FrameHello), 1, 1, 1, 'x'}, bytes.Repeat([]byte{0xee}, 3000)} {
		if _, err := raw.Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "bad frames counted", func() bool { return s.Stats().BadFrames == 1+4 })

	pr := peer(t, "127.0.0.1")
	send(t, pr, make([]byte, ikeHeaderLen-1), a)
	send(t, pr, nil, a)
	eventually(t, "short datagrams counted", func() bool { return s.Stats().Short == 2 })

	msg := ikeMsg(0x10, "still here")
	send(t, pr, msg, a)
	if f := rawRead(t, raw); f.Type != FrameDatagram || !bytes.Equal(f.Payload, msg) || f.Local != a || f.Remote != addrOf(pr) {
		t.Fatalf("datagram frame = %+v", f)
	}
	out, _ := AppendFrame(nil, &Frame{Type: FrameDatagram, Local: a, Remote: addrOf(pr), Payload: msg})
	raw.Write(out)
	if got, from := peerRead(t, pr); !bytes.Equal(got, msg) || from != a {
		t.Fatalf("peer got %x from %v", got, from)
	}
}

// proves: D1 (RFC 3948 §2.2: the non-ESP marker is stripped on the NAT-T
// port and added back on sends from it; ESP there is dropped and counted)
func TestNATTMarker(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, NATTPort: p, Inventory: inv.get})
	cn := listen(t, dial(t, path, "ikev2d", 2), a)
	pr := peer(t, "127.0.0.1")

	msg := ikeMsg(0x20, "IKE_AUTH behind NAT")
	send(t, pr, append([]byte{0, 0, 0, 0}, msg...), a)
	if r := readConn(t, cn, 5*time.Second); r.err != nil || !bytes.Equal(r.data, msg) {
		t.Fatalf("read %x err %v, want %x (marker stripped)", r.data, r.err, msg)
	}
	cn.WriteToUDPAddrPort(msg, addrOf(pr))
	got, from := peerRead(t, pr)
	if !bytes.Equal(got, append([]byte{0, 0, 0, 0}, msg...)) || from != a {
		t.Fatalf("peer got %x from %v, want the marker then %x from %v", got, from, msg, a)
	}
	esp := append([]byte{0, 0, 0x10, 0x01, 0, 0, 0, 1}, make([]byte, 40)...) // SPI 0x1001, seq 1
	send(t, pr, esp, a)
	eventually(t, "ESP counted", func() bool { return s.Stats().ESP == 1 })
	// A marker followed by less than an IKE header is short.
	send(t, pr, []byte{0, 0, 0, 0, 1, 2}, a)
	eventually(t, "short counted", func() bool { return s.Stats().Short == 1 })
}

// proves: D1 (a daemon started without iked is told what to do)
func TestDialWithoutIked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iked.sock")
	_, err := Dial(context.Background(), path, "isakmpd", 1)
	want := "iked is not running (no socket at " + path + "): start the group with startsrc -g ike"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	// A stale socket file (iked died): the same advice.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(context.Background(), path, "isakmpd", 1); err == nil || !strings.Contains(err.Error(), "iked is not running") {
		t.Fatalf("stale socket: err = %v", err)
	}
	// And a new iked replaces the stale file.
	p := freePort(t, "127.0.0.1")
	inv := &inventory{}
	inv.set(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
	s := New(Options{Inventory: inv.get, Logger: testLogger(t)})
	if err := s.Start(path); err != nil {
		t.Fatalf("Start over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// A second iked on the same socket is refused.
	if err := New(Options{Inventory: inv.get, Logger: testLogger(t)}).Start(path); err == nil || !strings.Contains(err.Error(), "another iked answers") {
		t.Fatalf("second iked: err = %v", err)
	}
}

// proves: D1 (Conn.Close ends its reads with net.ErrClosed; when iked
// goes away every Conn's reads fail, and the daemon can exit)
func TestConnCloseAndBrokerLoss(t *testing.T) {
	p := freePort(t, "127.0.0.1", "127.0.0.2")
	a1 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	a2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), p)
	inv := &inventory{}
	inv.set(a1, a2)
	_, path, stop := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	c := dial(t, path, "isakmpd", 1)
	c1 := listen(t, c, a1)
	c2 := listen(t, c, a2)
	if _, err := c.Listen(a1); err == nil {
		t.Fatal("a second Conn on the same address was allowed")
	}
	c1.Close()
	if r := readConn(t, c1, time.Second); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", r.err)
	}
	if _, err := c1.WriteToUDPAddrPort([]byte("x"), a2); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
	// Datagrams for an address with no Conn are dropped and counted.
	pr := peer(t, "127.0.0.1")
	send(t, pr, ikeMsg(0x10, "nobody listens"), a1)
	eventually(t, "datagram without a Conn counted", func() bool { return c.Dropped() == 1 })

	stop()
	r := readConn(t, c2, 5*time.Second)
	if r.err == nil || errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("read after iked stopped: %v, want the lost connection", r.err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if _, err := c2.WriteToUDPAddrPort([]byte("x"), a1); err == nil {
		t.Fatal("write after iked stopped succeeded")
	}
}

// proves: D1 (a daemon behind iked sets the multicast interface and TTL
// of its rekeys, RFC 6407 §4.2, on the socket iked owns)
func TestSetMulticastOptions(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	_, path, _ := startServer(t, Options{Ports: []uint16{p}, Inventory: inv.get})
	cn := listen(t, dial(t, path, "isakmpd", 1), a)
	var mc interface {
		SetMulticastOptions(ifName string, ttl int) error
	} = cn
	if err := mc.SetMulticastOptions("lo", 1); err != nil {
		t.Fatalf("SetMulticastOptions(lo): %v", err)
	}
	if err := mc.SetMulticastOptions("no-such-if0", 1); err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		t.Fatalf("SetMulticastOptions(no-such-if0) = %v, want an error naming it", err)
	}
}
