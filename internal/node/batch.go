package node

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// The node's own IPv4 UDP sockets read and write several datagrams per
// system call (recvmmsg, sendmmsg, through golang.org/x/net as
// wireguard-go's conn does): a key server answering thousands of
// registrations a second spent a sixth of its CPU in one sendto per
// datagram and in waking its loop once per datagram read (issue 18). The
// reader hands the loop what one recvmmsg returned as one batch; the loop
// queues what a turn sends on each socket and flushes it before it waits
// again (flush). Other sockets (iked's virtual ones, IPv6 or dual-stack
// ones: sendmmsg there takes no IPv4 destination) go one datagram per
// call as before.

// readBatch is the most datagrams one recvmmsg returns; each slot is a
// 64 KiB buffer (only the pages datagrams touch become resident).
const readBatch = 16

// inQueue bounds the datagrams the readers hand the loop and it has not
// taken yet (n.in holds inQueue/readBatch batches): while the loop is
// busy, what arrives waits in the sockets' receive buffers (sockbuf.go),
// bounded by the kernel, which drops the rest and counts it (kernelDrops:
// the counter socket_receive_drops). Before batching n.in held 1,024
// datagrams; holding 1,024 batches let up to 16,384 datagrams (up to
// 1 GiB of 64 KiB ones) pile up in user space (issue 18, review).
const inQueue = 1024

// writeBatch is the most datagrams one sendmmsg carries.
const writeBatch = 64

// batchConn reads and writes several datagrams per call:
// *ipv4.PacketConn.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// batchOf is c's batching side: an IPv4 *net.UDPConn's, else nil.
func batchOf(c PacketConn) batchConn {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := u.SyscallConn()
	if err != nil {
		return nil
	}
	domain := -1
	rc.Control(func(fd uintptr) {
		if d, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
			domain = d
		}
	})
	if domain != unix.AF_INET {
		return nil
	}
	return ipv4.NewPacketConn(u)
}

// sockIO counts a socket's datagrams and the system calls that moved them.
type sockIO struct {
	readCalls, readDatagrams atomic.Uint64 // written by the reader goroutine
	sendCalls, sent          uint64        // the loop's
}

// outbound is a datagram queued by send until the loop turn's flush.
type outbound struct {
	to   netip.AddrPort
	data []byte
}

// sendQueue is what a loop turn sends on a socket, and the reused
// messages and addresses of its sendmmsg calls.
type sendQueue struct {
	q []outbound
	w *directWriter // a batching socket's raw sendmmsg
}

// readBatches is the reader of a batching socket: one recvmmsg, one batch
// for the loop.
func (n *Node) readBatches(s *sock, b batchConn) {
	ms := make([]ipv4.Message, readBatch)
	bufs := make([][]byte, readBatch)
	for i := range ms {
		bufs[i] = make([]byte, 65536)
		ms[i].Buffers = bufs[i : i+1]
	}
	for {
		k, err := b.ReadBatch(ms, 0)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A wake meant for the loop's direct read (wake loaded the
			// conn just before leaveDirect handed the socket to this
			// reader) set a past deadline: clear it and read on, or the
			// socket would never be read again.
			if d, ok := s.conn.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Time{}) == nil {
				continue
			}
		}
		if err != nil {
			return
		}
		s.io.readCalls.Add(1)
		s.io.readDatagrams.Add(uint64(k))
		batch := make([]datagram, 0, k)
		for i := range k {
			ua, ok := ms[i].Addr.(*net.UDPAddr)
			if !ok || ms[i].Flags&unix.MSG_TRUNC != 0 {
				continue // longer than any UDP payload: cannot happen
			}
			from := ua.AddrPort()
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			batch = append(batch, datagram{sock: s, from: from, data: append([]byte(nil), bufs[i][:ms[i].N]...)})
		}
		if len(batch) == 0 {
			continue
		}
		// Wait for the event loop rather than drop (read).
		select {
		case n.in <- batch:
		case <-n.stopped:
			return
		}
	}
}

// flush sends what the loop turn queued on every socket.
func (n *Node) flush() {
	for _, s := range n.socks {
		n.flushSock(s)
	}
	for _, s := range n.mcastSocks {
		n.flushSock(s)
	}
}

// flushSock sends s's queued datagrams: by sendmmsg on a batching socket,
// else one call each. A datagram the socket refuses is dropped (the
// retransmission timers' business), counted (socket_send_failures), and
// the rest still go.
func (n *Node) flushSock(s *sock) {
	q := &s.out
	if len(q.q) == 0 {
		return
	}
	defer func() {
		clear(q.q)
		q.q = q.q[:0]
	}()
	if u, ok := s.conn.(*net.UDPConn); ok && s.batch != nil { // batchOf: an IPv4 *net.UDPConn
		if q.w == nil || q.w.conn != u {
			q.w, _ = newDirectWriter(u)
		}
		if q.w != nil {
			n.flushRaw(s, q.w)
			return
		}
	}
	for _, o := range q.q {
		s.io.sendCalls++
		if _, err := s.conn.WriteToUDPAddrPort(o.data, o.to); err == nil {
			s.io.sent++
		} else {
			n.stats.sendFailed++
		}
	}
}

// flushRaw is flushSock's sendmmsg by raw system calls (directWriter).
func (n *Node) flushRaw(s *sock, w *directWriter) {
	defer w.release()
	q := &s.out
	for i := 0; i < len(q.q); {
		k := min(len(q.q)-i, writeBatch)
		m := w.fill(q.q[i : i+k])
		n.stats.sendFailed += uint64(k - m) // not IPv4: an IPv4 socket cannot send them
		i += k
		for j := 0; j < m; {
			s.io.sendCalls++
			sent, err := w.write(j)
			if err != nil || sent <= 0 {
				sent = 1 // sendmmsg fails only on its first datagram: skip it
				n.stats.sendFailed++
			} else {
				s.io.sent += uint64(sent)
			}
			j += sent
		}
	}
}

// skMeminfoDrops is SK_MEMINFO_DROPS, the index of sk_drops in what
// SO_MEMINFO returns (linux/sock_diag.h: SK_MEMINFO_VARS is 9).
const skMeminfoDrops, skMeminfoVars = 8, 9

// kernelDrops is how many datagrams the kernel dropped on c's socket
// (sk_drops: its receive buffer was full, or a checksum failed); 0 for a
// socket that is not the node's own UDP socket (iked's virtual ones: the
// broker's socket is where those are lost) or when the kernel does not
// say.
func kernelDrops(c PacketConn) uint64 {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return 0
	}
	rc, err := u.SyscallConn()
	if err != nil {
		return 0
	}
	var v uint64
	rc.Control(func(fd uintptr) {
		var info [skMeminfoVars]uint32
		l := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e == 0 && l >= (skMeminfoDrops+1)*4 {
			v = uint64(info[skMeminfoDrops])
		}
	})
	return v
}
