package ike

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
	"testing"
)

// proves: N1 (issue 18: the KS's CPU per registration) — the PRF computed
// in an Endpoint's scratch is HMAC (RFC 2104) as crypto/hmac computes it,
// for every hash, keys shorter than, as long as and longer than a block
// (hashed first), and data in pieces; the scratch keeps no key material
// after a computation.
func TestScratchHMACIsHMAC(t *testing.T) {
	s := new(scratch)
	for _, h := range []HashAlg{SHA1, SHA256, SHA384, SHA512} {
		for _, kl := range []int{0, 1, 20, 32, 63, 64, 65, 127, 128, 129, 300} {
			key := bytes.Repeat([]byte{byte(kl) | 1}, kl)
			for _, parts := range [][][]byte{nil, {[]byte("a")}, {[]byte("ab"), nil, bytes.Repeat([]byte{7}, 200)}} {
				m := hmac.New(h.new(), key)
				for _, p := range parts {
					m.Write(p)
				}
				want := m.Sum([]byte("prefix"))
				got := s.appendHMAC([]byte("prefix"), h, key, parts...)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s, key of %d octets, %d parts: %x, want %x", h, kl, len(parts), got, want)
				}
			}
			if s.key != [maxBlock]byte{} || s.pad != [maxBlock]byte{} || s.sum != [maxSize]byte{} {
				t.Fatalf("%s: key material left in the scratch", h)
			}
		}
	}
}

// proves: N1 (issue 18: hmac.New per PRF was 7 allocations, four
// GROUPKEY-PULL HASHes and the key derivation per registration on a key
// server) — an established SA's PRFa allocates at most a third of what
// the same HMAC with crypto/hmac does, measured side by side (7 before;
// 1 after: the result; AppendPRFa into the caller's room: 0), and the
// scratch is the Endpoint's, shared by its SAs.
func TestPRFaAllocations(t *testing.T) {
	p := newPair(t, pskConfig(), pskConfig())
	_, out, _ := p.i.Initiate(addrR, p.now)
	p.run(p.i, out)
	ei, er := p.i, p.r
	if len(er.SAs()) != 1 || len(ei.SAs()) != 1 {
		t.Fatal("not established")
	}
	sa := er.SAs()[0]
	if sa.sh != &er.sh || ei.SAs()[0].sh != &ei.sh {
		t.Fatal("an Endpoint's SAs do not share its scratch")
	}
	data := bytes.Repeat([]byte{3}, 100)
	key := sa.km.skeyidA(sa.suite.Hash)
	baseline := testing.AllocsPerRun(200, func() {
		m := hmac.New(sa.suite.Hash.new(), key)
		m.Write(data)
		m.Sum(nil)
	})
	want := hmac.New(sa.suite.Hash.new(), key)
	want.Write(data)
	if got := sa.PRFa(data); !bytes.Equal(got, want.Sum(nil)) {
		t.Fatal("PRFa is not HMAC with SKEYID_a")
	}
	got := testing.AllocsPerRun(200, func() { sa.PRFa(data) })
	t.Logf("PRFa: %.0f allocations, crypto/hmac %.0f", got, baseline)
	if got*3 > baseline {
		t.Fatalf("PRFa makes %.0f allocations, crypto/hmac %.0f: want at most a third", got, baseline)
	}
	// AppendPRFa into room of the caller's (gdoi's scratch): the same
	// octets after what dst held, and no allocation at all.
	dst := make([]byte, 2, 2+64)
	dst[0], dst[1] = 0xaa, 0xbb
	if got := sa.AppendPRFa(dst, data[:40], data[40:]); !bytes.Equal(got[:2], []byte{0xaa, 0xbb}) || !bytes.Equal(got[2:], want.Sum(nil)) {
		t.Fatal("AppendPRFa is not PRFa appended")
	}
	if n := testing.AllocsPerRun(200, func() { sa.AppendPRFa(dst[:0], data) }); n != 0 && !raceEnabled {
		t.Fatalf("AppendPRFa into room makes %.0f allocations, want 0", n)
	}
}

// proves: N1 (issue 18: crypto/cipher's CBC modes copied the AES key
// schedule per message) — AES-CBC block by block is crypto/cipher's CBC,
// both ways, for every key length and bodies of 1 to 40 blocks, and
// encrypting a message allocates less than with crypto/cipher's CBC.
func TestCBCIsCBC(t *testing.T) {
	for _, kl := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{byte(kl)}, kl)
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		iv := bytes.Repeat([]byte{0xa5}, aes.BlockSize)
		for n := 1; n <= 40; n++ {
			plain := make([]byte, n*aes.BlockSize)
			for i := range plain {
				plain[i] = byte(i*7 + n)
			}
			want := make([]byte, len(plain))
			cipher.NewCBCEncrypter(b, iv).CryptBlocks(want, plain)
			got := bytes.Clone(plain)
			cbcEncrypt(b, iv, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("key of %d octets, %d blocks: encryption differs", kl, n)
			}
			back := make([]byte, len(got))
			cbcDecrypt(b, iv, back, got)
			if !bytes.Equal(back, plain) {
				t.Fatalf("key of %d octets, %d blocks: decryption differs", kl, n)
			}
		}
	}
	b, _ := aes.NewCipher(make([]byte, 32))
	iv, buf := make([]byte, aes.BlockSize), make([]byte, 512)
	theirs := testing.AllocsPerRun(100, func() { cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf, buf) })
	ours := testing.AllocsPerRun(100, func() { cbcEncrypt(b, iv, buf) })
	t.Logf("CBC: %.0f allocations, crypto/cipher %.0f", ours, theirs)
	if ours >= theirs {
		t.Fatalf("CBC block by block makes %.0f allocations, crypto/cipher %.0f", ours, theirs)
	}
}

// proves: N1 (issue 18: a key server made message 2's Vendor ID payloads
// per registration) — an Endpoint's SAs share one pair of Vendor ID
// payloads, which follow the configured version and are never handed out
// for appending in place.
func TestVendorIDsShared(t *testing.T) {
	cfg := pskConfig()
	p := newPair(t, pskConfig(), cfg)
	a := &SA{cfg: cfg, sh: &p.r.sh}
	b := &SA{cfg: cfg, sh: &p.r.sh}
	va, vb := a.vendorIDs(), b.vendorIDs()
	if len(va) != 2 || va[0] != vb[0] || va[1] != vb[1] || cap(va) != len(va) {
		t.Fatal("the SAs of one Endpoint do not share their Vendor IDs")
	}
	if v, ok := version.FromVendorID(va[0].(*isakmp.VendorID).Data); !ok || v != cfg.version() {
		t.Fatalf("Vendor ID of version %v, want %v", v, cfg.version())
	}
	cfg.Version = version.Base
	if v, _ := version.FromVendorID(b.vendorIDs()[0].(*isakmp.VendorID).Data); v != version.Base {
		t.Fatalf("Vendor ID of version %v after the configured version changed to %v", v, version.Base)
	}
	if n := testing.AllocsPerRun(100, func() { a.vendorIDs() }); n != 0 {
		t.Fatalf("vendorIDs makes %.0f allocations", n)
	}
}
