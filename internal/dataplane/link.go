package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Link is the engine's network side, in the style of wireguard-go's
// conn.Bind: batched sends and receives of IPv4 packets, and Close. The
// engine calls Send from its outbound goroutine and Receive from its
// inbound one (never either concurrently with itself), and Close once both
// have returned.
//
// RawLink (the default: raw IPv4 sockets, ESP as IP protocol 50 with the
// preserved addresses on the wire) and UDPLink (ESP in UDP, RFC 3948, for
// the lab and NAT-T-style transports) implement it.
type Link interface {
	// Send sends pkts, each an IPv4 packet whose header is the outer one
	// the engine built (ESP with the preserved addresses), or a clear
	// packet the policy passes. It returns how many of them could not be
	// sent; the engine counts each as a send error. Send must not retain
	// pkts.
	Send(pkts [][]byte) (failed int)
	// Receive waits for ESP from the network, at most about 100 ms (the
	// engine checks for Close in between), and fills bufs[i][:sizes[i]]
	// with up to len(bufs) IPv4 packets carrying ESP. It returns how many
	// it filled: 0 when it timed out or was interrupted. err is non-nil
	// when the link cannot receive any more (closed). It may permute bufs
	// (all of the caller's buffers are alike).
	Receive(bufs [][]byte, sizes []int) (n int, err error)
	// Drops is how many arriving packets the link lost before the engine
	// saw them (a full socket buffer); it stays readable after Close.
	Drops() uint64
	// Close releases the link's sockets.
	Close() error
}

// RawLink sends the engine's packets on a raw IPv4 socket (IPPROTO_RAW:
// the engine writes the outer header) and receives ESP on a raw
// IPPROTO_ESP socket, both with sendmmsg/recvmmsg batching. It needs
// CAP_NET_RAW.
type RawLink struct {
	sendFD, recvFD int
	recv           *pollRecv // owns recvFD
	tx, rx         *mmsg     // used by Send and Receive only

	mu        sync.Mutex // Drops' reading of the socket against Close
	closed    bool
	lastDrops uint64
}

// rcvBuf is the receive buffer of the raw ESP socket.
const rcvBuf = 4 << 20

// recvTimeout is how long Receive blocks at most.
const recvTimeout = 100 * time.Millisecond

// NewRawLink opens the raw sockets in the calling thread's network
// namespace; mark is the SO_MARK of the send socket (Routes' FwMark: the
// engine's own packets are routed by the main table), 0 for none.
func NewRawLink(mark uint32) (*RawLink, error) {
	l := &RawLink{sendFD: -1, recvFD: -1, tx: newMmsg(0), rx: newMmsg(0)}
	var err error
	l.sendFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("dataplane: raw send socket: %w", err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(l.sendFD, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			l.Close()
			return nil, fmt.Errorf("dataplane: SO_MARK: %w", err)
		}
	}
	l.recvFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("dataplane: raw ESP socket: %w", err)
	}
	if err := tuneRecv(l.recvFD); err != nil {
		l.Close()
		return nil, err
	}
	if l.recv, err = newPollRecv(l.recvFD, "esp"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// pollRecv reads a receiving socket through Go's netpoller: Receive's
// goroutine parks while no packet is queued, instead of blocking a thread
// in recvmmsg (a thread blocked in a system call makes the runtime hand its
// processor to another thread and its monitor wake every 20 µs, which cost
// the engine a tenth of its CPU time under iperf3).
type pollRecv struct {
	f  *os.File
	rc syscall.RawConn
	// The arguments and results of one recvmmsg, and the function that
	// RawConn.Read calls, made once: no allocation per call.
	m     *mmsg
	n, r  int
	errno syscall.Errno
	do    func(fd uintptr) bool
}

// newPollRecv makes fd non-blocking and hands it to the netpoller; the
// pollRecv owns it from then on (close it with close).
func newPollRecv(fd int, name string) (*pollRecv, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("dataplane: %s socket: non-blocking: %w", name, err)
	}
	p := &pollRecv{f: os.NewFile(uintptr(fd), name)}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("dataplane: %s socket: %w", name, err)
	}
	p.rc = rc
	p.do = func(fd uintptr) bool {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&p.m.hdrs[0])), uintptr(p.n), unix.MSG_WAITFORONE, 0, 0)
		p.r, p.errno = int(r), errno
		return errno != unix.EAGAIN // EAGAIN: wait for the socket to be readable
	}
	return p, nil
}

// recvmmsg waits (up to recvTimeout) for the first datagram, then takes
// what else is queued, up to n, into m.
func (p *pollRecv) recvmmsg(m *mmsg, n int) (int, error) {
	if err := p.f.SetReadDeadline(time.Now().Add(recvTimeout)); err != nil {
		return 0, fmt.Errorf("dataplane: recvmmsg: %w", os.ErrClosed)
	}
	p.m, p.n = m, n
	err := p.rc.Read(p.do)
	p.m = nil
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil: // the file is closing
		return 0, fmt.Errorf("dataplane: recvmmsg: %w", os.ErrClosed)
	case p.errno == 0:
		return p.r, nil
	case p.errno == unix.EINTR:
		return 0, nil
	default:
		return 0, fmt.Errorf("dataplane: recvmmsg: %w", p.errno)
	}
}

func (p *pollRecv) close() error { return p.f.Close() }

// tuneRecv gives a receiving socket room for bursts and the receive
// timeout. SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it the kernel's
// bound for SO_RCVBUF applies.
func tuneRecv(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	tv := unix.NsecToTimeval(int64(recvTimeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("dataplane: SO_RCVTIMEO: %w", err)
	}
	return nil
}

// Send sends pkts on the raw socket, each to its outer destination.
func (l *RawLink) Send(pkts [][]byte) int {
	m := l.tx.grow(len(pkts))
	for i, p := range pkts {
		m.set(i, p, p[16:20])
	}
	return sendmmsg(l.sendFD, m, len(pkts))
}

// Receive reads IPv4 packets carrying ESP from the raw socket.
func (l *RawLink) Receive(bufs [][]byte, sizes []int) (int, error) {
	m := l.rx.grow(len(bufs))
	for i, b := range bufs {
		m.setRecv(i, b)
	}
	n, err := l.recv.recvmmsg(m, len(bufs))
	for i := range n {
		sizes[i] = int(m.hdrs[i].n)
	}
	return n, err
}

// Drops reads the kernel's drop count of the ESP socket (SO_MEMINFO), or
// the last one read before Close.
func (l *RawLink) Drops() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropsLocked()
}

func (l *RawLink) dropsLocked() uint64 {
	if !l.closed && l.recvFD >= 0 {
		if d, ok := socketDrops(l.recvFD); ok {
			l.lastDrops = d
		}
	}
	return l.lastDrops
}

// Close closes the sockets.
func (l *RawLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.dropsLocked() // the last count
	l.closed = true
	if l.sendFD >= 0 {
		unix.Close(l.sendFD)
	}
	switch {
	case l.recv != nil:
		l.recv.close()
	case l.recvFD >= 0:
		unix.Close(l.recvFD)
	}
	return nil
}

// socketDrops reads a socket's drop count (SO_MEMINFO).
func socketDrops(fd int) (uint64, bool) {
	var m [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(m))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&m[0])), uintptr(unsafe.Pointer(&l)), 0)
	return uint64(m[unix.SK_MEMINFO_DROPS]), errno == 0
}

// mmsg is a batch of datagrams for sendmmsg(2) and recvmmsg(2), each with
// its own address.
type mmsg struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	addrs []unix.RawSockaddrInet4
}

// mmsghdr is struct mmsghdr (x/sys/unix has none).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func newMmsg(n int) *mmsg {
	return &mmsg{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), addrs: make([]unix.RawSockaddrInet4, n)}
}

// grow makes room for n messages (allocating only when the batch grows).
func (m *mmsg) grow(n int) *mmsg {
	if len(m.hdrs) < n {
		*m = *newMmsg(n)
	}
	return m
}

// set makes message k the datagram b, sent to the IPv4 address dst (4
// octets) and port (0 for raw sockets).
func (m *mmsg) set(k int, b, dst []byte) {
	m.setTo(k, b, [4]byte(dst), 0)
}

func (m *mmsg) setTo(k int, b []byte, dst [4]byte, port uint16) {
	m.iovs[k].Base = &b[0]
	m.iovs[k].SetLen(len(b))
	m.addrs[k] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst}
	p := (*[2]byte)(unsafe.Pointer(&m.addrs[k].Port))
	p[0], p[1] = byte(port>>8), byte(port) // network order
	h := &m.hdrs[k].hdr
	h.Name = (*byte)(unsafe.Pointer(&m.addrs[k]))
	h.Namelen = unix.SizeofSockaddrInet4
	h.Iov = &m.iovs[k]
	h.SetIovlen(1)
}

// setRecv makes message k receive into b, with room for the sender's
// address.
func (m *mmsg) setRecv(k int, b []byte) {
	m.iovs[k].Base = &b[0]
	m.iovs[k].SetLen(len(b))
	h := &m.hdrs[k].hdr
	h.Name = (*byte)(unsafe.Pointer(&m.addrs[k]))
	h.Namelen = unix.SizeofSockaddrInet4
	h.Iov = &m.iovs[k]
	h.SetIovlen(1)
	h.Control, h.Controllen, h.Flags = nil, 0, 0
}

// from is the sender of received message k: its IPv4 address and port.
func (m *mmsg) from(k int) ([4]byte, uint16) {
	a := &m.addrs[k]
	p := (*[2]byte)(unsafe.Pointer(&a.Port))
	return a.Addr, uint16(p[0])<<8 | uint16(p[1])
}

// sendmmsg sends the first k messages of m on fd and returns how many the
// kernel refused (each is skipped).
//
// It tries without blocking first, as a raw system call the runtime does
// not see: a send of a batch takes a few hundred µs (the kernel forwards
// each packet as far as it can in the sender's context), long enough for
// the runtime to hand the goroutine's processor to another thread after 20
// µs in an ordinary system call, and for its monitor to keep waking every
// 20 µs to do so. Only when the socket's buffer is full (EAGAIN) does it
// fall back to the ordinary, blocking call.
func sendmmsg(fd int, m *mmsg, k int) (failed int) {
	for i := 0; i < k; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[i])), uintptr(k-i), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EAGAIN {
			r, _, errno = unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[i])), uintptr(k-i), 0, 0, 0)
		}
		switch {
		case errno == unix.EINTR:
		case errno != 0:
			failed++ // the first message of the rest failed
			i++
		default:
			i += int(r)
		}
	}
	return failed
}

// recvmmsg blocks (up to SO_RCVTIMEO) for the first datagram on fd, then
// takes what else is queued, up to n.
func recvmmsg(fd int, m *mmsg, n int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(n), unix.MSG_WAITFORONE, 0, 0)
	switch errno {
	case 0:
		return int(r), nil
	case unix.EAGAIN, unix.EINTR:
		return 0, nil // timeout or interrupted
	case unix.EBADF:
		return 0, fmt.Errorf("dataplane: recvmmsg: %w", os.ErrClosed)
	default:
		return 0, fmt.Errorf("dataplane: recvmmsg: %w", errno)
	}
}
