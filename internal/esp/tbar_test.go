package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

// tbarTEK is tek with time-based anti-replay and a window of w seconds.
func tbarTEK(tek sadb.TEK, w int) sadb.TEK {
	tek.ReplayMethod, tek.ReplayWindow = isakmp.ReplayTime, w
	return tek
}

// gcmESP seals plaintext (the whole ESP payload: what follows the IV up to
// and including the Next Header octet) for SPI testSPI with tek's GCM key
// straight from crypto/cipher, sender ID sid (16 bits) and sequence number
// seq: a packet any sender could build from docs/wire.md.
func gcmESP(tek sadb.TEK, sid uint16, seq uint32, plaintext []byte) []byte {
	k := tek.EncKey[:len(tek.EncKey)-4]
	b, _ := aes.NewCipher(k)
	g, _ := cipher.NewGCM(b)
	head := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, testSPI), seq)
	iv := binary.BigEndian.AppendUint64(nil, uint64(sid)<<48|uint64(seq))
	return g.Seal(append(head, iv...), append(bytes.Clone(tek.EncKey[len(k):]), iv...), plaintext, head)
}

// gcmPlaintext decrypts the ESP part of a GCM packet with crypto/cipher.
func gcmPlaintext(t testing.TB, tek sadb.TEK, esp []byte) []byte {
	t.Helper()
	k := tek.EncKey[:len(tek.EncKey)-4]
	b, _ := aes.NewCipher(k)
	g, _ := cipher.NewGCM(b)
	nonce := append(bytes.Clone(tek.EncKey[len(k):]), esp[8:16]...)
	pt, err := g.Open(nil, nonce, esp[16:], esp[:8])
	if err != nil {
		t.Fatalf("crypto/cipher cannot open the packet: %v", err)
	}
	return pt
}

// proves: T2 (issue 12: TBAR with the KS pseudotime carried in each packet
// in an open encoding) — with every transform, SealAt writes the
// pseudotime header docs/wire.md draws (Next Header 253 in the trailer;
// 04 0c 01 00 and the pseudotime in milliseconds at the start of the
// payload, checked for GCM by decrypting with crypto/cipher), OpenAt
// accepts a packet whose pseudotime is within the window either side
// (bounds included) and delivers the inner packet, and drops as ErrTBAR one
// a millisecond outside.
func TestTBARRoundTripAndWindow(t *testing.T) {
	const stamp = 1234567 * time.Millisecond // 1234.567 s
	for _, tr := range transforms() {
		t.Run(tr.name, func(t *testing.T) {
			tek := tbarTEK(tr.tek, 5)
			tx := mustNew(t, tek, Config{})
			if !tx.TBAR() {
				t.Fatal("TBAR() false for a ReplayTime TEK")
			}
			for _, c := range []struct {
				at   time.Duration
				want error
			}{
				{stamp, nil},
				{stamp + 5*time.Second, nil}, // the receiver is ahead by the window
				{stamp - 5*time.Second, nil}, // behind by the window
				{stamp + 5001*time.Millisecond, ErrTBAR},
				{stamp - 5001*time.Millisecond, ErrTBAR},
				{stamp + time.Hour, ErrTBAR},
				{-time.Hour, ErrTBAR}, // a receiver clock before its sync counts as 0
			} {
				rx := mustNew(t, tek, Config{})
				for _, n := range []int{20, 21, 64, 1400} {
					inner := innerPacket("10.1.1.5", "10.1.2.7", n-20, 64, true)
					pkt, err := tx.SealAt(nil, inner, stamp)
					if err != nil {
						t.Fatal(err)
					}
					if len(pkt) != n+tx.Overhead(n) {
						t.Fatalf("size %d: sealed %d octets, Overhead says %d", n, len(pkt), n+tx.Overhead(n))
					}
					if isakmp.ESPTransform(tek.Transform) == isakmp.ESPAESGCM16 {
						pt := gcmPlaintext(t, tek, pkt[20:])
						if pt[len(pt)-1] != 253 {
							t.Fatalf("Next Header %d, want 253", pt[len(pt)-1])
						}
						if want, _ := hex.DecodeString("040c0100000000000012d687"); !bytes.Equal(pt[:12], want) {
							t.Fatalf("pseudotime header % x, want % x", pt[:12], want)
						}
						if !bytes.Equal(pt[12:12+n], inner) {
							t.Fatal("the inner packet does not follow the pseudotime header")
						}
					}
					got, err := rx.OpenAt(pkt, c.at)
					if err != c.want {
						t.Fatalf("size %d, receiver at %v: %v, want %v", n, c.at, err, c.want)
					}
					if err == nil && !bytes.Equal(got, inner) {
						t.Fatalf("size %d: inner differs after the round trip", n)
					}
				}
			}
		})
	}
}

// An SA with TBAR needs the pseudotime: Seal, Open and OpenESP refuse
// instead of skipping the check; the ESP-in-UDP path (OpenESPAt) and
// sealing in place (Headroom includes the header) work like the others.
func TestTBARNeedsPseudotime(t *testing.T) {
	for _, tr := range transforms() {
		tek := tbarTEK(tr.tek, 10)
		tx, rx := mustNew(t, tek, Config{}), mustNew(t, tek, Config{})
		inner := innerPacket("10.1.1.5", "10.1.2.7", 100, 64, true)
		if _, err := tx.Seal(nil, inner); err != ErrNoPseudotime {
			t.Fatalf("%s: Seal: %v, want ErrNoPseudotime", tr.name, err)
		}
		buf := make([]byte, 2048)
		h := tx.Headroom()
		copy(buf[h:], inner)
		pkt, err := tx.SealAt(buf[:0], buf[h:h+len(inner)], time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rx.Open(bytes.Clone(pkt)); err != ErrNoPseudotime {
			t.Fatalf("%s: Open: %v, want ErrNoPseudotime", tr.name, err)
		}
		if _, err := rx.OpenESP(netip.Addr{}, bytes.Clone(pkt[20:])); err != ErrNoPseudotime {
			t.Fatalf("%s: OpenESP: %v, want ErrNoPseudotime", tr.name, err)
		}
		got, err := rx.OpenESPAt(netip.MustParseAddr("10.1.1.5"), pkt[20:], time.Minute+time.Second)
		if err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%s: in-place SealAt / OpenESPAt: %v", tr.name, err)
		}
		// SealAt and OpenAt on an SA without TBAR ignore the pseudotime.
		plain := mustNew(t, tr.tek, Config{})
		p, err := plain.SealAt(nil, inner, time.Minute)
		if err != nil || len(p) != len(inner)+plain.Overhead(len(inner)) || plain.TBAR() {
			t.Fatalf("%s: SealAt without TBAR: %v", tr.name, err)
		}
		if got, err := mustNew(t, tr.tek, Config{}).OpenAt(p, 100*time.Hour); err != nil || !bytes.Equal(got, inner) {
			t.Fatalf("%s: OpenAt without TBAR: %v", tr.name, err)
		}
	}
}

// proves: T2 (issue 12: TBAR drops packets without a pseudotime) — an
// authentic packet of a TBAR SA without the header (Next Header 4) is
// ErrTBAR; a header that is not the documented one (Next Header, Length,
// Type) or is cut short is ErrMalformed, and so is the header on an SA
// without TBAR; Reserved is ignored.
func TestTBARHeaderChecks(t *testing.T) {
	tek := transforms()[0].tek
	inner := innerPacket("10.1.1.1", "10.1.2.2", 10, 64, false) // 30 octets
	hdr := func(nh, length, typ, rsvd byte, ms uint64) []byte {
		return binary.BigEndian.AppendUint64([]byte{nh, length, typ, rsvd}, ms)
	}
	trailer := func(payload []byte, nh byte) []byte {
		pad := (4 - (len(payload)+2)%4) % 4
		for i := 1; i <= pad; i++ {
			payload = append(payload, byte(i))
		}
		return append(payload, byte(pad), nh)
	}
	const at = 60 * time.Second
	for name, c := range map[string]struct {
		tbar bool
		pt   []byte
		want error
	}{
		"good":              {true, trailer(append(hdr(4, 12, 1, 0, 60000), inner...), 253), nil},
		"reserved ignored":  {true, trailer(append(hdr(4, 12, 1, 0xff, 60000), inner...), 253), nil},
		"no header":         {true, trailer(bytes.Clone(inner), 4), ErrTBAR},
		"header nh 41":      {true, trailer(append(hdr(41, 12, 1, 0, 60000), inner...), 253), ErrMalformed},
		"header length 16":  {true, trailer(append(hdr(4, 16, 1, 0, 60000), inner...), 253), ErrMalformed},
		"header type 2":     {true, trailer(append(hdr(4, 12, 2, 0, 60000), inner...), 253), ErrMalformed},
		"header cut":        {true, trailer(hdr(4, 12, 1, 0, 60000)[:10], 253), ErrMalformed},
		"header, no inner":  {true, trailer(hdr(4, 12, 1, 0, 60000), 253), ErrMalformed},
		"outside window":    {true, trailer(append(hdr(4, 12, 1, 0, 60000+10001), inner...), 253), ErrTBAR},
		"huge pseudotime":   {true, trailer(append(hdr(4, 12, 1, 0, 1<<63+60000), inner...), 253), ErrTBAR},
		"next header 59":    {true, trailer(append(hdr(4, 12, 1, 0, 60000), inner...), 59), ErrMalformed},
		"header on counter": {false, trailer(append(hdr(4, 12, 1, 0, 60000), inner...), 253), ErrMalformed},
		"counter good":      {false, trailer(bytes.Clone(inner), 4), nil},
	} {
		k := tek
		if c.tbar {
			k = tbarTEK(tek, 10)
		}
		rx := mustNew(t, k, Config{})
		if _, err := rx.OpenESPAt(netip.MustParseAddr("10.1.1.1"), gcmESP(k, 5, 1, c.pt), at); err != c.want {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// proves: T2 (issue 12: replays under TBAR) — TBAR itself keeps no
// counter: with AES-CBC (senders known only by the outer source, which may
// sit behind two GMs) an exact replay inside the time window is accepted
// and one outside is dropped as ErrTBAR; with AES-GCM and RFC 6054 sender
// IDs each sender's counter window is kept as well, so the exact replay is
// dropped as ErrReplay; replayed outside the time window it is ErrTBAR
// for both. A packet outside the time window does not move the sender's
// counter window.
func TestTBARReplays(t *testing.T) {
	const at = 500 * time.Second
	for _, tr := range transforms() {
		tek := tbarTEK(tr.tek, 3)
		tx, rx := mustNew(t, tek, Config{}), mustNew(t, tek, Config{})
		inner := innerPacket("10.1.1.5", "10.1.2.7", 40, 64, true)
		pkt, err := tx.SealAt(nil, inner, at)
		if err != nil {
			t.Fatal(err)
		}
		gcm := isakmp.ESPTransform(tek.Transform) == isakmp.ESPAESGCM16
		// First seen outside the window: dropped, and no window moved.
		if _, err := rx.OpenAt(bytes.Clone(pkt), at+4*time.Second); err != ErrTBAR {
			t.Fatalf("%s: outside the window: %v, want ErrTBAR", tr.name, err)
		}
		if _, err := rx.OpenAt(bytes.Clone(pkt), at+time.Second); err != nil {
			t.Fatalf("%s: inside the window after a TBAR drop: %v", tr.name, err)
		}
		_, err = rx.OpenAt(bytes.Clone(pkt), at+2*time.Second)
		switch {
		case gcm && err != ErrReplay:
			t.Fatalf("%s: replay inside the window: %v, want ErrReplay (sender-ID window)", tr.name, err)
		case !gcm && err != nil:
			t.Fatalf("%s: replay inside the window: %v, want accepted (TBAR alone)", tr.name, err)
		}
		// Replayed later, outside the window: a TBAR drop for both (the
		// pseudotime is checked before the counter).
		if _, err := rx.OpenAt(bytes.Clone(pkt), at+10*time.Second); err != ErrTBAR {
			t.Fatalf("%s: replay outside the window: %v, want ErrTBAR", tr.name, err)
		}
	}
}

// The worked example of docs/wire.md "The pseudotime header": AES-GCM-128,
// key 00 01 .. 0f, salt a0 a1 a2 a3, SPI 0x1a2b3c4d, sender ID 0x0102
// (16 bits), sequence number 1, pseudotime 1234.567 s, inner packet a
// 28-octet ICMP echo request 10.1.1.5 -> 10.1.2.7. The octets are
// docs/wire.md's.
func TestTBARWireExample(t *testing.T) {
	key := make([]byte, 20)
	for i := range 16 {
		key[i] = byte(i)
	}
	copy(key[16:], []byte{0xa0, 0xa1, 0xa2, 0xa3})
	tek := sadb.TEK{Group: "g", SPI: testSPI, Protocol: isakmp.TEKProtoESP, Transform: uint8(isakmp.ESPAESGCM16),
		KeyBits: 128, EncKey: key, SenderIDs: []uint32{0x0102}, SIDBits: 16,
		ReplayMethod: isakmp.ReplayTime, ReplayWindow: 5}
	inner, _ := hex.DecodeString("4500001c000100004001" + "0000" + "0a010105" + "0a010207" + "0800f7fe00010000")
	binary.BigEndian.PutUint16(inner[10:12], checksum(inner[:20]))
	tx := mustNew(t, tek, Config{})
	pkt, err := tx.SealAt(nil, inner, 1234567*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	plain := gcmPlaintext(t, tek, pkt[20:])
	const wantPlain = "040c01000000000000" + "12d687" + // pseudotime header
		"4500001c00010000400163d3" + "0a0101050a010207" + "0800f7fe00010000" + // inner
		"0102" + "02fd" // padding 1 2, Pad Length 2, Next Header 253
	const wantESP = "1a2b3c4d00000001" + "0102000000000001" // SPI, SEQ, IV
	const wantPkt = "45000060000000004032635f0a0101050a010207" + wantESP +
		"a43fd3606f65a2d0d4dcd8c5286b7613d237b921664d52712e96267bb2c1fff64b18cb76c591ed5977bb1397" + // ciphertext
		"a76b195a519645bcaf5dbbc3295626bb" // ICV
	if got := hex.EncodeToString(pkt); got != wantPkt {
		t.Errorf("packet\n got %s\nwant %s", got, wantPkt)
	}
	if got := hex.EncodeToString(plain); got != wantPlain {
		t.Errorf("plaintext\n got %s\nwant %s", got, wantPlain)
	}
	if got := hex.EncodeToString(pkt[20:36]); got != wantESP {
		t.Errorf("ESP header and IV\n got %s\nwant %s", got, wantESP)
	}
	if got, err := mustNew(t, tek, Config{}).OpenAt(pkt, 1236*time.Second); err != nil || !bytes.Equal(got, inner) {
		t.Fatalf("OpenAt: %v", err)
	}
}

// FuzzParseMeta: ParseMeta never panics, accepts exactly the documented
// header (Next Header 4, Length 12, Type 1, at least 12 octets), returns
// the big-endian millisecond field and the octets after it, and what
// PutMeta writes parses back.
//
// proves: T2 (issue 12: the pseudotime header decoder accepts only the
// documented layout)
func FuzzParseMeta(f *testing.F) {
	b := make([]byte, MetaLen, MetaLen+30)
	PutMeta(b, 1234567*time.Millisecond)
	f.Add(append(b, innerPacket("10.1.1.5", "10.1.2.7", 10, 64, false)...))
	f.Add(b[:11])
	f.Add([]byte{4, 12, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		ms, rest, ok := ParseMeta(p)
		want := len(p) >= 12 && p[0] == 4 && p[1] == 12 && p[2] == 1
		if ok != want {
			t.Fatalf("ParseMeta(% x) ok=%v, want %v", p, ok, want)
		}
		if !ok {
			return
		}
		if ms != binary.BigEndian.Uint64(p[4:12]) || len(rest) != len(p)-12 || (len(rest) > 0 && &rest[0] != &p[12]) {
			t.Fatalf("ParseMeta(% x) = %d, % x", p, ms, rest)
		}
		if ms <= uint64(math.MaxInt64/time.Millisecond) { // what a time.Duration holds

			q := make([]byte, MetaLen)
			PutMeta(q, time.Duration(ms)*time.Millisecond)
			if got, _, ok := ParseMeta(q); !ok || got != ms {
				t.Fatalf("PutMeta(%d ms) parses as %d, %v", ms, got, ok)
			}
		}
	})
}

// FuzzOpenTBAR throws arbitrary ESP payload plaintexts, authenticated with
// the group key (what a group member, or anyone holding the TEK, could
// send), at a TBAR SA: OpenESPAt never panics, returns only typed drops,
// and accepts only a payload that starts with the documented header whose
// pseudotime is within the window, delivering the octets after it.
//
// proves: T2 (issue 12: no input panics; only a stamped packet inside the
// window is accepted)
func FuzzOpenTBAR(f *testing.F) {
	tek := tbarTEK(transforms()[0].tek, 5)
	tx := mustNew(f, tek, Config{})
	for _, n := range []int{0, 1, 2, 3, 64} {
		pkt, err := tx.SealAt(nil, innerPacket("10.1.1.5", "10.1.2.7", n, 64, false), 100*time.Second)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(gcmPlaintext(f, tek, pkt[20:]), uint32(100000))
	}
	f.Add([]byte{4, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 253}, uint32(0))
	f.Fuzz(func(t *testing.T, plaintext []byte, atMillis uint32) {
		rx := mustNew(t, tek, Config{})
		at := time.Duration(atMillis) * time.Millisecond
		inner, err := rx.OpenESPAt(netip.MustParseAddr("10.1.1.5"), gcmESP(tek, 9, 1, plaintext), at)
		if err != nil {
			switch err {
			case ErrMalformed, ErrTBAR:
			default:
				t.Fatalf("untyped drop %v", err)
			}
			return
		}
		ms, rest, ok := ParseMeta(plaintext)
		if !ok || plaintext[len(plaintext)-1] != 253 {
			t.Fatalf("accepted a payload without the header: % x", plaintext)
		}
		d := int64(ms) - int64(atMillis)
		if ms > 1<<40 || d > 5000 || d < -5000 {
			t.Fatalf("accepted pseudotime %d ms at %d ms (window 5 s)", ms, atMillis)
		}
		if !bytes.HasPrefix(rest, inner) {
			t.Fatalf("delivered % x, not what follows the header", inner)
		}
	})
}
