package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/replay"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// detRand is a deterministic io.Reader for CBC IVs in tests.
type detRand struct{ r *rand.ChaCha8 }

func (d detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

func newRand(seed byte) detRand { return detRand{rand.NewChaCha8([32]byte{seed})} }

func keyBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return b
}

type transform struct {
	name string
	tek  sadb.TEK
}

const testSPI = 0x1a2b3c4d

// transforms are the TEKs the engine supports, as sadb holds them.
func transforms() []transform {
	gcm := func(bits int) sadb.TEK {
		return sadb.TEK{Group: "g", SPI: testSPI, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
			KeyBits: bits, EncKey: keyBytes(bits/8+4, 1), SenderIDs: []uint32{0x0102, 0x0103}, SIDBits: 16,
			ReplayMethod: isakmp.ReplayCounter, ReplayWindow: 1024}
	}
	cbc := func(bits int, alg uint16, akl int) sadb.TEK {
		return sadb.TEK{Group: "g", SPI: testSPI, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESCBC),
			KeyBits: bits, AuthAlg: alg, EncKey: keyBytes(bits/8, 3), AuthKey: keyBytes(akl, 5),
			ReplayMethod: isakmp.ReplayCounter, ReplayWindow: 1024}
	}
	return []transform{
		{"AES-GCM-128", gcm(128)},
		{"AES-GCM-256", gcm(256)},
		{"AES-CBC-128/HMAC-SHA1-96", cbc(128, isakmp.AuthAlgHMACSHA1, 20)},
		{"AES-CBC-256/HMAC-SHA1-96", cbc(256, isakmp.AuthAlgHMACSHA1, 20)},
		{"AES-CBC-128/HMAC-SHA-256-128", cbc(128, isakmp.AuthAlgHMACSHA256, 32)},
		{"AES-CBC-256/HMAC-SHA-256-128", cbc(256, isakmp.AuthAlgHMACSHA256, 32)},
	}
}

func mustNew(t testing.TB, tek sadb.TEK, cfg Config) *SA {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = newRand(9)
	}
	s, err := New(tek, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// innerPacket is an IPv4/UDP packet from src to dst with payloadLen octets
// of payload after the 20-octet IP header (UDP header included in it when
// there is room).
func innerPacket(src, dst string, payloadLen int, ttl byte, df bool) []byte {
	p := make([]byte, 20+payloadLen)
	p[0], p[1] = 0x45, 0xb8
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:6], 0x4242)
	if df {
		p[6] = 0x40
	}
	p[8], p[9] = ttl, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:12], checksum(p[:20]))
	for i := 20; i < len(p); i++ {
		p[i] = byte(i * 13)
	}
	return p
}

// proves: E1 (issue 12: tunnel-mode ESP with address preservation) — every
// transform round-trips every inner size 20..1500, and the outer header is
// the inner one's addresses, TOS, TTL and DF with protocol 50, a valid
// checksum and a fresh ID; SPI, sequence number and padding are as
// docs/wire.md says.
func TestRoundTripEveryTransformAndSize(t *testing.T) {
	for _, tr := range transforms() {
		t.Run(tr.name, func(t *testing.T) {
			tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
			buf := make([]byte, 0, 2048)
			var lastID uint16
			for n := 20; n <= 1500; n++ {
				inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, byte(n), n%2 == 0)
				pkt, err := tx.Seal(buf[:0], inner)
				if err != nil {
					t.Fatalf("size %d: Seal: %v", n, err)
				}
				if len(pkt) != n+tx.Overhead(n) {
					t.Fatalf("size %d: sealed %d octets, Overhead says %d", n, len(pkt), n+tx.Overhead(n))
				}
				if (len(pkt)-tx.Headroom()-tx.icvLen)%map[kind]int{kindGCM: 4, kindCBC: 16}[tx.kind] != 0 {
					t.Fatalf("size %d: ciphertext not aligned", n)
				}
				h := pkt[:20]
				switch {
				case h[0] != 0x45 || h[1] != 0xb8 || int(binary.BigEndian.Uint16(h[2:4])) != len(pkt):
					t.Fatalf("size %d: outer version/TOS/length % x", n, h[:4])
				case h[6] != inner[6] || h[7] != 0 || h[8] != byte(n) || h[9] != 50:
					t.Fatalf("size %d: outer flags/TTL/protocol % x", n, h[6:10])
				case !bytes.Equal(h[12:20], inner[12:20]):
					t.Fatalf("size %d: outer addresses % x, inner % x", n, h[12:20], inner[12:20])
				case checksum(h) != 0:
					t.Fatalf("size %d: outer checksum wrong", n)
				case n > 20 && binary.BigEndian.Uint16(h[4:6]) == lastID:
					t.Fatalf("size %d: outer ID repeated", n)
				case binary.BigEndian.Uint32(pkt[20:24]) != testSPI || binary.BigEndian.Uint32(pkt[24:28]) != uint32(n-19):
					t.Fatalf("size %d: SPI/SEQ % x", n, pkt[20:28])
				}
				lastID = binary.BigEndian.Uint16(h[4:6])
				got, err := rx.Open(pkt)
				if err != nil {
					t.Fatalf("size %d: Open: %v", n, err)
				}
				if !bytes.Equal(got, inner) {
					t.Fatalf("size %d: inner differs after the round trip", n)
				}
			}
		})
	}
}

func TestPacketSPI(t *testing.T) {
	tx := mustNew(t, transforms()[0].tek, Config{})
	pkt := sealOne(t, tx, "10.1.1.1", 10)
	if spi, ok := PacketSPI(pkt); !ok || spi != testSPI {
		t.Fatalf("PacketSPI = %#x, %v", spi, ok)
	}
	for k := range 24 {
		if _, ok := PacketSPI(pkt[:k]); ok {
			t.Fatalf("PacketSPI of %d octets: ok", k)
		}
	}
	frag := bytes.Clone(pkt)
	frag[6] |= 0x20
	if _, ok := PacketSPI(frag); ok {
		t.Fatal("PacketSPI of a fragment: ok")
	}
}

// Sealing in place (inner at buf[Headroom():]) and OpenESP (ESP in UDP)
// give the same results as the copying paths.
func TestSealInPlaceAndOpenESP(t *testing.T) {
	for _, tr := range transforms() {
		tx, rx := mustNew(t, tr.tek, Config{Rand: newRand(1)}), mustNew(t, tr.tek, Config{})
		inner := innerPacket("10.1.1.5", "10.1.2.7", 300, 64, true)
		buf := make([]byte, 2048)
		copy(buf[tx.Headroom():], inner)
		pkt, err := tx.Seal(buf[:0], buf[tx.Headroom():tx.Headroom()+len(inner)])
		if err != nil {
			t.Fatal(err)
		}
		got, err := rx.OpenESP(netip.MustParseAddr("10.1.1.5"), pkt[20:])
		if err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%s: in-place seal / OpenESP: %v", tr.name, err)
		}
		// Appending after existing content keeps it.
		pre := []byte("prefix")
		out, err := tx.Seal(pre, inner)
		if err != nil || string(out[:6]) != "prefix" {
			t.Fatalf("%s: Seal did not append: %v", tr.name, err)
		}
		if got, err := rx.Open(out[6:]); err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%s: appended packet: %v", tr.name, err)
		}
	}
}

// independentESP computes what the ESP part of a sealed packet must be
// straight from crypto/cipher, crypto/hmac and the RFC text (RFC 4106 §4-5:
// nonce = salt | IV, AAD = SPI | SEQ; RFC 4303 §2.8 / RFC 2404 / RFC 4868:
// HMAC over SPI..trailer truncated; RFC 3602: CBC with the explicit IV).
func independentESP(t *testing.T, tek sadb.TEK, seq uint32, iv, inner []byte) []byte {
	t.Helper()
	align := 4
	if isakmp.ESPTransform(tek.Transform) == isakmp.ESPAESCBC {
		align = 16
	}
	pad := (align - (len(inner)+2)%align) % align
	pt := append([]byte(nil), inner...)
	for i := 1; i <= pad; i++ {
		pt = append(pt, byte(i))
	}
	pt = append(pt, byte(pad), 4)
	head := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, tek.SPI), seq)
	if isakmp.ESPTransform(tek.Transform) == isakmp.ESPAESGCM16 {
		k := tek.EncKey[:len(tek.EncKey)-4]
		b, _ := aes.NewCipher(k)
		g, _ := cipher.NewGCM(b)
		nonce := append(append([]byte(nil), tek.EncKey[len(k):]...), iv...)
		return g.Seal(append(head, iv...), nonce, pt, head)
	}
	b, _ := aes.NewCipher(tek.EncKey)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, pt)
	msg := append(append(head, iv...), ct...)
	var h func() hash.Hash = sha256.New
	icv := 16
	if tek.AuthAlg == isakmp.AuthAlgHMACSHA1 {
		h, icv = sha1.New, 12
	}
	m := hmac.New(h, tek.AuthKey)
	m.Write(msg)
	return append(msg, m.Sum(nil)[:icv]...)
}

// proves: E1 (issue 12: the crypto pieces) — the ESP part of every sealed
// packet equals an independent computation with the standard library.
func TestSealMatchesIndependentComputation(t *testing.T) {
	for _, tr := range transforms() {
		tx := mustNew(t, tr.tek, Config{Rand: newRand(4)})
		for i, n := range []int{20, 21, 63, 64, 1400} {
			inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, 9, false)
			pkt, err := tx.Seal(nil, inner)
			if err != nil {
				t.Fatal(err)
			}
			iv := pkt[28 : 28+tx.ivLen]
			want := independentESP(t, tr.tek, uint32(i+1), iv, inner)
			if !bytes.Equal(pkt[20:], want) {
				t.Fatalf("%s size %d:\n got % x\nwant % x", tr.name, n, pkt[20:], want)
			}
		}
	}
}

// proves: E1 (issue 12: RFC 6054 sender IDs) — the GCM IV is the sender ID
// in its high-order SIDBits bits and the sender's counter (its ESP sequence
// number) in the remaining low-order bits (RFC 6054 §3); when one sender
// ID's 2^32-1 sequence numbers are used, sending goes on under the next
// sender ID from sequence number 1, and with none left Seal refuses.
func TestSenderIDIVLayout(t *testing.T) {
	for _, c := range []struct {
		bits int
		sids []uint32
		want []uint64 // IVs of the first two packets
	}{
		{16, []uint32{0x1234, 0x1235}, []uint64{0x1234_0000_0000_0001, 0x1234_0000_0000_0002}},
		{8, []uint32{0xab}, []uint64{0xab00_0000_0000_0001, 0xab00_0000_0000_0002}},
		{12, []uint32{0xfff}, []uint64{0xfff0_0000_0000_0001, 0xfff0_0000_0000_0002}},
		{32, []uint32{0xdeadbeef}, []uint64{0xdeadbeef_0000_0001, 0xdeadbeef_0000_0002}},
	} {
		tek := transforms()[0].tek
		tek.SIDBits, tek.SenderIDs = c.bits, c.sids
		tx := mustNew(t, tek, Config{})
		inner := innerPacket("10.1.1.5", "10.1.2.7", 10, 9, false)
		for i, want := range c.want {
			pkt, err := tx.Seal(nil, inner)
			if err != nil {
				t.Fatal(err)
			}
			if got := binary.BigEndian.Uint64(pkt[28:36]); got != want {
				t.Fatalf("SID bits %d packet %d: IV %#016x, want %#016x", c.bits, i, got, want)
			}
		}
	}
	tek := transforms()[0].tek
	tek.SenderIDs = []uint32{7, 9}
	tx, rx := mustNew(t, tek, Config{}), mustNew(t, tek, Config{})
	inner := innerPacket("10.1.1.5", "10.1.2.7", 10, 9, false)
	tx.sent.Store(seqPerSender - 1)
	for _, want := range []uint64{7<<48 | 0xffffffff, 9<<48 | 1} {
		pkt, err := tx.Seal(nil, inner)
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint64(pkt[28:36]); got != want || uint32(want) != binary.BigEndian.Uint32(pkt[24:28]) {
			t.Fatalf("IV %#016x SEQ %#x, want IV %#016x", got, pkt[24:28], want)
		}
		if _, err := rx.Open(pkt); err != nil {
			t.Fatalf("IV %#016x: Open: %v", want, err)
		}
	}
	tx.sent.Store(2 * seqPerSender)
	if _, err := tx.Seal(nil, inner); err != ErrExhausted {
		t.Fatalf("Seal past the last sender ID: %v, want ErrExhausted", err)
	}
	cbc := mustNew(t, transforms()[2].tek, Config{})
	cbc.sent.Store(seqPerSender)
	if _, err := cbc.Seal(nil, inner); err != ErrExhausted {
		t.Fatalf("CBC Seal past sequence 2^32-1: %v, want ErrExhausted", err)
	}
}

// A GCM TEK without sender IDs (a receive-only member's) can open but not
// seal: two members sharing the key and counting from 1 would reuse nonces.
func TestGCMWithoutSenderIDCannotSeal(t *testing.T) {
	tek := transforms()[0].tek
	tx := mustNew(t, tek, Config{})
	tek.SenderIDs, tek.SIDBits = nil, 0
	rx := mustNew(t, tek, Config{})
	inner := innerPacket("10.1.1.5", "10.1.2.7", 10, 9, false)
	if _, err := rx.Seal(nil, inner); err != ErrNoSenderID {
		t.Fatalf("Seal without a sender ID: %v", err)
	}
	pkt, _ := tx.Seal(nil, inner)
	if _, err := rx.Open(pkt); err != nil {
		t.Fatalf("receive-only Open: %v", err)
	}
}

// proves: T2 (a GCM TEK a member only opens packets with: one a rekey
// replaced, handed out at registration, or one a rekey brought before the
// member held sender IDs) — installed without sender IDs at 32 bits, it
// opens the packets of senders whose IDs are 16 and 19 bits wide, each
// sender in its own replay window (the IV's top 32 bits), drops their
// replays, and never seals.
func TestReceiveOnlyGCMTellsSendersAt32Bits(t *testing.T) {
	tek := transforms()[0].tek
	var senders []*SA
	for _, s := range []struct {
		id   uint32
		bits int
	}{{1, 16}, {2, 16}, {1 << 18, 19}} {
		k := tek
		k.SenderIDs, k.SIDBits = []uint32{s.id}, s.bits
		senders = append(senders, mustNew(t, k, Config{}))
	}
	rx := tek
	rx.SenderIDs, rx.SIDBits = nil, 32
	r := mustNew(t, rx, Config{})
	if _, err := r.Seal(nil, innerPacket("10.1.1.5", "10.1.2.7", 10, 9, false)); err != ErrNoSenderID {
		t.Fatalf("Seal without a sender ID: %v", err)
	}
	for i, s := range senders {
		p := sealOne(t, s, "10.1.1.1", 40) // one inner host behind every sender: a redundant site
		if _, err := open(r, p); err != nil {
			t.Fatalf("sender %d: %v", i, err)
		}
		if _, err := open(r, p); err != ErrReplay {
			t.Fatalf("sender %d's replay: %v, want ErrReplay", i, err)
		}
	}
	if r.Senders() != 3 {
		t.Fatalf("%d senders, want 3 (one window each)", r.Senders())
	}
}

func sealOne(t *testing.T, s *SA, src string, size int) []byte {
	t.Helper()
	pkt, err := s.Seal(nil, innerPacket(src, "10.1.9.9", size, 64, false))
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func open(s *SA, pkt []byte) ([]byte, error) { return s.Open(bytes.Clone(pkt)) }

// proves: T2 (issue 12: counter anti-replay per sender) — two senders of
// one group SA both start at sequence number 1 and are both accepted;
// each one's replays, and its packets that fall out of its own window, are
// dropped with ErrReplay; for GCM the sender is the IV's sender ID, for CBC
// the outer source address.
func TestReplayWindowPerSender(t *testing.T) {
	for _, tr := range transforms() {
		t.Run(tr.name, func(t *testing.T) {
			tekA, tekB := tr.tek, tr.tek
			tekA.SenderIDs, tekB.SenderIDs = []uint32{1}, []uint32{2}
			a, b := mustNew(t, tekA, Config{}), mustNew(t, tekB, Config{})
			rx := mustNew(t, tr.tek, Config{})
			a1, b1 := sealOne(t, a, "10.1.1.1", 40), sealOne(t, b, "10.1.2.1", 40)
			if binary.BigEndian.Uint32(a1[24:28]) != 1 || binary.BigEndian.Uint32(b1[24:28]) != 1 {
				t.Fatal("senders do not both start at sequence number 1")
			}
			for _, p := range [][]byte{a1, b1} {
				if _, err := open(rx, p); err != nil {
					t.Fatalf("first packet: %v", err)
				}
				if _, err := open(rx, p); err != ErrReplay {
					t.Fatalf("replay: %v, want ErrReplay", err)
				}
			}
			if rx.Senders() != 2 {
				t.Fatalf("%d senders, want 2", rx.Senders())
			}
			// Sender A runs a window ahead: its packet 2 falls out of A's
			// window, while B's packet 2 is still fresh in B's.
			a2 := sealOne(t, a, "10.1.1.1", 40)
			var last []byte
			for range replay.DefaultWindow {
				last = sealOne(t, a, "10.1.1.1", 40)
			}
			if _, err := open(rx, last); err != nil {
				t.Fatal(err)
			}
			if _, err := open(rx, a2); err != ErrReplay {
				t.Fatalf("out-of-window packet: %v, want ErrReplay", err)
			}
			if _, err := open(rx, sealOne(t, b, "10.1.2.1", 40)); err != nil {
				t.Fatalf("other sender's next packet: %v", err)
			}
		})
	}
}

// Forgeries must not move a replay window: a packet with a huge sequence
// number that fails authentication leaves the sender's window where it is.
func TestForgeryDoesNotMoveWindow(t *testing.T) {
	for _, tr := range transforms() {
		tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
		p1, p2 := sealOne(t, tx, "10.1.1.1", 100), sealOne(t, tx, "10.1.1.1", 100)
		if _, err := open(rx, p1); err != nil {
			t.Fatal(err)
		}
		forged := bytes.Clone(p2)
		binary.BigEndian.PutUint32(forged[24:28], 0xfffffff0)
		if _, err := open(rx, forged); err != ErrAuth {
			t.Fatalf("%s: forged SEQ: %v, want ErrAuth", tr.name, err)
		}
		if _, err := open(rx, p2); err != nil {
			t.Fatalf("%s: genuine packet after a forgery: %v", tr.name, err)
		}
	}
}

// proves: E1 (issue 12: no input panics, every drop typed) — every
// truncation of a sealed packet is rejected, both as is and with the outer
// length and checksum fixed up to match.
func TestEveryTruncationRejected(t *testing.T) {
	for _, tr := range transforms() {
		tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
		for _, size := range []int{0, 1, 50, 300} {
			pkt := sealOne(t, tx, "10.1.1.1", size)
			for k := 0; k < len(pkt); k++ {
				if _, err := open(rx, pkt[:k]); err == nil {
					t.Fatalf("%s: truncation to %d of %d accepted", tr.name, k, len(pkt))
				}
				if k < 20 {
					continue
				}
				fixed := bytes.Clone(pkt[:k])
				binary.BigEndian.PutUint16(fixed[2:4], uint16(k))
				fixed[10], fixed[11] = 0, 0
				binary.BigEndian.PutUint16(fixed[10:12], checksum(fixed[:20]))
				_, err := open(rx, fixed)
				if err != ErrMalformed && err != ErrAuth {
					t.Fatalf("%s: fixed-up truncation to %d of %d: %v", tr.name, k, len(pkt), err)
				}
			}
			if _, err := open(rx, pkt); err != nil {
				t.Fatalf("%s: the untruncated packet: %v", tr.name, err)
			}
		}
	}
}

// proves: E1 (issue 12: integrity) — flipping any single bit of a sealed
// packet gets it dropped: in the outer header by its checksum, in the SPI as
// ErrSPI, elsewhere in the ESP part as ErrAuth (or ErrReplay for a SEQ
// flipped to 0); the genuine packet is still accepted afterwards.
func TestEveryBitFlipRejected(t *testing.T) {
	for _, tr := range transforms() {
		tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
		pkt := sealOne(t, tx, "10.1.1.1", 45)
		for i := range len(pkt) * 8 {
			m := bytes.Clone(pkt)
			m[i/8] ^= 1 << (i % 8)
			_, err := rx.Open(m)
			var want []error
			switch {
			case i/8 < 20:
				want = []error{ErrMalformed}
			case i/8 < 24:
				want = []error{ErrSPI}
			default:
				want = []error{ErrAuth, ErrReplay}
			}
			if !errors.Is(err, want[0]) && (len(want) < 2 || !errors.Is(err, want[1])) {
				t.Fatalf("%s: bit %d flipped: %v, want %v", tr.name, i, err, want)
			}
		}
		if _, err := open(rx, pkt); err != nil {
			t.Fatalf("%s: genuine packet: %v", tr.name, err)
		}
	}
}

// Hostile outer headers: fragments, options, short lengths, other
// protocols — all ErrMalformed, none panics.
func TestOpenRejectsBadOuterHeaders(t *testing.T) {
	tr := transforms()[0]
	tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
	pkt := sealOne(t, tx, "10.1.1.1", 30)
	fix := func(p []byte) []byte {
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:12], checksum(p[:int(p[0]&0xf)*4]))
		return p
	}
	for name, mut := range map[string]func([]byte) []byte{
		"MF":            func(p []byte) []byte { p[6] |= 0x20; return fix(p) },
		"offset":        func(p []byte) []byte { p[7] = 1; return fix(p) },
		"proto":         func(p []byte) []byte { p[9] = 17; return fix(p) },
		"IHL 4":         func(p []byte) []byte { p[0] = 0x44; return p },
		"IPv6":          func(p []byte) []byte { p[0] = 0x65; return p },
		"len > buffer":  func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:4], uint16(len(p)+1)); return fix(p) },
		"len < header":  func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:4], 19); return fix(p) },
		"bad checksum":  func(p []byte) []byte { p[10] ^= 1; return p },
		"empty":         func(p []byte) []byte { return p[:0] },
		"only a header": func(p []byte) []byte { binary.BigEndian.PutUint16(p[2:4], 20); return fix(p[:20]) },
	} {
		if _, err := rx.Open(mut(bytes.Clone(pkt))); err != ErrMalformed {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Options shift the ESP part: whatever is then read as the SPI is not ours.
	p := bytes.Clone(pkt)
	p[0] = 0x4f
	if _, err := rx.Open(fix(p)); err != ErrSPI {
		t.Errorf("IHL 15: %v, want ErrSPI", err)
	}
	// A trailing link-layer pad beyond the outer total length is ignored.
	if got, err := rx.Open(append(bytes.Clone(pkt), 0, 0, 0)); err != nil || len(got) != 50 {
		t.Fatalf("packet with trailing octets: %v", err)
	}
}

// A sender's authenticated packet whose trailer is wrong (bad padding,
// next header other than 4, a bad inner packet) is ErrMalformed.
func TestOpenRejectsBadTrailer(t *testing.T) {
	tek := transforms()[0].tek
	rx := mustNew(t, tek, Config{})
	inner := innerPacket("10.1.1.1", "10.1.2.2", 10, 64, false)
	for name, c := range map[string]struct {
		pt  []byte
		err error
	}{
		"next header 59": {append(bytes.Clone(inner), 1, 2, 2, 59), ErrMalformed},
		"padding 0 0":    {append(bytes.Clone(inner), 0, 0, 2, 4), ErrMalformed},
		"pad too long":   {[]byte{1, 2, 9, 4}, ErrMalformed},
		"inner not IPv4": {append(make([]byte, 22), 0, 4), ErrMalformed},
		"inner length":   {append(inner[:29], 1, 1, 4), ErrMalformed},
		"good":           {append(bytes.Clone(inner), 1, 2, 2, 4), nil},
	} {
		k := tek.EncKey[:16]
		b, _ := aes.NewCipher(k)
		g, _ := cipher.NewGCM(b)
		seq := uint32(len(name))
		head := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, testSPI), seq)
		iv := binary.BigEndian.AppendUint64(nil, 5<<48|uint64(seq))
		esp := g.Seal(append(head, iv...), append(bytes.Clone(tek.EncKey[16:]), iv...), c.pt, head)
		if _, err := rx.OpenESP(netip.MustParseAddr("10.1.1.1"), esp); err != c.err {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
}

func TestSealRejectsBadInner(t *testing.T) {
	tx := mustNew(t, transforms()[0].tek, Config{})
	good := innerPacket("10.1.1.1", "10.1.2.2", 10, 64, false)
	for name, p := range map[string][]byte{
		"short":     good[:19],
		"IPv6":      append([]byte{0x60}, good[1:]...),
		"length":    good[:29],
		"IHL 15":    append([]byte{0x4f}, good[1:]...),
		"too large": innerPacket("10.1.1.1", "10.1.2.2", 65535-20-30, 64, false),
	} {
		want := ErrMalformed
		if name == "too large" {
			want = ErrTooBig
		}
		if _, err := tx.Seal(nil, p); err != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

// proves: T2 (issue 12: state from authenticated input is bounded) — an SA
// keeps at most MaxSenders replay windows.
func TestMaxSenders(t *testing.T) {
	tek := transforms()[2].tek // CBC: senders by address
	tx, rx := mustNew(t, tek, Config{}), mustNew(t, tek, Config{MaxSenders: 2})
	for i, want := range []error{nil, nil, ErrSenders} {
		if _, err := open(rx, sealOne(t, tx, fmt.Sprintf("10.1.1.%d", i+1), 10)); err != want {
			t.Fatalf("sender %d: %v, want %v", i+1, err, want)
		}
	}
	if _, err := open(rx, sealOne(t, tx, "10.1.1.1", 10)); err != nil {
		t.Fatalf("known sender: %v", err)
	}
}

// No anti-replay: the counter window does not drop repeats (TBAR:
// tbar_test.go).
func TestReplayMethodsOtherThanCounter(t *testing.T) {
	tek := transforms()[0].tek
	tek.ReplayMethod = isakmp.ReplayNone
	tx, rx := mustNew(t, tek, Config{}), mustNew(t, tek, Config{})
	p := sealOne(t, tx, "10.1.1.1", 10)
	for range 2 {
		if _, err := open(rx, p); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewRejectsBadTEKs(t *testing.T) {
	base := transforms()
	for name, mut := range map[string]func(*sadb.TEK){
		"AH":           func(k *sadb.TEK) { k.Protocol = isakmp.TEKProtoAH },
		"GCM key len":  func(k *sadb.TEK) { k.EncKey = k.EncKey[:19] },
		"GCM key bits": func(k *sadb.TEK) { k.KeyBits = 256 },
		"SID bits 0":   func(k *sadb.TEK) { k.SIDBits = 0 },
		"SID bits 33":  func(k *sadb.TEK) { k.SIDBits = 33 },
		"SID too wide": func(k *sadb.TEK) { k.SenderIDs = []uint32{1 << 16} },
		"transform":    func(k *sadb.TEK) { k.Transform = uint8(isakmp.ESP3DES) },
	} {
		k := base[0].tek
		mut(&k)
		if _, err := New(k, Config{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, mut := range map[string]func(*sadb.TEK){
		"CBC key len":   func(k *sadb.TEK) { k.EncKey = keyBytes(24, 1) },
		"auth alg MD5":  func(k *sadb.TEK) { k.AuthAlg = isakmp.AuthAlgHMACMD5 },
		"auth key len":  func(k *sadb.TEK) { k.AuthKey = k.AuthKey[:16] },
		"SHA1 with 32":  func(k *sadb.TEK) { k.AuthAlg = isakmp.AuthAlgHMACSHA1 },
		"no auth (nil)": func(k *sadb.TEK) { k.AuthKey = nil },
	} {
		k := base[4].tek
		mut(&k)
		if _, err := New(k, Config{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// proves: E1 (issue 12: fast) — Seal and Open allocate nothing per packet.
func TestNoAllocationsPerPacket(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocation counts are not the code's")
	}
	for _, tr := range transforms() {
		tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
		tek := tr.tek
		tek.ReplayMethod = isakmp.ReplayNone // the same packet opened again and again
		rxNoReplay := mustNew(t, tek, Config{})
		inner := innerPacket("10.1.1.1", "10.1.2.2", 1000, 64, false)
		buf := make([]byte, 0, 2048)
		pkt, _ := tx.Seal(nil, inner)
		rx.Open(bytes.Clone(pkt)) // the sender's window exists
		work := make([]byte, len(pkt))
		if a := testing.AllocsPerRun(100, func() { tx.Seal(buf[:0], inner) }); a != 0 {
			t.Errorf("%s: Seal: %v allocations per packet", tr.name, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			p, _ := tx.Seal(buf[:0], inner)
			rx.Open(p)
		}); a != 0 {
			t.Errorf("%s: Seal+Open: %v allocations per packet", tr.name, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			copy(work, pkt)
			rxNoReplay.OpenESP(netip.Addr{}, work[20:])
		}); a != 0 {
			t.Errorf("%s: OpenESP: %v allocations per packet", tr.name, a)
		}
		// Time-based anti-replay: the pseudotime header is written and
		// checked in place.
		// proves: T2 (issue 12: TBAR costs no allocation per packet)
		tek.ReplayMethod, tek.ReplayWindow = isakmp.ReplayTime, 5
		txT, rxT := mustNew(t, tek, Config{}), mustNew(t, tek, Config{})
		const at = 1000 * time.Second
		pktT, _ := txT.SealAt(nil, inner, at)
		rxT.OpenAt(bytes.Clone(pktT), at)
		workT := make([]byte, len(pktT))
		if a := testing.AllocsPerRun(100, func() {
			p, err := txT.SealAt(buf[:0], inner, at)
			if _, err2 := rxT.OpenAt(p, at); err != nil || err2 != nil {
				panic(fmt.Sprint(err, err2))
			}
		}); a != 0 {
			t.Errorf("%s: TBAR SealAt+OpenAt: %v allocations per packet", tr.name, a)
		}
		if a := testing.AllocsPerRun(100, func() {
			copy(workT, pktT)
			rxT.OpenESPAt(netip.Addr{}, workT[20:], at+time.Hour) // outside the window
		}); a != 0 {
			t.Errorf("%s: TBAR OpenESPAt (dropped): %v allocations per packet", tr.name, a)
		}
	}
}

// Seal and Open are safe for concurrent use: packets sealed by several
// goroutines carry distinct sequence numbers (so distinct GCM nonces), and
// the same packet opened by several goroutines at once is accepted once.
func TestConcurrentSealAndOpen(t *testing.T) {
	tr := transforms()[0]
	tx, rx := mustNew(t, tr.tek, Config{}), mustNew(t, tr.tek, Config{})
	const workers, each = 4, 500
	seqs := make(chan uint32, workers*each)
	pkts := make(chan []byte, workers*each)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			inner := innerPacket("10.1.1.5", "10.1.2.7", 30, 64, false)
			for range each {
				p, err := tx.Seal(nil, inner)
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- binary.BigEndian.Uint32(p[24:28])
				pkts <- p
			}
		}()
	}
	for range workers {
		<-done
	}
	close(seqs)
	close(pkts)
	seen := map[uint32]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("sequence number %d sealed twice", s)
		}
		seen[s] = true
	}
	p := <-pkts
	accepted := make(chan bool, workers)
	for range workers {
		go func() {
			_, err := rx.Open(bytes.Clone(p))
			accepted <- err == nil
		}()
	}
	n := 0
	for range workers {
		if <-accepted {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one packet opened concurrently was accepted %d times", n)
	}
}
