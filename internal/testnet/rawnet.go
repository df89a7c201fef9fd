package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Datagram is one captured or forged IPv4 UDP datagram.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Packet is one IPv4 packet a Capture saw arrive on an interface.
type Packet struct {
	Proto    uint8
	Src, Dst netip.Addr
	Raw      []byte // the whole packet, IPv4 header included
}

// Capture records what crosses the interfaces of a namespace, seen by an
// AF_PACKET socket opened inside it (the kernel's view, as tcpdump has it:
// what the daemons really sent and received, not what a test thinks they
// did): the IPv4 UDP datagrams to or from a port, or, with port 0, every
// IPv4 packet that arrives on an interface (a router namespace sees each
// forwarded packet once).
type Capture struct {
	fd   int
	port uint16
	mu   sync.Mutex
	got  []Datagram
	pkts []Packet
	seen map[string]bool
	stop chan struct{} // closed by Stop
	done chan struct{} // closed when run returns
	once sync.Once
}

// StartCapture starts capturing in ns until Stop (or the test's cleanup):
// UDP datagrams to or from port (Datagrams), or with port 0 every IPv4
// packet arriving on an interface (Packets). A datagram seen twice (as it
// leaves one veth and enters the bridge) is kept once.
func StartCapture(t testing.TB, ns *Netns, port uint16) *Capture {
	t.Helper()
	c := &Capture{port: port, seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{}), fd: -1}
	ns.Do(t, func() error {
		// ETH_P_ALL: a socket bound to one protocol sees only what comes
		// in; the taps for every protocol see what goes out too.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		c.fd = fd
		return nil
	})
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	go c.run()
	t.Cleanup(c.Stop)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Protocol != htons(unix.ETH_P_IP) {
			continue
		}
		if c.port == 0 {
			if ll.Pkttype != unix.PACKET_OUTGOING && n >= 20 && buf[0]>>4 == 4 {
				p := Packet{Proto: buf[9], Src: netip.AddrFrom4([4]byte(buf[12:16])), Dst: netip.AddrFrom4([4]byte(buf[16:20])),
					Raw: append([]byte(nil), buf[:n]...)}
				c.mu.Lock()
				c.pkts = append(c.pkts, p)
				c.mu.Unlock()
			}
			continue
		}
		d, ok := parseIPv4UDP(buf[:n])
		if !ok || (d.Src.Port() != c.port && d.Dst.Port() != c.port) {
			continue
		}
		key := d.Src.String() + d.Dst.String() + string(d.Payload)
		c.mu.Lock()
		if !c.seen[key] {
			c.seen[key] = true
			c.got = append(c.got, d)
		}
		c.mu.Unlock()
	}
}

// Stop ends the capture; Datagrams still returns what was seen.
func (c *Capture) Stop() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done // the reader wakes within its 100 ms receive timeout
		unix.Close(c.fd)
	})
}

// Packets returns a copy of the IPv4 packets captured so far (port 0), in
// order.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.pkts...)
}

// Datagrams returns a copy of the datagrams captured so far, in order.
func (c *Capture) Datagrams() []Datagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Datagram(nil), c.got...)
}

func parseIPv4UDP(b []byte) (Datagram, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return Datagram{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total > len(b) || total < ihl+8 || b[9] != unix.IPPROTO_UDP {
		return Datagram{}, false
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return Datagram{}, false // a fragment
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	u := b[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < 8 || ulen > len(u) {
		return Datagram{}, false
	}
	return Datagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: append([]byte(nil), u[8:ulen]...),
	}, true
}

// Spoofer sends IPv4 UDP datagrams with any source address and port from
// a raw socket (IPPROTO_RAW, so the header is ours) opened in a namespace:
// what an attacker on the path, or anywhere without source filtering, can
// send.
type Spoofer struct{ fd int }

// NewSpoofer opens the raw socket in ns; it is closed on cleanup.
func NewSpoofer(t testing.TB, ns *Netns) *Spoofer {
	t.Helper()
	s := &Spoofer{fd: -1}
	ns.Do(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		s.fd = fd
		return nil
	})
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// Send sends payload from src to dst. The UDP checksum is computed, so
// the datagram is delivered as any other.
func (s *Spoofer) Send(src, dst netip.AddrPort, payload []byte) error {
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:4], uint16(len(pkt)))
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[10:12], ^uint16(sum16(0, pkt[:20])))
	u := pkt[20:]
	binary.BigEndian.PutUint16(u[0:2], src.Port())
	binary.BigEndian.PutUint16(u[2:4], dst.Port())
	binary.BigEndian.PutUint16(u[4:6], uint16(8+len(payload)))
	copy(u[8:], payload)
	pseudo := make([]byte, 12)
	copy(pseudo[0:4], s4[:])
	copy(pseudo[4:8], d4[:])
	pseudo[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(u)))
	cs := ^uint16(sum16(sum16(0, pseudo), u))
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], cs)
	return unix.Sendto(s.fd, pkt, 0, &unix.SockaddrInet4{Addr: d4})
}

// sum16 adds b to the one's-complement sum acc (RFC 1071), folded.
func sum16(acc uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return acc
}

// SendPacket sends a whole IPv4 packet as given (header included: any
// protocol, any source), to its destination address: an ESP packet
// captured or forged, injected where the Spoofer's namespace routes it.
func (s *Spoofer) SendPacket(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return fmt.Errorf("testnet: not an IPv4 packet (%d octets)", len(pkt))
	}
	return unix.Sendto(s.fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])})
}
