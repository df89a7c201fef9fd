// Package esp is the ESP engine of the data plane: tunnel-mode ESP
// (RFC 4303) with address preservation (RFC 6407 §5.5.1.1, RFC 5374) for
// the TEKs a group member holds (sadb.TEK). It is sans-IO: Seal turns an
// inner IPv4 packet into an outer IPv4 packet carrying ESP, Open does the
// reverse, both on caller-provided buffers and without allocating per
// packet. Sockets, TUN devices, policy lookup and counters are the
// caller's; every drop is a typed error (ErrMalformed, ErrAuth, ErrReplay,
// ...) that the caller counts.
//
// Transforms: AES-GCM-128/256 with a 16-octet ICV (RFC 4106) whose 8-octet
// explicit IV carries the sender's RFC 6054 sender ID in its high-order bits
// and the sender's packet counter in the rest, and AES-CBC-128/256 (RFC 3602)
// with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA-256-128 (RFC 4868) and a random IV.
//
// A group SA has many senders (RFC 6407 §1, RFC 6054): the 32-bit sequence
// number is per sender, and Open keeps one anti-replay window per sender
// (internal/replay), a sender being the sender ID in the IV for GCM and the
// outer source address for CBC. docs/wire.md "ESP on the data plane
// (groundwork)" has the octets.
//
// Time-based anti-replay (TBAR, SPEC T2): a TEK whose replay method is
// ReplayTime carries the sender's pseudotime in every packet, in a 12-octet
// header at the start of the ESP payload (ESP Next Header 253; docs/wire.md
// "The pseudotime header"). SealAt writes it, OpenAt drops a packet whose
// pseudotime is missing or differs from the receiver's by more than the
// TEK's window (ErrTBAR). The caller supplies both pseudotimes (the TEK's
// PseudotimeNow): the package reads no clock.
package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupvpn/groupvpn/internal/replay"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// Drop reasons. Open and Seal return these unwrapped (no allocation per
// packet): compare with == or errors.Is.
var (
	// ErrMalformed: the packet is not one this SA can carry or produced
	// (truncated, bad IPv4 header, a fragment, bad padding or next header).
	ErrMalformed = errors.New("esp: malformed packet")
	// ErrSPI: the packet's SPI is not this SA's (the caller's lookup).
	ErrSPI = errors.New("esp: SPI is not this SA's")
	// ErrAuth: the ICV does not verify (RFC 4303 §3.4.4).
	ErrAuth = errors.New("esp: integrity check failed")
	// ErrReplay: the sequence number was seen, is 0, or is older than the
	// sender's window (RFC 4303 §3.4.3).
	ErrReplay = errors.New("esp: replayed or out-of-window sequence number")
	// ErrSenders: an authenticated packet from a new sender while the SA
	// already keeps MaxSenders replay windows.
	ErrSenders = errors.New("esp: too many senders on the SA")
	// ErrNoSenderID: a GCM SA without an RFC 6054 sender ID cannot send.
	ErrNoSenderID = errors.New("esp: no sender ID for a counter-mode SA")
	// ErrExhausted: every sequence number of every sender ID of the SA was
	// used (no extended sequence numbers): the SA must be rekeyed.
	ErrExhausted = errors.New("esp: sequence numbers exhausted")
	// ErrTooBig: the sealed packet would exceed 65,535 octets.
	ErrTooBig = errors.New("esp: packet too big")
	// ErrTBAR: an authenticated packet of a time-based anti-replay SA
	// whose pseudotime differs from the receiver's by more than the
	// window, or that carries none.
	ErrTBAR = errors.New("esp: pseudotime missing or outside the time-based anti-replay window")
	// ErrNoPseudotime: Seal, Open or OpenESP on a time-based anti-replay
	// SA, which needs the caller's pseudotime (SealAt, OpenAt, OpenESPAt).
	ErrNoPseudotime = errors.New("esp: time-based anti-replay SA used without a pseudotime")
)

const (
	ipv4HeaderLen = 20
	espHeaderLen  = 8 // SPI, sequence number
	protoESP      = 50
	nextHeaderIP4 = 4 // IP-in-IP: the payload is an IPv4 packet (tunnel mode)
	gcmIVLen      = 8
	gcmICVLen     = 16
	gcmSaltLen    = 4
	cbcIVLen      = aes.BlockSize
	// seqPerSender is how many packets one sender ID sends: sequence numbers
	// 1 .. 2^32-1 (no ESN, RFC 4303 §3.3.3).
	seqPerSender = 1<<32 - 1
	// DefaultMaxSenders bounds the replay windows an SA keeps.
	DefaultMaxSenders = 4096
)

// The pseudotime header of time-based anti-replay (docs/wire.md).
const (
	// NextHeaderMeta is the ESP Next Header of a payload that starts with
	// groupvpn's metadata header (the pseudotime header of TBAR SAs):
	// 253, "use for experimentation and testing" (RFC 3692, RFC 4727).
	NextHeaderMeta = 253
	// MetaLen is the length of the pseudotime header: Next Header (1),
	// Length (1), Type (1), Reserved (1), pseudotime in milliseconds (8).
	MetaLen = 12
	// MetaTypePseudotime is the Type of the pseudotime header.
	MetaTypePseudotime = 1
)

// Config is what an SA needs beyond the TEK.
type Config struct {
	// Rand seeds the CBC IV generators (nil: crypto/rand.Reader): 32
	// octets for each concurrent sealer's ChaCha8 stream (math/rand/v2, a
	// CSPRNG), whose output makes the IVs unpredictable (RFC 3602 §2.4)
	// at a tenth of the cost of a getrandom per packet.
	Rand io.Reader
	// MaxSenders bounds the per-sender replay windows (0: DefaultMaxSenders).
	MaxSenders int
}

type kind uint8

const (
	kindGCM kind = iota + 1
	kindCBC
)

// SA is one TEK as the ESP engine uses it. Seal and Open are safe for
// concurrent use.
type SA struct {
	spi  uint32
	kind kind
	// GCM
	aead    cipher.AEAD
	salt    [gcmSaltLen]byte
	sids    []uint32
	sidBits int
	// CBC + HMAC
	macs   sync.Pool // *macState: HMAC and CBC modes, one per concurrent user
	icvLen int
	ivLen  int
	rand   io.Reader

	sent atomic.Uint64 // packets sealed: sender ID index and sequence number

	replayOff bool
	window    int
	// TBAR: the pseudotime header's length (MetaLen, 0 without TBAR) and
	// the window in milliseconds.
	meta       int
	tbarWindow uint64
	maxSenders int
	mu         sync.Mutex
	senders    map[senderKey]*replay.Filter
	senders6   map[netip.Addr]*replay.Filter // IPv6 outer sources (ESP in UDP over IPv6)
}

// senderKey names one sender of the group SA in one word, the map key of
// its replay window: its RFC 6054 sender ID (GCM) or its outer IPv4
// source address (CBC, or GCM without sender IDs). IPv6 senders have
// their own map.
type senderKey uint64

const (
	keySID  senderKey = 1 << 40
	keyIPv4 senderKey = 2 << 40
)

type macState struct {
	h        hash.Hash
	sum      [sha256.Size]byte
	enc, dec ivMode
	ivs      *mrand.ChaCha8 // CBC IVs, seeded from SA.rand on first use
}

// ivMode is a crypto/cipher CBC mode that takes a new IV (the standard
// library's do): one per pooled state, reused for every packet, where
// cipher.NewCBCEncrypter per IV would allocate.
type ivMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

// cbcModes returns CBC encryption and decryption modes of b.
func cbcModes(b cipher.Block) (enc, dec ivMode, ok bool) {
	var iv [aes.BlockSize]byte
	enc, ok1 := cipher.NewCBCEncrypter(b, iv[:]).(ivMode)
	dec, ok2 := cipher.NewCBCDecrypter(b, iv[:]).(ivMode)
	return enc, dec, ok1 && ok2
}

// New builds the engine's SA from a TEK as sadb holds it: ESP, AES-GCM
// (transform 20, EncKey = key | 4-octet salt, RFC 4106 §8.1) or AES-CBC
// (transform 12, EncKey = key, AuthKey = the HMAC key of AuthAlg
// HMAC-SHA1 or HMAC-SHA-256). A GCM SA sends with t.SenderIDs (the first
// until its sequence numbers run out, then the next) laid out in t.SIDBits
// bits; one without sender IDs can only receive.
func New(t sadb.TEK, cfg Config) (*SA, error) {
	if t.Protocol != isakmp.TEKProtoESP {
		return nil, fmt.Errorf("esp: SPI %#08x: protocol %d is not ESP", t.SPI, t.Protocol)
	}
	s := &SA{spi: t.SPI, rand: cfg.Rand, maxSenders: cfg.MaxSenders, senders: map[senderKey]*replay.Filter{}, senders6: map[netip.Addr]*replay.Filter{}}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.maxSenders <= 0 {
		s.maxSenders = DefaultMaxSenders
	}
	switch t.ReplayMethod {
	case isakmp.ReplayCounter, 0:
		s.window = t.ReplayWindow // replay.New clamps; 0 is the default
	case isakmp.ReplayTime:
		// The window is in seconds (`replay time window-size`, 1..100 on
		// the KS); less than a second is taken as one.
		s.meta, s.tbarWindow = MetaLen, uint64(max(t.ReplayWindow, 1))*1000
		// TBAR proper keeps no counter. When senders are named by RFC
		// 6054 sender IDs (GCM), their counter windows (default size)
		// also drop exact replays inside the time window (checked after
		// the pseudotime); with CBC the
		// sender would be the outer source, an inner host that may sit
		// behind two GMs of a redundant site with two sequence spaces,
		// so TBAR alone protects it (docs/wire.md).
		s.replayOff = isakmp.ESPTransform(t.Transform) != isakmp.ESPAESGCM16 || t.SIDBits < 1 || t.SIDBits > 32
	default:
		s.replayOff = true // no anti-replay
	}
	switch isakmp.ESPTransform(t.Transform) {
	case isakmp.ESPAESGCM16:
		keyLen := len(t.EncKey) - gcmSaltLen
		if keyLen != 16 && keyLen != 32 {
			return nil, fmt.Errorf("esp: SPI %#08x: AES-GCM key material is %d octets, want 20 or 36 (key | salt)", t.SPI, len(t.EncKey))
		}
		if t.KeyBits != 0 && t.KeyBits != keyLen*8 {
			return nil, fmt.Errorf("esp: SPI %#08x: key length %d bits but %d octets of key", t.SPI, t.KeyBits, keyLen)
		}
		b, err := aes.NewCipher(t.EncKey[:keyLen])
		if err != nil {
			return nil, fmt.Errorf("esp: SPI %#08x: %w", t.SPI, err)
		}
		if s.aead, err = cipher.NewGCM(b); err != nil {
			return nil, fmt.Errorf("esp: SPI %#08x: %w", t.SPI, err)
		}
		copy(s.salt[:], t.EncKey[keyLen:])
		s.kind, s.ivLen, s.icvLen = kindGCM, gcmIVLen, gcmICVLen
		if len(t.SenderIDs) > 0 {
			if t.SIDBits < 1 || t.SIDBits > 32 {
				return nil, fmt.Errorf("esp: SPI %#08x: %d sender-ID bits, want 1..32", t.SPI, t.SIDBits)
			}
			for _, sid := range t.SenderIDs {
				if t.SIDBits < 32 && sid>>t.SIDBits != 0 {
					return nil, fmt.Errorf("esp: SPI %#08x: sender ID %d does not fit in %d bits", t.SPI, sid, t.SIDBits)
				}
			}
			s.sids = append([]uint32(nil), t.SenderIDs...)
		}
		if t.SIDBits >= 1 && t.SIDBits <= 32 {
			s.sidBits = t.SIDBits
		}
	case isakmp.ESPAESCBC:
		if n := len(t.EncKey); n != 16 && n != 32 {
			return nil, fmt.Errorf("esp: SPI %#08x: AES-CBC key is %d octets, want 16 or 32", t.SPI, n)
		}
		b, err := aes.NewCipher(t.EncKey)
		if err != nil {
			return nil, fmt.Errorf("esp: SPI %#08x: %w", t.SPI, err)
		}
		var newHash func() hash.Hash
		switch t.AuthAlg {
		case isakmp.AuthAlgHMACSHA1:
			newHash, s.icvLen = sha1.New, 12 // RFC 2404
			if len(t.AuthKey) != sha1.Size {
				return nil, fmt.Errorf("esp: SPI %#08x: HMAC-SHA1 key is %d octets, want 20", t.SPI, len(t.AuthKey))
			}
		case isakmp.AuthAlgHMACSHA256:
			newHash, s.icvLen = sha256.New, 16 // RFC 4868
			if len(t.AuthKey) != sha256.Size {
				return nil, fmt.Errorf("esp: SPI %#08x: HMAC-SHA-256 key is %d octets, want 32", t.SPI, len(t.AuthKey))
			}
		default:
			return nil, fmt.Errorf("esp: SPI %#08x: authentication algorithm %d not supported with AES-CBC", t.SPI, t.AuthAlg)
		}
		if _, _, ok := cbcModes(b); !ok {
			return nil, fmt.Errorf("esp: SPI %#08x: the AES implementation's CBC modes cannot change IV", t.SPI)
		}
		key := append([]byte(nil), t.AuthKey...)
		s.macs.New = func() any {
			enc, dec, _ := cbcModes(b)
			return &macState{h: hmac.New(newHash, key), enc: enc, dec: dec}
		}
		s.kind, s.ivLen = kindCBC, cbcIVLen
	default:
		return nil, fmt.Errorf("esp: SPI %#08x: transform %d not supported", t.SPI, t.Transform)
	}
	return s, nil
}

// SPI is the SA's SPI.
func (s *SA) SPI() uint32 { return s.spi }

// TBAR reports whether the SA uses time-based anti-replay: its packets
// carry the pseudotime header, and it seals and opens only with SealAt,
// OpenAt and OpenESPAt.
func (s *SA) TBAR() bool { return s.meta > 0 }

// Headroom is the number of octets Seal puts before the inner packet:
// outer IPv4 header, ESP header, IV and, with TBAR, the pseudotime header.
// A caller that places the inner packet at buf[Headroom():] and seals into
// buf[:0] saves a copy.
func (s *SA) Headroom() int { return ipv4HeaderLen + espHeaderLen + s.ivLen + s.meta }

// Overhead is how many octets Seal adds to an inner packet of n octets.
func (s *SA) Overhead(n int) int { return s.Headroom() + s.padLen(n) + 2 + s.icvLen }

// padLen is the padding after an inner packet of n octets (and the
// pseudotime header before it).
func (s *SA) padLen(n int) int {
	align := 4 // RFC 4303 §2.4: the trailer ends on a 4-octet boundary
	if s.kind == kindCBC {
		align = aes.BlockSize
	}
	return (align - (s.meta+n+2)%align) % align
}

// PutMeta writes the pseudotime header (MetaLen octets) for pseudotime pt
// into b: Next Header 4 (the inner IPv4 packet follows), Length 12, Type 1,
// Reserved 0, then pt in whole milliseconds, 64 bits big endian (a
// negative pt is written as 0).
func PutMeta(b []byte, pt time.Duration) {
	_ = b[MetaLen-1]
	b[0], b[1], b[2], b[3] = nextHeaderIP4, MetaLen, MetaTypePseudotime, 0
	binary.BigEndian.PutUint64(b[4:MetaLen], uint64(max(pt, 0)/time.Millisecond))
}

// ParseMeta reads the pseudotime header at the start of payload (the
// decrypted ESP payload of an SA with TBAR, before padding) and returns
// the pseudotime in milliseconds and the inner packet after the header.
// ok is false unless the header is complete, its Next Header is 4, its
// Length 12 and its Type 1 (Reserved is ignored).
func ParseMeta(payload []byte) (ptMillis uint64, inner []byte, ok bool) {
	if len(payload) < MetaLen || payload[0] != nextHeaderIP4 || payload[1] != MetaLen || payload[2] != MetaTypePseudotime {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(payload[4:MetaLen]), payload[MetaLen:], true
}

// inWindow reports whether a packet's pseudotime (ms) is within the
// window of the receiver's pseudotime at, either side.
func (s *SA) inWindow(ptMillis uint64, at time.Duration) bool {
	own := uint64(max(at, 0) / time.Millisecond)
	d := ptMillis - own
	if ptMillis < own {
		d = own - ptMillis
	}
	return d <= s.tbarWindow
}

// Seal appends to dst the outer IPv4 packet carrying inner (an IPv4 packet
// whose total length is len(inner)) in tunnel-mode ESP and returns the
// extended slice. The outer header preserves the inner addresses, copies
// TOS, TTL and DF, and has protocol 50 and a fresh ID. inner may be
// dst[len(dst)+Headroom():]; Seal allocates only when dst lacks capacity.
// An SA with TBAR refuses (ErrNoPseudotime): use SealAt.
func (s *SA) Seal(dst, inner []byte) ([]byte, error) {
	if s.meta > 0 {
		return dst, ErrNoPseudotime
	}
	return s.seal(dst, inner, 0)
}

// SealAt is Seal for any SA, pt being the sender's pseudotime (the TEK's
// PseudotimeNow): an SA with TBAR writes it in the pseudotime header, any
// other ignores it.
func (s *SA) SealAt(dst, inner []byte, pt time.Duration) ([]byte, error) {
	return s.seal(dst, inner, pt)
}

func (s *SA) seal(dst, inner []byte, pt time.Duration) ([]byte, error) {
	if len(inner) < ipv4HeaderLen || inner[0]>>4 != 4 || int(inner[0]&0xf)*4 < ipv4HeaderLen ||
		int(inner[0]&0xf)*4 > len(inner) || int(binary.BigEndian.Uint16(inner[2:4])) != len(inner) {
		return dst, ErrMalformed
	}
	hdr := s.Headroom()
	ptStart := hdr - s.meta // the ESP payload: [pseudotime header] inner
	pad := s.padLen(len(inner))
	ptLen := s.meta + len(inner) + pad + 2
	total := ptStart + ptLen + s.icvLen
	if total > 0xffff {
		return dst, ErrTooBig
	}
	n := s.sent.Add(1) - 1
	idx, seq := n/seqPerSender, uint32(n%seqPerSender)+1
	var sid uint32
	switch {
	case s.kind == kindGCM && len(s.sids) == 0:
		return dst, ErrNoSenderID
	case s.kind == kindGCM && idx < uint64(len(s.sids)):
		sid = s.sids[idx]
	case s.kind == kindCBC && idx == 0:
	default:
		s.sent.Store(n) // stay exhausted without wrapping the counter
		return dst, ErrExhausted
	}
	// Fields of the inner header the outer one copies.
	tos, ttl, df := inner[1], inner[8], inner[6]&0x40
	var addrs [8]byte
	copy(addrs[:], inner[12:20])

	start := len(dst)
	if cap(dst)-start < total {
		grown := make([]byte, start, start+total)
		copy(grown, dst)
		// inner may alias dst: copy it before dst is abandoned.
		copy(grown[start+hdr:start+hdr+len(inner)], inner)
		dst, inner = grown, grown[start+hdr:start+hdr+len(inner)]
	}
	out := dst[start : start+total]
	copy(out[hdr:], inner) // memmove: a no-op when inner is already in place
	tr := out[hdr+len(inner) : ptStart+ptLen]
	for i := range pad {
		tr[i] = byte(i + 1) // RFC 4303 §2.4: 1, 2, 3, ...
	}
	tr[pad], tr[pad+1] = byte(pad), nextHeaderIP4
	if s.meta > 0 {
		tr[pad+1] = NextHeaderMeta
		PutMeta(out[hdr-s.meta:hdr], pt)
	}

	esp := out[ipv4HeaderLen:]
	binary.BigEndian.PutUint32(esp[0:4], s.spi)
	binary.BigEndian.PutUint32(esp[4:8], seq)
	plain := out[ptStart : ptStart+ptLen]
	switch s.kind {
	case kindGCM:
		// RFC 6054 §3: the sender ID in the high-order SIDBits bits of the
		// IV, the sender's counter (here its sequence number) in the rest.
		iv := uint64(sid)<<(64-s.sidBits) | uint64(seq)
		binary.BigEndian.PutUint64(esp[8:16], iv)
		// The outer header's place serves as the nonce (salt | IV, RFC 4106
		// §4) until the header is written: no allocation.
		nonce := out[:gcmSaltLen+gcmIVLen]
		copy(nonce, s.salt[:])
		binary.BigEndian.PutUint64(nonce[gcmSaltLen:], iv)
		s.aead.Seal(plain[:0], nonce, plain, esp[0:8]) // AAD = SPI | SEQ (RFC 4106 §5)
	case kindCBC:
		iv := esp[8 : 8+cbcIVLen]
		m := s.macs.Get().(*macState)
		if m.ivs == nil {
			var seed [32]byte
			if _, err := io.ReadFull(s.rand, seed[:]); err != nil {
				s.macs.Put(m)
				return dst[:start], fmt.Errorf("esp: CBC IV seed: %w", err)
			}
			m.ivs = mrand.NewChaCha8(seed)
		}
		m.ivs.Read(iv) // never fails
		cbcEncrypt(m.enc, iv, plain)
		m.h.Reset()
		m.h.Write(esp[:espHeaderLen+cbcIVLen+ptLen]) // RFC 4303 §2.8: SPI..trailer
		sum := m.h.Sum(m.sum[:0])
		copy(out[ptStart+ptLen:], sum[:s.icvLen])
		s.macs.Put(m)
	}

	h := out[:ipv4HeaderLen]
	h[0], h[1] = 0x45, tos
	binary.BigEndian.PutUint16(h[2:4], uint16(total))
	binary.BigEndian.PutUint16(h[4:6], uint16(n)) // fresh per packet of the SA
	h[6], h[7] = df, 0
	h[8], h[9] = ttl, protoESP
	h[10], h[11] = 0, 0
	copy(h[12:20], addrs[:])
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
	return dst[:start+total], nil
}

// Open verifies and decrypts pkt, an IPv4 packet carrying ESP for this SA,
// in place and returns the inner packet, a subslice of pkt. pkt's outer
// header is overwritten. On error pkt's contents are unspecified. An SA
// with TBAR refuses (ErrNoPseudotime): use OpenAt.
func (s *SA) Open(pkt []byte) ([]byte, error) {
	if s.meta > 0 {
		return nil, ErrNoPseudotime
	}
	return s.openIPv4(pkt, 0)
}

// OpenAt is Open for any SA, pt being the receiver's pseudotime (the
// TEK's PseudotimeNow): an SA with TBAR drops, as ErrTBAR, an authentic
// packet without the pseudotime header or whose pseudotime differs from pt
// by more than the window; any other SA ignores pt.
func (s *SA) OpenAt(pkt []byte, pt time.Duration) ([]byte, error) {
	return s.openIPv4(pkt, pt)
}

func (s *SA) openIPv4(pkt []byte, pt time.Duration) ([]byte, error) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, ErrMalformed
	}
	ihl := int(pkt[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderLen || tot < ihl || tot > len(pkt) || pkt[9] != protoESP ||
		binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 || checksum(pkt[:ihl]) != 0 {
		return nil, ErrMalformed // reassembly is the caller's: no fragments
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	// The outer header was read: its first octets are the GCM nonce scratch.
	return s.open(src, pkt[ihl:tot], pkt[:gcmSaltLen+gcmIVLen], pt)
}

// PacketSPI returns the SPI of pkt, an IPv4 packet carrying ESP, for the
// caller's lookup of the SA to Open it with; ok is false when pkt is too
// short or not an unfragmented IPv4 ESP packet (Open would drop it as
// ErrMalformed).
func PacketSPI(pkt []byte) (spi uint32, ok bool) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return 0, false
	}
	ihl := int(pkt[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < ipv4HeaderLen || tot < ihl+4 || tot > len(pkt) || pkt[9] != protoESP ||
		binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
		return 0, false
	}
	return binary.BigEndian.Uint32(pkt[ihl:]), true
}

// OpenESP is Open for an ESP packet without its IP header (ESP in UDP,
// RFC 3948), src being the sender's address. It decrypts esp in place and
// returns the inner packet, a subslice of esp. An SA with TBAR refuses
// (ErrNoPseudotime): use OpenESPAt.
func (s *SA) OpenESP(src netip.Addr, esp []byte) ([]byte, error) {
	if s.meta > 0 {
		return nil, ErrNoPseudotime
	}
	return s.OpenESPAt(src, esp, 0)
}

// OpenESPAt is OpenESP for any SA, pt being the receiver's pseudotime
// (OpenAt).
func (s *SA) OpenESPAt(src netip.Addr, esp []byte, pt time.Duration) ([]byte, error) {
	var nonce []byte
	if s.kind == kindGCM {
		m := nonces.Get().(*[gcmSaltLen + gcmIVLen]byte)
		defer nonces.Put(m)
		nonce = m[:]
	}
	return s.open(src, esp, nonce, pt)
}

var nonces = sync.Pool{New: func() any { return new([gcmSaltLen + gcmIVLen]byte) }}

func (s *SA) open(src netip.Addr, esp, nonce []byte, at time.Duration) ([]byte, error) {
	hdr := espHeaderLen + s.ivLen
	if len(esp) < hdr+2+s.icvLen {
		return nil, ErrMalformed
	}
	ct := esp[hdr : len(esp)-s.icvLen]
	if s.kind == kindCBC && (len(ct) == 0 || len(ct)%aes.BlockSize != 0) {
		return nil, ErrMalformed
	}
	if binary.BigEndian.Uint32(esp[0:4]) != s.spi {
		return nil, ErrSPI
	}
	seq := uint64(binary.BigEndian.Uint32(esp[4:8]))
	var key senderKey
	var key6 netip.Addr // set for an IPv6 sender
	switch {
	case s.kind == kindGCM && s.sidBits > 0:
		key = keySID | senderKey(binary.BigEndian.Uint64(esp[8:16])>>(64-s.sidBits))
	case src.Is4():
		a := src.As4()
		key = keyIPv4 | senderKey(binary.BigEndian.Uint32(a[:]))
	default:
		key6 = src
	}
	// f is the sender's window once it exists: windows are never removed,
	// so the pointer stays valid after the lock is released.
	var f *replay.Filter
	// RFC 4303 §3.4.3: check before the ICV, record after. With TBAR the
	// counter is checked after the pseudotime, so that an old packet
	// replayed is counted as outside the time window (ErrTBAR) and only a
	// replay inside it as ErrReplay.
	if !s.replayOff && s.meta == 0 {
		if seq == 0 {
			return nil, ErrReplay
		}
		s.mu.Lock()
		f = s.lookup(key, key6)
		fresh := f == nil || f.Check(seq)
		s.mu.Unlock()
		if !fresh {
			return nil, ErrReplay
		}
	}

	var pt []byte
	switch s.kind {
	case kindGCM:
		copy(nonce, s.salt[:])
		copy(nonce[gcmSaltLen:], esp[8:16])
		var err error
		pt, err = s.aead.Open(ct[:0], nonce, esp[hdr:], esp[:espHeaderLen])
		if err != nil {
			return nil, ErrAuth
		}
	case kindCBC:
		m := s.macs.Get().(*macState)
		m.h.Reset()
		m.h.Write(esp[:len(esp)-s.icvLen])
		sum := m.h.Sum(m.sum[:0])
		if !hmac.Equal(sum[:s.icvLen], esp[len(esp)-s.icvLen:]) {
			s.macs.Put(m)
			return nil, ErrAuth
		}
		cbcDecrypt(m.dec, esp[espHeaderLen:hdr], ct)
		s.macs.Put(m)
		pt = ct
	}

	// Trailer (RFC 4303 §2.4-2.6): padding 1, 2, 3, ..., its length, and
	// next header 4 (an IPv4 packet; 59, a dummy packet, is dropped too),
	// or 253 on an SA with TBAR (the pseudotime header, then the packet).
	padLen := int(pt[len(pt)-2])
	nh := pt[len(pt)-1]
	if (nh != nextHeaderIP4 && (nh != NextHeaderMeta || s.meta == 0)) || padLen+2 > len(pt) {
		return nil, ErrMalformed
	}
	inner := pt[:len(pt)-2-padLen]
	for i, b := range pt[len(inner) : len(pt)-2] {
		if b != byte(i+1) {
			return nil, ErrMalformed
		}
	}
	if s.meta > 0 {
		if nh != NextHeaderMeta {
			return nil, ErrTBAR // authentic, but no pseudotime
		}
		ms, rest, ok := ParseMeta(inner)
		if !ok {
			return nil, ErrMalformed
		}
		if !s.inWindow(ms, at) {
			return nil, ErrTBAR
		}
		inner = rest
	}
	if len(inner) < ipv4HeaderLen || inner[0]>>4 != 4 || int(binary.BigEndian.Uint16(inner[2:4])) != len(inner) {
		return nil, ErrMalformed
	}

	if !s.replayOff {
		s.mu.Lock()
		if f == nil {
			if f = s.lookup(key, key6); f == nil { // not created meanwhile
				if len(s.senders)+len(s.senders6) >= s.maxSenders {
					s.mu.Unlock()
					return nil, ErrSenders
				}
				f = new(replay.Filter)
				f.SetWindow(s.window)
				if key6.IsValid() {
					s.senders6[key6] = f
				} else {
					s.senders[key] = f
				}
			}
		}
		ok := f.Accept(seq)
		s.mu.Unlock()
		if !ok {
			return nil, ErrReplay // a copy won the race since the check
		}
	}
	return inner, nil
}

// lookup returns the sender's replay window, nil when it has none yet.
// s.mu must be held.
func (s *SA) lookup(key senderKey, key6 netip.Addr) *replay.Filter {
	if key6.IsValid() {
		return s.senders6[key6]
	}
	return s.senders[key]
}

// Senders is the number of senders the SA keeps a replay window for.
func (s *SA) Senders() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.senders) + len(s.senders6)
}

// cbcEncrypt encrypts buf (whole blocks) in place in CBC mode (RFC 3602)
// with iv.
func cbcEncrypt(m ivMode, iv, buf []byte) {
	m.SetIV(iv)
	m.CryptBlocks(buf, buf)
}

// cbcDecrypt decrypts buf (whole blocks) in place.
func cbcDecrypt(m ivMode, iv, buf []byte) {
	m.SetIV(iv)
	m.CryptBlocks(buf, buf)
}

// checksum is the Internet checksum (RFC 1071) of b, summed 32 bits at a
// time (the one's-complement sum folds to the same 16 bits); over a header
// that carries its checksum it is 0.
func checksum(b []byte) uint16 {
	var sum uint64
	i := 0
	for ; i+4 <= len(b); i += 4 {
		sum += uint64(binary.BigEndian.Uint32(b[i:]))
	}
	if i+2 <= len(b) {
		sum += uint64(binary.BigEndian.Uint16(b[i:])) << 16
		i += 2
	}
	if i < len(b) {
		sum += uint64(b[i]) << 24
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
