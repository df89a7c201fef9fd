package bench

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"testing"

	"github.com/groupvpn/groupvpn/internal/esp"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// ESPSizes are the inner IPv4 packet sizes of the ESP scenario: MB/s
// count inner octets.
var ESPSizes = []int{64, 512, 1400}

// ESPTransform is one transform of the ESP scenario.
type ESPTransform struct {
	Name string
	TEK  sadb.TEK
}

// ESPTransforms are the transforms the data plane carries (issue 12):
// AES-GCM-128/256 with RFC 6054 sender IDs, and AES-CBC with HMAC-SHA1-96
// and HMAC-SHA-256-128.
func ESPTransforms() []ESPTransform {
	key := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	gcm := func(bits int) sadb.TEK {
		return sadb.TEK{Group: "BENCH", SPI: 0x1000, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
			KeyBits: bits, EncKey: key(bits/8+4, 1), SenderIDs: []uint32{1}, SIDBits: 8,
			ReplayMethod: isakmp.ReplayCounter, ReplayWindow: 1024}
	}
	cbc := func(bits int, alg uint16, akl int) sadb.TEK {
		return sadb.TEK{Group: "BENCH", SPI: 0x1000, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESCBC),
			KeyBits: bits, AuthAlg: alg, EncKey: key(bits/8, 3), AuthKey: key(akl, 5),
			ReplayMethod: isakmp.ReplayCounter, ReplayWindow: 1024}
	}
	return []ESPTransform{
		{"AES-GCM-128", gcm(128)},
		{"AES-GCM-256", gcm(256)},
		{"AES-CBC-128 HMAC-SHA1-96", cbc(128, isakmp.AuthAlgHMACSHA1, sha1.Size)},
		{"AES-CBC-256 HMAC-SHA-256-128", cbc(256, isakmp.AuthAlgHMACSHA256, sha256.Size)},
	}
}

// ESP is the data-plane codec scenario: internal/esp sealing and opening
// one inner packet of each size, each beside its ceiling measured just
// before it, the same cipher from the standard library on the same
// buffers doing only the cryptography ESP cannot avoid: for AES-GCM,
// crypto/cipher's Seal or Open of the octets ESP encrypts (inner packet
// and trailer) with the same associated data; for AES-CBC, crypto/cipher's
// CBC mode and crypto/hmac over the same octets. Both sides copy the
// packet into place first (ESP seals in place, and opening destroys the
// ciphertext). The ratio is the ceiling's time over ESP's: 1.0 is as fast
// as the raw cipher.
func ESP() Scenario {
	s := Scenario{Name: "esp", Speed: true,
		About: "internal/esp Seal/Open of one inner IPv4 packet per op (anti-replay on) against the raw cipher on the same buffers"}
	for _, tr := range ESPTransforms() {
		for _, n := range ESPSizes {
			for _, open := range []bool{false, true} {
				op := "seal"
				if open {
					op = "open"
				}
				raw := &Case{Name: fmt.Sprintf("raw %s %s %d", cipherName(tr.TEK), op, n), Octets: int64(n),
					Run: func(b *testing.B) { runRaw(b, tr.TEK, n, open) }}
				s.Cases = append(s.Cases, Case{Name: fmt.Sprintf("%s %s %d", tr.Name, op, n), Octets: int64(n), Ceiling: raw,
					Run: func(b *testing.B) { runESP(b, tr.TEK, n, open) }})
			}
		}
	}
	return s
}

func cipherName(t sadb.TEK) string {
	if isakmp.ESPTransform(t.Transform) == isakmp.ESPAESGCM16 {
		return fmt.Sprintf("AES-GCM-%d", t.KeyBits)
	}
	return fmt.Sprintf("AES-CBC-%d HMAC", t.KeyBits)
}

// innerPacket is an IPv4/UDP packet of n octets between two site hosts.
func innerPacket(n int) []byte {
	p := make([]byte, n)
	p[0], p[6], p[8], p[9] = 0x45, 0x40, 64, 17
	binary.BigEndian.PutUint16(p[2:4], uint16(n))
	copy(p[12:20], []byte{10, 1, 1, 5, 10, 1, 2, 7})
	for i := 20; i < n; i++ {
		p[i] = byte(i * 13)
	}
	return p
}

// espLayout is where ESP puts things in a sealed packet of an inner packet
// of n octets: the inner packet at hdr, hdr+pt octets encrypted (CBC) or
// sealed (GCM) followed by an ICV of icv octets.
func espLayout(sa *esp.SA, t sadb.TEK, n int) (hdr, pt, icv int) {
	hdr = sa.Headroom()
	switch {
	case isakmp.ESPTransform(t.Transform) == isakmp.ESPAESGCM16:
		icv = 16
	case t.AuthAlg == isakmp.AuthAlgHMACSHA1:
		icv = 12
	default:
		icv = 16
	}
	return hdr, sa.Overhead(n) - hdr - icv + n, icv
}

func newSA(b *testing.B, t sadb.TEK) *esp.SA {
	sa, err := esp.New(t, esp.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return sa
}

// espRing is how many distinct packets the open benchmarks cycle through
// (few enough to stay in cache); the ceilings open a ring as large.
const espRing = 256

func runESP(b *testing.B, t sadb.TEK, n int, open bool) {
	tx := newSA(b, t)
	inner := innerPacket(n)
	hdr := tx.Headroom()
	buf := make([]byte, 0, 2048)
	if !open {
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(buf[hdr:hdr+n], inner)
			if _, err := tx.Seal(buf, buf[hdr:hdr+n]); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	// Open with anti-replay on: each packet of the ring once per receiving
	// SA, a new receiver (made with the timer stopped) each lap.
	pkts := make([][]byte, espRing)
	for i := range pkts {
		p, err := tx.Seal(nil, inner)
		if err != nil {
			b.Fatal(err)
		}
		pkts[i] = p
	}
	work := make([]byte, len(pkts[0]), 2048)
	var rx *esp.SA
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%espRing == 0 {
			b.StopTimer()
			rx = newSA(b, t)
			b.StartTimer()
		}
		copy(work, pkts[i%espRing])
		if _, err := rx.Open(work); err != nil {
			b.Fatal(err)
		}
	}
}

// runRaw is the ceiling of runESP: the same copy and the same cipher work
// on a buffer laid out as ESP's, with crypto/cipher and crypto/hmac only.
func runRaw(b *testing.B, t sadb.TEK, n int, open bool) {
	sa := newSA(b, t)
	hdr, pt, icv := espLayout(sa, t, n)
	plain := make([]byte, pt)
	copy(plain, innerPacket(n))
	total := hdr + pt + icv
	buf := make([]byte, total, 2048)
	nonce, aad := make([]byte, 12), make([]byte, 8)
	if isakmp.ESPTransform(t.Transform) == isakmp.ESPAESGCM16 {
		keyLen := len(t.EncKey) - 4
		blk, _ := aes.NewCipher(t.EncKey[:keyLen])
		g, _ := cipher.NewGCM(blk)
		if !open {
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(buf[hdr:], plain)
				g.Seal(buf[hdr:hdr], nonce, buf[hdr:hdr+pt], aad)
			}
			return
		}
		// A ring of packets as runESP opens, each with its own nonce.
		ring := make([][]byte, espRing)
		for i := range ring {
			ring[i] = make([]byte, total)
			binary.BigEndian.PutUint64(ring[i][hdr-8:hdr], uint64(i+1)) // the IV
			binary.BigEndian.PutUint64(nonce[4:], uint64(i+1))
			g.Seal(ring[i][hdr:hdr], nonce, plain, aad)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(buf, ring[i%espRing])
			copy(nonce[4:], buf[hdr-8:hdr])
			if _, err := g.Open(buf[hdr:hdr], nonce, buf[hdr:hdr+pt+icv], aad); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	blk, _ := aes.NewCipher(t.EncKey)
	iv := make([]byte, aes.BlockSize)
	newHash := sha256.New
	if t.AuthAlg == isakmp.AuthAlgHMACSHA1 {
		newHash = sha1.New
	}
	mac := hmac.New(newHash, t.AuthKey)
	var sum [sha256.Size]byte
	authed := buf[20 : hdr+pt] // SPI .. trailer, as RFC 4303 §2.8
	if !open {
		enc := cipher.NewCBCEncrypter(blk, iv).(ivSetter)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(buf[hdr:], plain)
			enc.SetIV(iv)
			enc.CryptBlocks(buf[hdr:hdr+pt], buf[hdr:hdr+pt])
			macInto(mac, authed, sum[:0], buf[hdr+pt:total])
		}
		return
	}
	ring := make([][]byte, espRing) // as runESP opens
	for i := range ring {
		sealed := make([]byte, total)
		copy(sealed[hdr:], plain)
		cipher.NewCBCEncrypter(blk, iv).CryptBlocks(sealed[hdr:hdr+pt], sealed[hdr:hdr+pt])
		macInto(mac, sealed[20:hdr+pt], sum[:0], sealed[hdr+pt:])
		ring[i] = sealed
	}
	dec := cipher.NewCBCDecrypter(blk, iv).(ivSetter)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(buf, ring[i%espRing])
		mac.Reset()
		mac.Write(authed)
		if !hmac.Equal(mac.Sum(sum[:0])[:icv], buf[hdr+pt:total]) {
			b.Fatal("raw CBC: ICV does not verify")
		}
		dec.SetIV(iv)
		dec.CryptBlocks(buf[hdr:hdr+pt], buf[hdr:hdr+pt])
	}
}

// ivSetter is what crypto/cipher's CBC modes offer to reuse one mode
// object for many IVs.
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

func macInto(mac hash.Hash, data, scratch, icv []byte) {
	mac.Reset()
	mac.Write(data)
	copy(icv, mac.Sum(scratch))
}
