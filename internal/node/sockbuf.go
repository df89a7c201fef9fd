package node

import (
	"net"
	"syscall"
)

// readBuffer is the receive buffer a node asks for: a KS answered by
// thousands of GMs at once (registrations, rekey acknowledgements) must
// not lose datagrams to a full socket buffer.
const readBuffer = 16 << 20

// growReadBuffer enlarges the socket's receive buffer; as root it goes
// past net.core.rmem_max with SO_RCVBUFFORCE. Failure only costs
// retransmissions.
func growReadBuffer(c *net.UDPConn) {
	c.SetReadBuffer(readBuffer)
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, readBuffer)
		})
	}
}
