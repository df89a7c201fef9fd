package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is the one UDP socket every simulated GM of a generator shares
// (issue 18: no socket per GM). It is bound to 0.0.0.0 and an ephemeral
// port, so it receives the datagrams addressed to any local address on that
// port (all of 127.0.0.0/8 is local on Linux), and learns each one's
// destination from IP_PKTINFO; it sends from any local address with an
// IP_PKTINFO control message naming the source (ipi_spec_dst). The key
// server therefore sees each GM at its own address and port and answers
// there, and the generator demultiplexes by destination address.
type Conn struct {
	c    *net.UDPConn
	rc   syscall.RawConn // c's, for recvmmsg and sendmmsg (ReceiveBatch, SendBatch)
	port uint16
}

// Listen opens the shared socket on port (0: an ephemeral one), with
// IP_PKTINFO on and buffers of bufBytes (forced when root).
func Listen(ctx context.Context, port uint16, bufBytes int) (*Conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], bufBytes) != nil {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], bufBytes)
				}
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("loadgen: shared socket: %w", err)
	}
	c := pc.(*net.UDPConn)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("loadgen: shared socket: %w", err)
	}
	return &Conn{c: c, rc: rc, port: uint16(c.LocalAddr().(*net.UDPAddr).Port)}, nil
}

// Port is the port every simulated GM uses.
func (c *Conn) Port() uint16 { return c.port }

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Send sends b to to from the local address from. Safe for concurrent use.
func (c *Conn) Send(from netip.Addr, to netip.AddrPort, b []byte) error {
	var oob [unix.SizeofCmsghdr + unix.SizeofInet4Pktinfo + 8]byte
	n := pktinfo(oob[:], from)
	_, _, err := c.c.WriteMsgUDPAddrPort(b, oob[:n], to)
	return err
}

// pktinfo writes an IP_PKTINFO control message naming src as the source
// into oob and returns its length.
func pktinfo(oob []byte, src netip.Addr) int {
	space := unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	clear(oob[:space])
	putLen(oob, unix.CmsgLen(unix.SizeofInet4Pktinfo))
	binary.NativeEndian.PutUint32(oob[lenSize:], unix.IPPROTO_IP)
	binary.NativeEndian.PutUint32(oob[lenSize+4:], unix.IP_PKTINFO)
	data := oob[unix.CmsgLen(0):]
	clear(data[:unix.SizeofInet4Pktinfo])
	a := src.As4()
	copy(data[4:8], a[:]) // ipi_spec_dst: the source address to use
	return space
}

// Outbound is a datagram for SendBatch: Data to To from the GM address
// From.
type Outbound struct {
	From netip.Addr
	To   netip.AddrPort
	Data []byte
}

// sendBatchMax is the most datagrams one sendmmsg carries.
const sendBatchMax = 64

// The shared socket's batches are sent and read by sendmmsg and recvmmsg
// made as raw system calls (the socket is non-blocking: MSG_DONTWAIT), not
// through the runtime's syscall entry (x/net's WriteBatch and ReadBatch
// did). A sendmmsg of a few datagrams to the key server on loopback lasts
// tens of microseconds (each datagram is delivered to the key server's
// socket inside it): with GOMAXPROCS=1, a goroutine in a system call that
// long has its P taken by sysmon, which wakes another thread to spin for
// work, and the goroutine, back from the call, waits for a P; sysmon, busy
// retaking, polled every 20 µs. That was 8-10% of the generator's CPU
// (perf: sysmon's usleep, findRunnable, netpoll, exitsyscallNoP, switches;
// issue 18). A read that finds nothing waits in the runtime's poller
// (syscall.RawConn.Read), deadlines included, as before.

// SendBuf is SendBatch's reusable state: one per sending goroutine.
type SendBuf struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	oobs  []byte // sendBatchMax IP_PKTINFO messages
}

// SendBatch sends out, each datagram from its own address (IP_PKTINFO),
// up to 64 per system call (sendmmsg): the generator's CPU per datagram
// is the key server's budget on a shared host (issue 18). It returns the
// datagrams sent and the calls made; a datagram the socket refuses is
// skipped (counted in out minus sent) and the rest still go.
func (c *Conn) SendBatch(b *SendBuf, out []Outbound) (sent, calls int) {
	space := unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	if b.hdrs == nil {
		b.hdrs = make([]unix.Mmsghdr, sendBatchMax)
		b.iovs = make([]unix.Iovec, sendBatchMax)
		b.names = make([]unix.RawSockaddrInet4, sendBatchMax)
		b.oobs = make([]byte, sendBatchMax*space)
	}
	for len(out) > 0 {
		k := 0
		for _, o := range out[:min(len(out), sendBatchMax)] {
			to := o.To.Addr().Unmap()
			if !to.Is4() || !o.From.Is4() || len(o.Data) == 0 {
				continue // the shared socket is IPv4
			}
			b.names[k] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.As4()}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&b.names[k].Port))[:], o.To.Port())
			b.iovs[k] = unix.Iovec{Base: &o.Data[0]}
			b.iovs[k].SetLen(len(o.Data))
			oob := b.oobs[k*space : (k+1)*space]
			pktinfo(oob, o.From)
			h := &b.hdrs[k]
			*h = unix.Mmsghdr{}
			h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[k]))
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
			h.Hdr.Iov = &b.iovs[k]
			h.Hdr.SetIovlen(1)
			h.Hdr.Control = &oob[0]
			h.Hdr.SetControllen(space)
			k++
		}
		out = out[min(len(out), sendBatchMax):]
		for i := 0; i < k; {
			calls++
			n, err := c.mmsg(unix.SYS_SENDMMSG, b.hdrs[i:k], false)
			if err != nil || n <= 0 {
				n = 1 // sendmmsg fails only on its first datagram: skip it
			} else {
				sent += n
			}
			i += n
		}
		clear(b.iovs[:k]) // the datagrams are the caller's
		clear(b.hdrs[:k])
	}
	return sent, calls
}

// mmsg makes one sendmmsg or recvmmsg (trap) of hdrs as a raw system call,
// MSG_DONTWAIT; when the socket is not ready it waits in the runtime's
// poller (a read until its deadline), when wait is set, and returns EAGAIN
// otherwise.
func (c *Conn) mmsg(trap uintptr, hdrs []unix.Mmsghdr, read bool) (int, error) {
	var n uintptr
	var errno syscall.Errno
	f := func(fd uintptr) bool {
		for {
			n, _, errno = unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN
			}
		}
	}
	var err error
	if read {
		err = c.rc.Read(f)
	} else {
		err = c.rc.Write(f)
	}
	runtime.KeepAlive(hdrs)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// RecvBuf is ReceiveBatch's reusable state: one per reading goroutine.
type RecvBuf struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	bufs  [][]byte
	oobs  []byte
}

// recvOOB is the room for one datagram's control messages (IP_PKTINFO).
const recvOOB = 128

// NewRecvBuf prepares n datagrams' buffers (64 KiB each, only the pages
// datagrams touch become resident).
func NewRecvBuf(n int) *RecvBuf {
	b := &RecvBuf{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet4, n),
		bufs: make([][]byte, n), oobs: make([]byte, n*recvOOB)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 65536)
		b.iovs[i] = unix.Iovec{Base: &b.bufs[i][0]}
		b.iovs[i].SetLen(len(b.bufs[i]))
	}
	return b
}

// ReceiveBatch reads up to len(b) datagrams with one system call
// (recvmmsg), waiting for the first until the read deadline; Datagram
// reads them.
func (c *Conn) ReceiveBatch(b *RecvBuf) (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.Iov = &b.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Control = &b.oobs[i*recvOOB]
		h.Hdr.SetControllen(recvOOB)
	}
	return c.mmsg(unix.SYS_RECVMMSG, b.hdrs, true)
}

// Datagram is the i-th datagram of the last ReceiveBatch (data valid until
// the next): its payload, source and destination (from IP_PKTINFO).
func (b *RecvBuf) Datagram(i int) (data []byte, from netip.AddrPort, dst netip.Addr) {
	h := &b.hdrs[i]
	if h.Hdr.Namelen >= unix.SizeofSockaddrInet4 && b.names[i].Family == unix.AF_INET {
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&b.names[i].Port))[:])
		from = netip.AddrPortFrom(netip.AddrFrom4(b.names[i].Addr), port)
	}
	oobn := min(int(h.Hdr.Controllen), recvOOB)
	return b.bufs[i][:min(int(h.Len), len(b.bufs[i]))], from, DestinationOf(b.oobs[i*recvOOB : i*recvOOB+oobn])
}

// Receive reads one datagram into buf; dst is the address it was sent to.
func (c *Conn) Receive(buf, oob []byte) (n int, from netip.AddrPort, dst netip.Addr, err error) {
	n, oobn, _, from, err := c.c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, from, dst, err
	}
	return n, from, DestinationOf(oob[:oobn]), nil
}

// DestinationOf returns the destination address an IP_PKTINFO control
// message in oob names (ipi_addr), or the invalid address when oob holds
// none. It never panics on any input.
func DestinationOf(oob []byte) netip.Addr {
	for len(oob) >= unix.SizeofCmsghdr {
		l64 := getLen(oob)
		if l64 < uint64(unix.SizeofCmsghdr) || l64 > uint64(len(oob)) {
			return netip.Addr{}
		}
		l := int(l64)
		level := binary.NativeEndian.Uint32(oob[lenSize:])
		typ := binary.NativeEndian.Uint32(oob[lenSize+4:])
		data := oob[unix.CmsgLen(0):l]
		if level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo {
			return netip.AddrFrom4([4]byte(data[8:12])) // ipi_addr: the header's destination
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return netip.Addr{}
		}
		oob = oob[next:]
	}
	return netip.Addr{}
}

// addrIndex is the offset of a from base in the IPv4 address space.
func addrIndex(base, a netip.Addr) (uint32, bool) {
	if !a.Is4() || !base.Is4() {
		return 0, false
	}
	x, b := a.As4(), base.As4()
	u, v := binary.BigEndian.Uint32(x[:]), binary.BigEndian.Uint32(b[:])
	if u < v {
		return 0, false
	}
	return u - v, true
}

// addrAt is the address i after base.
func addrAt(base netip.Addr, i int) netip.Addr {
	b := base.As4()
	var x [4]byte
	binary.BigEndian.PutUint32(x[:], binary.BigEndian.Uint32(b[:])+uint32(i))
	return netip.AddrFrom4(x)
}

// lenSize is the size of a cmsghdr's cmsg_len (a size_t).
const lenSize = unix.SizeofCmsghdr - 8

func putLen(b []byte, n int) {
	if lenSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(n))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(n))
	}
}

func getLen(b []byte) uint64 {
	if lenSize == 8 {
		return binary.NativeEndian.Uint64(b)
	}
	return uint64(binary.NativeEndian.Uint32(b))
}
