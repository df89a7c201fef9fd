package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// UDPLink carries the engine's ESP in UDP (RFC 3948): the payload of each
// UDP datagram is the ESP packet (SPI first), without the outer IPv4
// header the engine built.
//
// This is a lab and NAT-T-style transport, not address preservation on the
// wire: the datagrams travel between the members' own addresses, and the
// preserved outer destination (an inner host address) only selects, through
// the peer map, the member to send to, as a provider core's routing table
// would. `groupvpn lab` runs its members' engines over it on loopback, with
// no privileges.
//
// Demultiplexing of what arrives (RFC 3948 §2): a one-octet payload 0xFF is
// a NAT-keepalive, ignored (§2.3); a payload whose first four octets are
// zero (the non-ESP marker, §2.2) is IKE, which the engine does not speak on
// this socket: counted and dropped; a payload too short for an ESP header is
// dropped; anything else is ESP (its SPI is never 0, §2.1) and goes to the
// engine as an IPv4 packet whose header the link writes: protocol 50, the
// UDP sender's address as source, the link's own as destination. The UDP
// checksum is sent as zero when the kernel allows it (§2.1: SHOULD for
// IPv4) and never relied on.
//
// The link carries ESP only: a clear packet the engine passes (a deny
// entry, fail-open) has no encapsulation here and is refused, counted as
// not carried (and as a send error by the engine).
type UDPLink struct {
	fd     int
	local  netip.AddrPort
	peers  atomic.Pointer[[]Peer]
	mirror func(Direction, []byte)
	tx, rx *mmsg // used by Send and Receive only
	st     udpStats

	mu        sync.Mutex // Drops' reading of the socket against Close
	closed    bool
	lastDrops uint64
}

// Peer is one entry of a UDPLink's peer map: ESP whose outer destination
// is in Prefix goes to Addr.
type Peer struct {
	Prefix netip.Prefix
	Addr   netip.AddrPort
}

// Direction tells a mirror whether a datagram was sent or received.
type Direction uint8

// Directions.
const (
	Sent Direction = iota
	Received
)

// UDPConfig is what ListenUDP needs.
type UDPConfig struct {
	// Local is the IPv4 address and port to bind (port 0: any free one).
	Local netip.AddrPort
	// Peers is the first peer map (SetPeers replaces it).
	Peers []Peer
	// Mirror, when set, is called with the UDP payload of every datagram
	// the link sends and receives, as a switch's port mirror would copy
	// it (`groupvpn lab` checks that nothing but ESP crossed). It runs on
	// the forwarding goroutines and must not retain the slice.
	Mirror func(Direction, []byte)
}

// UDPStats are a UDPLink's counters.
type UDPStats struct {
	Sent       uint64 // ESP datagrams sent
	Received   uint64 // ESP datagrams received and passed to the engine
	Keepalives uint64 // NAT-keepalives received (RFC 3948 §2.3), ignored
	NonESP     uint64 // datagrams with the non-ESP marker (IKE, RFC 3948 §2.2), dropped
	Short      uint64 // datagrams too short for an ESP header, dropped
	NotCarried uint64 // packets to send that are not ESP (clear), refused
	NoPeer     uint64 // ESP for a destination no peer covers, refused
	Drops      uint64 // datagrams the kernel dropped: the socket buffer was full
}

type udpStats struct {
	sent, received, keepalives, nonESP, short, notCarried, noPeer atomic.Uint64
}

// ListenUDP opens the UDP socket of a link.
func ListenUDP(cfg UDPConfig) (*UDPLink, error) {
	if !cfg.Local.Addr().Is4() {
		return nil, fmt.Errorf("dataplane: UDP link: %v is not an IPv4 address", cfg.Local)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("dataplane: UDP link: %w", err)
	}
	l := &UDPLink{fd: fd, mirror: cfg.Mirror, tx: newMmsg(0), rx: newMmsg(0)}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: cfg.Local.Addr().As4(), Port: int(cfg.Local.Port())}); err != nil {
		l.Close()
		return nil, fmt.Errorf("dataplane: UDP link: bind %v: %w", cfg.Local, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("dataplane: UDP link: %w", err)
	}
	in4 := sa.(*unix.SockaddrInet4)
	l.local = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) // RFC 3948 §2.1: zero checksum
	if err := tuneRecv(fd); err != nil {
		l.Close()
		return nil, err
	}
	l.SetPeers(cfg.Peers)
	return l, nil
}

// LocalAddr is the address the link is bound to.
func (l *UDPLink) LocalAddr() netip.AddrPort { return l.local }

// SetPeers replaces the peer map; the longest prefix wins. Safe while the
// link forwards.
func (l *UDPLink) SetPeers(peers []Peer) {
	p := slices.Clone(peers)
	slices.SortStableFunc(p, func(a, b Peer) int { return b.Prefix.Bits() - a.Prefix.Bits() })
	l.peers.Store(&p)
}

// peer returns where ESP for the outer destination dst goes.
func (l *UDPLink) peer(dst [4]byte) (netip.AddrPort, bool) {
	a := netip.AddrFrom4(dst)
	for _, p := range *l.peers.Load() {
		if p.Prefix.Contains(a) {
			return p.Addr, true
		}
	}
	return netip.AddrPort{}, false
}

// Send sends the ESP of each packet to the peer of its outer destination.
func (l *UDPLink) Send(pkts [][]byte) int {
	m := l.tx.grow(len(pkts))
	failed, k := 0, 0
	for _, p := range pkts {
		payload, ok := udpPayload(p)
		if !ok {
			l.st.notCarried.Add(1)
			failed++
			continue
		}
		to, ok := l.peer([4]byte(p[16:20]))
		if !ok || !to.Addr().Is4() {
			l.st.noPeer.Add(1)
			failed++
			continue
		}
		if l.mirror != nil {
			l.mirror(Sent, payload)
		}
		m.setTo(k, payload, to.Addr().As4(), to.Port())
		k++
	}
	if k == 0 {
		return failed
	}
	bad := sendmmsg(l.fd, m, k)
	l.st.sent.Add(uint64(k - bad))
	return failed + bad
}

// udpPayload returns the ESP packet that an IPv4 packet carrying ESP
// carries, the UDP payload of RFC 3948 §2.1; ok is false for anything else
// (a clear packet, a fragment, an SPI of 0, which a receiver would read as
// the non-ESP marker).
func udpPayload(p []byte) ([]byte, bool) {
	if len(p) < ipv4Len || p[0]>>4 != 4 || p[9] != unix.IPPROTO_ESP {
		return nil, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < ipv4Len || total < ihl+espMin || total > len(p) || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
		return nil, false
	}
	esp := p[ihl:total]
	if binary.BigEndian.Uint32(esp) == 0 {
		return nil, false
	}
	return esp, true
}

const (
	ipv4Len = 20 // the IPv4 header Receive writes before each ESP packet
	espMin  = 8  // SPI and sequence number
)

// Receive reads datagrams, drops what is not ESP (counted) and returns the
// ESP ones as IPv4 packets. It may reorder bufs.
func (l *UDPLink) Receive(bufs [][]byte, sizes []int) (int, error) {
	m := l.rx.grow(len(bufs))
	for i, b := range bufs {
		m.setRecv(i, b[ipv4Len:])
	}
	r, err := recvmmsg(l.fd, m, len(bufs))
	if err != nil {
		return 0, err
	}
	local := l.local.Addr().As4()
	k := 0
	for i := range r {
		n := int(m.hdrs[i].n)
		if l.mirror != nil {
			l.mirror(Received, bufs[i][ipv4Len:ipv4Len+n])
		}
		src, _ := m.from(i)
		kind, size := espFromUDP(bufs[i], n, src, local)
		switch kind {
		case udpKeepalive:
			l.st.keepalives.Add(1)
			continue
		case udpNonESP:
			l.st.nonESP.Add(1)
			continue
		case udpShort:
			l.st.short.Add(1)
			continue
		}
		l.st.received.Add(1)
		bufs[k], bufs[i] = bufs[i], bufs[k]
		sizes[k] = size
		k++
	}
	return k, nil
}

// What a UDP payload is (RFC 3948 §2).
const (
	udpESP       = iota
	udpKeepalive // one octet 0xFF (§2.3)
	udpNonESP    // four zero octets first: IKE (§2.2)
	udpShort     // too short for an ESP header
)

// espFromUDP classifies the n-octet UDP payload at buf[ipv4Len:] and, when
// it is ESP, writes before it the IPv4 header of a packet from src to dst
// carrying it (protocol 50) and returns the packet's length.
func espFromUDP(buf []byte, n int, src, dst [4]byte) (kind, size int) {
	p := buf[ipv4Len : ipv4Len+n]
	switch {
	case n == 1 && p[0] == 0xff:
		return udpKeepalive, 0
	case n >= 4 && binary.BigEndian.Uint32(p) == 0:
		return udpNonESP, 0
	case n < espMin || ipv4Len+n > 0xffff:
		return udpShort, 0
	}
	h := buf[:ipv4Len]
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:4], uint16(ipv4Len+n))
	h[4], h[5], h[6], h[7] = 0, 0, 0, 0
	h[8], h[9] = 64, unix.IPPROTO_ESP
	h[10], h[11] = 0, 0
	copy(h[12:16], src[:])
	copy(h[16:20], dst[:])
	binary.BigEndian.PutUint16(h[10:12], ^ipChecksum(h))
	return udpESP, ipv4Len + n
}

// ipChecksum is the ones' complement sum of an IPv4 header.
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// Stats returns a copy of the link's counters.
func (l *UDPLink) Stats() UDPStats {
	s := &l.st
	return UDPStats{Sent: s.sent.Load(), Received: s.received.Load(), Keepalives: s.keepalives.Load(),
		NonESP: s.nonESP.Load(), Short: s.short.Load(), NotCarried: s.notCarried.Load(),
		NoPeer: s.noPeer.Load(), Drops: l.Drops()}
}

// Drops reads the kernel's drop count of the socket, or the last one read
// before Close.
func (l *UDPLink) Drops() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropsLocked()
}

func (l *UDPLink) dropsLocked() uint64 {
	if !l.closed {
		if d, ok := socketDrops(l.fd); ok {
			l.lastDrops = d
		}
	}
	return l.lastDrops
}

// Close closes the socket.
func (l *UDPLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.dropsLocked()
	l.closed = true
	if err := unix.Close(l.fd); err != nil {
		return fmt.Errorf("dataplane: UDP link: close: %w", err)
	}
	return nil
}
