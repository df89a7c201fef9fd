package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// member is an engine on a ChannelTUN and a UDP link on a loopback
// address: no privileges needed.
type member struct {
	e    *Engine
	tun  *tuntest.ChannelTUN
	link *UDPLink
	wire *wireLog
}

// wireLog records what a link's mirror sees.
type wireLog struct {
	mu   sync.Mutex
	sent [][]byte
}

func (w *wireLog) mirror(d Direction, b []byte) {
	if d != Sent {
		return
	}
	w.mu.Lock()
	w.sent = append(w.sent, append([]byte(nil), b...))
	w.mu.Unlock()
}

func (w *wireLog) contains(s string) (n, hits int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.sent {
		if bytes.Contains(b, []byte(s)) {
			hits++
		}
	}
	return len(w.sent), hits
}

func startMember(t *testing.T, addr string, sid uint32) *member {
	t.Helper()
	mem := sadb.NewMemory()
	mem.SetPolicy("g", policy())
	k := tek(0x100, sid, time.Now().Add(-time.Minute))
	k.Expires = time.Now().Add(time.Hour)
	if err := mem.InstallTEK(k); err != nil {
		t.Fatal(err)
	}
	m := &member{tun: tuntest.NewChannelTUN(), wire: &wireLog{}}
	var err error
	m.link, err = ListenUDP(UDPConfig{Local: netip.MustParseAddrPort(addr + ":0"), Mirror: m.wire.mirror})
	if err != nil {
		t.Fatal(err)
	}
	m.e, err = New(Config{Keys: mem, TUN: m.tun.TUN(), Link: m.link})
	if err != nil {
		m.link.Close()
		t.Fatal(err)
	}
	m.e.Run()
	t.Cleanup(func() { m.e.Close() })
	return m
}

func recvTUN(t *testing.T, m *member) []byte {
	t.Helper()
	select {
	case p := <-m.tun.Inbound:
		return p
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing delivered: engine %+v link %+v", m.e.Stats(), m.link.Stats())
		return nil
	}
}

// Two engines exchange real ESP in UDP on loopback (RFC 3948 §2.1: the
// payload is the ESP packet, SPI first); the packet is delivered, and what
// crossed the sockets never shows the plaintext. A clear packet (deny
// entry) is not carried and is counted; IKE with the non-ESP marker and
// NAT-keepalives arriving on the port are counted and never reach the
// engine; forged ESP from a stranger reaches it and fails its ICV.
// proves: E1 (issue 12: the engine runs without root over ESP in UDP)
func TestUDPLinkCarriesESP(t *testing.T) {
	a := startMember(t, "127.0.0.1", 1)
	b := startMember(t, "127.0.0.1", 2)
	a.link.SetPeers([]Peer{{netip.MustParsePrefix("10.1.2.0/24"), b.link.LocalAddr()}})
	b.link.SetPeers([]Peer{{netip.MustParsePrefix("10.1.1.0/24"), a.link.LocalAddr()}})

	const marker = "MARKER-7f3a-plaintext"
	a.tun.Outbound <- udp(h1, h2, 5000, marker)
	got := recvTUN(t, b)
	if !bytes.Contains(got, []byte(marker)) || [4]byte(got[12:16]) != h1.As4() {
		t.Fatalf("delivered %x", got)
	}
	if n, hits := a.wire.contains(marker); n != 1 || hits != 0 {
		t.Fatalf("on the wire: %d datagrams, %d with the plaintext marker", n, hits)
	}
	a.wire.mu.Lock()
	d := a.wire.sent[0]
	a.wire.mu.Unlock()
	if spi := binary.BigEndian.Uint32(d); spi != 0x100 || d[0] == 0x45 {
		t.Errorf("UDP payload does not start with the SPI: %x", d[:8])
	}
	// The reply goes back the other way.
	b.tun.Outbound <- udp(h2, h1, 5000, "reply")
	if got := recvTUN(t, a); !bytes.Contains(got, []byte("reply")) {
		t.Fatalf("reply delivered %x", got)
	}

	// A deny-entry packet would go clear: the UDP link cannot carry it.
	a.tun.Outbound <- udp(h1, h2, 9999, "clear")
	// A packet for a destination no peer covers.
	a.tun.Outbound <- udp(h1, netip.MustParseAddr("10.1.9.9"), 5000, "nopeer")

	// Non-ESP arriving on b's port.
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(b.link.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a.wire.mu.Lock()
	forged := append([]byte(nil), a.wire.sent[0]...)
	a.wire.mu.Unlock()
	binary.BigEndian.PutUint32(forged[4:], 1000) // a fresh sequence number: not a replay
	for _, p := range [][]byte{
		forged,                            // ESP for the group's SPI from a stranger: its ICV fails
		{0xff},                            // NAT-keepalive
		append(make([]byte, 4), "IKE"...), // non-ESP marker
		{1, 2, 3},                         // too short
	} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		as, bs := a.link.Stats(), b.link.Stats()
		if as.NotCarried == 1 && as.NoPeer == 1 && bs.Keepalives == 1 && bs.NonESP == 1 && bs.Short == 1 && bs.Received == 2 {
			if st := a.e.Stats(); st.SendErrors != 2 || st.Encaps != 2 || st.Bypass != 1 {
				t.Errorf("sender counters %+v", st)
			}
			if st := b.e.Stats(); st.Decaps != 1 || st.Malformed != 0 || st.AuthFailures != 1 {
				t.Errorf("receiver counters %+v", st)
			}
			if as.Sent != 1 || bs.Sent != 1 || as.Received != 1 {
				t.Errorf("link counters %+v %+v", as, bs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("link counters %+v %+v", as, bs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The UDP link's send and receive allocate nothing per batch.
func TestUDPLinkNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	a, err := ListenUDP(UDPConfig{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenUDP(UDPConfig{Local: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.SetPeers([]Peer{{sites, b.LocalAddr()}})
	tx, _ := pair(t)
	_, sealed := out(tx, udp(h1, h2, 5000, strings.Repeat("x", 1000)))
	pkts := [][]byte{sealed, sealed, sealed, sealed}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	if n := testing.AllocsPerRun(100, func() {
		if f := a.Send(pkts); f != 0 {
			t.Fatalf("%d sends failed", f)
		}
		for got := 0; got < len(pkts); {
			n, err := b.Receive(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}); n != 0 {
		t.Errorf("send+receive: %v allocations per batch", n)
	}
}

// Any UDP payload: no panic; the demultiplexing follows RFC 3948 §2 (one
// octet 0xFF is a keepalive, four zero octets first the non-ESP marker,
// else ESP when long enough for its header), and an ESP payload comes out
// as an IPv4 packet with a valid header carrying exactly that payload,
// which turns back into the same UDP payload.
func FuzzUDPDemux(f *testing.F) {
	tx, _ := pair(f)
	_, sealed := out(tx, udp(h1, h2, 5000, "sealed"))
	f.Add(append([]byte(nil), sealed[20:]...))
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 0xffff {
			return
		}
		buf := make([]byte, ipv4Len+len(payload))
		copy(buf[ipv4Len:], payload)
		src, dst := [4]byte{127, 0, 0, 2}, [4]byte{127, 0, 0, 3}
		kind, size := espFromUDP(buf, len(payload), src, dst)
		var want int
		switch {
		case len(payload) == 1 && payload[0] == 0xff:
			want = udpKeepalive
		case len(payload) >= 4 && binary.BigEndian.Uint32(payload) == 0:
			want = udpNonESP
		case len(payload) < espMin || ipv4Len+len(payload) > 0xffff:
			want = udpShort
		default:
			want = udpESP
		}
		if kind != want {
			t.Fatalf("kind %d, want %d", kind, want)
		}
		if kind != udpESP {
			return
		}
		pkt := buf[:size]
		spi, ok := esp.PacketSPI(pkt)
		if !ok || spi != binary.BigEndian.Uint32(payload) || ipChecksum(pkt[:ipv4Len]) != 0xffff {
			t.Fatalf("built packet %x: SPI %#x ok %v", pkt[:ipv4Len], spi, ok)
		}
		back, ok := udpPayload(pkt)
		if !ok || !bytes.Equal(back, payload) || [4]byte(pkt[12:16]) != src {
			t.Fatalf("round trip: %x, %v", back, ok)
		}
	})
}
