package node

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directReader is the loop's buffers for the direct socket (an IPv4 UDP
// socket: batchOf), read with one recvmmsg(2) per call. Unlike x/net's
// ReadBatch, which makes a *net.UDPAddr and its IP for every datagram
// (two allocations each, ten per registration on a key server: issue 18,
// the KS's CPU per registration), it decodes the sources from sockaddr_in
// buffers of its own, and its system call and its arguments are made once.
type directReader struct {
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	bufs  [][]byte

	conn *net.UDPConn    // whose rc is cached
	rc   syscall.RawConn // conn's
	recv func(fd uintptr) bool

	// The last call's flags and outcome.
	flags int
	n     int
	errno syscall.Errno
}

func newDirectReader() *directReader {
	r := &directReader{hs: make([]unix.Mmsghdr, readBatch), iovs: make([]unix.Iovec, readBatch),
		names: make([]unix.RawSockaddrInet4, readBatch), bufs: make([][]byte, readBatch)}
	for i := range r.hs {
		r.bufs[i] = make([]byte, 65536)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(len(r.bufs[i]))
		h := &r.hs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.recv = r.recvmmsg
	return r
}

// recvmmsg is the system call, as syscall.RawConn.Read runs it: done
// unless the socket is empty and the caller may wait (no MSG_DONTWAIT).
func (r *directReader) recvmmsg(fd uintptr) bool {
	for i := range r.hs {
		r.hs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		r.hs[i].Hdr.Flags = 0
		r.hs[i].Len = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(len(r.hs)), uintptr(r.flags), 0, 0)
	r.n, r.errno = int(n), e
	if e != 0 {
		r.n = 0
	}
	return r.flags&unix.MSG_DONTWAIT != 0 || (e != unix.EAGAIN && e != unix.EWOULDBLOCK)
}

// read receives up to readBatch datagrams from conn: their number, or the
// error (os.ErrDeadlineExceeded once conn's read deadline passed; EAGAIN
// with MSG_DONTWAIT and nothing waiting).
func (r *directReader) read(conn *net.UDPConn, flags int) (int, error) {
	if r.conn != conn {
		rc, err := conn.SyscallConn()
		if err != nil {
			return 0, err
		}
		r.conn, r.rc = conn, rc
	}
	r.flags = flags
	if err := r.rc.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	return r.n, nil
}

// datagram i of the last read: its source and its bytes (in the reader's
// buffer), false if it is not a whole IPv4 datagram.
func (r *directReader) datagram(i int) (netip.AddrPort, []byte, bool) {
	h, sa := &r.hs[i], &r.names[i]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 || sa.Family != unix.AF_INET || h.Hdr.Namelen < unix.SizeofSockaddrInet4 {
		return netip.AddrPort{}, nil, false
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), r.bufs[i][:h.Len:h.Len], true
}
