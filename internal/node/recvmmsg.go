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
	n, e := rawMmsg(unix.SYS_RECVMMSG, fd, r.hs, r.flags)
	r.n, r.errno = n, e
	if e != 0 {
		r.n = 0
	}
	return r.flags&unix.MSG_DONTWAIT != 0 || (e != unix.EAGAIN && e != unix.EWOULDBLOCK)
}

// rawMmsg makes one recvmmsg or sendmmsg (trap) of hs on the non-blocking
// socket fd as a raw system call: not through the runtime's entry, where
// sysmon takes the P from a call longer than its 20 µs tick (a loopback
// sendmmsg delivers its datagrams to the receiver in the call) and wakes
// another thread to run it, a switch each time with one P (as the load
// generator found: issue 18). The socket never blocks: without data or
// room the call returns EAGAIN, and the caller waits in the poller.
func rawMmsg(trap, fd uintptr, hs []unix.Mmsghdr, flags int) (int, syscall.Errno) {
	for {
		n, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), uintptr(flags), 0, 0)
		if e != unix.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(n), 0
		}
	}
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

// directWriter sends a socket's queued datagrams (IPv4: batchOf) with
// sendmmsg(2) as raw system calls (rawMmsg); the messages' headers,
// addresses and vectors are reused.
type directWriter struct {
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4

	conn *net.UDPConn
	rc   syscall.RawConn
	send func(fd uintptr) bool

	from, n int // the call's first message and outcome
	errno   syscall.Errno
}

func newDirectWriter(conn *net.UDPConn) (*directWriter, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	w := &directWriter{hs: make([]unix.Mmsghdr, writeBatch), iovs: make([]unix.Iovec, writeBatch),
		names: make([]unix.RawSockaddrInet4, writeBatch), conn: conn, rc: rc}
	w.send = w.sendmmsg
	return w, nil
}

func (w *directWriter) sendmmsg(fd uintptr) bool {
	w.n, w.errno = rawMmsg(unix.SYS_SENDMMSG, fd, w.hs[w.from:len(w.hs)], 0)
	return w.errno != unix.EAGAIN && w.errno != unix.EWOULDBLOCK
}

// fill lays out out's datagrams to IPv4 addresses (an IPv4 socket has no
// other), at most writeBatch, and returns how many.
func (w *directWriter) fill(out []outbound) int {
	w.hs = w.hs[:cap(w.hs)]
	k := 0
	for _, o := range out {
		a := o.to.Addr().Unmap()
		if !a.Is4() {
			continue
		}
		w.names[k] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&w.names[k].Port))[:], o.to.Port())
		w.iovs[k] = unix.Iovec{}
		if len(o.data) > 0 {
			w.iovs[k].Base = &o.data[0]
			w.iovs[k].SetLen(len(o.data))
		}
		h := &w.hs[k]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&w.names[k]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		h.Hdr.Iov = &w.iovs[k]
		h.Hdr.SetIovlen(1)
		k++
	}
	w.hs = w.hs[:k]
	return k
}

// write sends messages from of the filled ones with one sendmmsg, waiting
// in the poller while the socket has no room: how many were sent.
func (w *directWriter) write(from int) (int, error) {
	w.from = from
	if err := w.rc.Write(w.send); err != nil {
		return 0, err
	}
	if w.errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", w.errno)
	}
	return w.n, nil
}

// release drops the datagrams' references (they are the queue's).
func (w *directWriter) release() {
	clear(w.iovs)
	clear(w.hs[:cap(w.hs)])
}
