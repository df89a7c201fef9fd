package node

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDatagramFloor is what the kernel and the node's own batched
// I/O (directReader, directWriter: recvmmsg and sendmmsg as raw system
// calls) cost a key server per registration with no protocol work at
// all: its five answers sent (a loopback send delivers each to the
// receiver's socket in the sender's call, as the KS's are to the load
// generator's) and the five requests read, 200-octet datagrams in batches
// of 16, the answers to a different member address each (127.64.0.0/10,
// as groupvpn bench scale's members). One goroutine plays both ends, so
// no thread ever waits or wakes: the floor of a busy KS. The process's CPU
// (user + system) counts both ends, which do the same work mirrored: half
// of it per datagram each way is the KS's, ks-floor-ns/reg that times
// five (issue 18: the KS's CPU per registration against its crypto
// ceiling; docs/scale.md, "The tenth session").
func BenchmarkDatagramFloor(b *testing.B) {
	const batch, size, perReg = 16, 200, 5
	ks, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ks.Close()
	gen, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero}) // every member address, as the generator's socket
	if err != nil {
		b.Fatal(err)
	}
	defer gen.Close()
	for _, c := range []*net.UDPConn{ks, gen} {
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
	}
	ksW, err := newDirectWriter(ks)
	if err != nil {
		b.Fatal(err)
	}
	genW, err := newDirectWriter(gen)
	if err != nil {
		b.Fatal(err)
	}
	ksR, genR := newDirectReader(), newDirectReader()
	genPort := uint16(gen.LocalAddr().(*net.UDPAddr).Port)
	ksAP := ks.LocalAddr().(*net.UDPAddr).AddrPort()
	payload := make([]byte, size)
	toKS := make([]outbound, batch)
	for i := range toKS {
		toKS[i] = outbound{to: ksAP, data: payload}
	}
	toGen := make([]outbound, batch)
	member := uint32(0)
	send := func(w *directWriter, out []outbound) {
		for from, k := 0, w.fill(out); from < k; {
			n, err := w.write(from)
			if err != nil {
				b.Fatal(err)
			}
			from += n
		}
	}
	recv := func(r *directReader, c *net.UDPConn) {
		for got := 0; got < batch; {
			n, err := r.read(c, syscall.MSG_DONTWAIT)
			if err != nil {
				b.Fatalf("%d of %d datagrams: %v", got, batch, err)
			}
			got += n
		}
	}
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		send(genW, toKS)
		recv(ksR, ks)
		for i := range toGen {
			member = (member + 1) % (1 << 22)
			a := 127<<24 | 64<<16 | member
			toGen[i] = outbound{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), genPort), data: payload}
		}
		send(ksW, toGen)
		recv(genR, gen)
	}
	b.StopTimer()
	perDatagram := float64(processCPU()-cpu0) / float64(b.N) / (2 * batch) // each way
	b.ReportMetric(perDatagram, "cpu-ns/datagram")
	b.ReportMetric(perDatagram*perReg, "ks-floor-ns/reg") // half of 2 x 5 datagrams' both ends
}

// processCPU is the process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
