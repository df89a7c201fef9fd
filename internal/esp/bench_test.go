package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"
)

// The benchmark sizes are inner IPv4 packets of 64, 512 and 1400 octets,
// AES-GCM-128; SetBytes is the inner size, so MB/s are inner octets.
var benchSizes = []int{64, 512, 1400}

func benchSA(b *testing.B) *SA { return mustNew(b, transforms()[0].tek, Config{}) }

// BenchmarkSeal seals one inner packet into a reused buffer.
func BenchmarkSeal(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := benchSA(b)
			inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, 64, true)
			buf := make([]byte, 0, 2048)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(buf[:0], inner); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen opens (in place, after copying it from a pristine one) a
// sealed packet with anti-replay on: a new sequence number every time,
// from a ring of 256 packets sealed beforehand (small enough to stay in
// cache, as the ceiling's one packet does), the sender's window emptied
// in place each lap of the ring.
func BenchmarkOpen(b *testing.B) {
	const ring = 256
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tx := benchSA(b)
			inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, 64, true)
			pkts := make([][]byte, ring)
			for i := range pkts {
				pkts[i], _ = tx.Seal(nil, inner)
			}
			work := make([]byte, len(pkts[0]))
			rx := benchSA(b)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == ring {
					i = 0
					emptyWindows(rx)
				}
				copy(work, pkts[i])
				if _, err := rx.Open(work); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// emptyWindows empties every sender window of s in place (benchmarks only).
func emptyWindows(s *SA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.senders {
		f.SetWindow(s.window)
	}
}

// BenchmarkRawGCM is the ceiling: crypto/cipher AES-GCM-128 sealing in
// place, in the same kind of buffer, the octets ESP encrypts for an inner
// packet of each size (the packet and its 2 to 5 octets of trailer), and
// opening them after the same copy (Open). SetBytes is the inner size, as
// for Seal and Open.
func BenchmarkRawGCM(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	g, _ := cipher.NewGCM(blk)
	nonce, aad := make([]byte, 12), make([]byte, 8)
	sa := benchSA(b)
	for _, n := range benchSizes {
		pt := n + sa.padLen(n) + 2 // what ESP encrypts
		b.Run(fmt.Sprintf("Seal/%d", n), func(b *testing.B) {
			buf := make([]byte, pt, 2048)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				g.Seal(buf[:0], nonce, buf, aad)
			}
		})
		b.Run(fmt.Sprintf("Open/%d", n), func(b *testing.B) {
			sealed := g.Seal(nil, nonce, bytes.Repeat([]byte{1}, pt), aad)
			work := make([]byte, len(sealed))
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				copy(work, sealed)
				if _, err := g.Open(work[:0], nonce, work, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSealCBC is Seal for AES-CBC-128 with HMAC-SHA-256-128 (random IV
// from crypto/rand), for comparison.
func BenchmarkSealCBC(b *testing.B) {
	tek := transforms()[4].tek
	s, err := New(tek, Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, 64, true)
			buf := make([]byte, 0, 2048)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(buf[:0], inner); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
