package keywrap

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proves: G2 (issue 17: key wrap is RFC 5649, KW_5649_*; the two test
// vectors of RFC 5649 §6, a 20-octet and a 7-octet key under a 192-bit KEK)
func TestRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		key, want := unhex(t, v.key), unhex(t, v.wrapped)
		got, err := Wrap(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Wrap(%s) = %x, %v; want %x", v.key, got, err, want)
		}
		back, err := Unwrap(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("Unwrap(%s) = %x, %v; want %x", v.wrapped, back, err, key)
		}
	}
}

// proves: G2 (issue 17: the RFC 3394 AES key wrap RFC 5649 builds on; RFC
// 3394 §4.1, 4.2, 4.3, 4.5, 4.6)
func TestRFC3394Vectors(t *testing.T) {
	const k128, k192, k256 = "000102030405060708090A0B0C0D0E0F", "000102030405060708090A0B0C0D0E0F1011121314151617", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	for _, v := range []struct{ kek, key, wrapped string }{
		{k128, "00112233445566778899AABBCCDDEEFF", "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{k192, "00112233445566778899AABBCCDDEEFF", "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D"},
		{k256, "00112233445566778899AABBCCDDEEFF", "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"},
		{k256, "00112233445566778899AABBCCDDEEFF0001020304050607", "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1"},
		{k256, "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F", "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	} {
		kek, key, want := unhex(t, v.kek), unhex(t, v.key), unhex(t, v.wrapped)
		got, err := Wrap3394(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Wrap3394 = %x, %v; want %x", got, err, want)
		}
		back, err := Unwrap3394(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Fatalf("Unwrap3394 = %x, %v; want %x", back, err, key)
		}
	}
}

// proves: G2 (issue 17: every length from 1 to 300 octets round-trips
// under each KW_5649_* key size, output padded length + 8)
func TestRoundTrip(t *testing.T) {
	for _, kwa := range []uint16{wire.KWA5649AES128, wire.KWA5649AES192, wire.KWA5649AES256} {
		n, err := KeyLen(kwa)
		if err != nil {
			t.Fatal(err)
		}
		kek := bytes.Repeat([]byte{byte(kwa)}, n)
		for l := 1; l <= 300; l++ {
			key := make([]byte, l)
			for i := range key {
				key[i] = byte(i*7 + l)
			}
			w, err := Wrap(kek, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(w) != (l+7)&^7+8 {
				t.Fatalf("KWA %d, %d octets wrapped into %d", kwa, l, len(w))
			}
			back, err := Unwrap(kek, w)
			if err != nil || !bytes.Equal(back, key) {
				t.Fatalf("KWA %d, %d octets: %x, %v", kwa, l, back, err)
			}
		}
	}
	if _, err := KeyLen(wire.KWAARX); err == nil {
		t.Fatal("KW_ARX accepted")
	}
}

// proves: G2 (issue 17: a key wrap integrity failure is detected: every
// flipped bit, a wrong KEK, a bad AIV, a length indicator out of range and
// non-zero padding are all ErrIntegrity, and nothing is returned)
func TestUnwrapIntegrity(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, w := range []string{"138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", "afbeb0f07dfbf5419200f2ccb50bb24f"} {
		good := unhex(t, w)
		for bit := 0; bit < 8*len(good); bit++ {
			bad := append([]byte(nil), good...)
			bad[bit/8] ^= 1 << (bit % 8)
			if k, err := Unwrap(kek, bad); !errors.Is(err, ErrIntegrity) || k != nil {
				t.Fatalf("bit %d flipped: %x, %v", bit, k, err)
			}
		}
		other := append([]byte(nil), kek...)
		other[0] ^= 1
		if _, err := Unwrap(other, good); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("wrong KEK: %v", err)
		}
	}
	// Crafted registers: the AES operation is right, the check must fail.
	b, _ := aes.NewCipher(kek)
	craft := func(prefix [4]byte, mli uint32, p []byte) []byte {
		var iv [8]byte
		copy(iv[:], prefix[:])
		binary.BigEndian.PutUint32(iv[4:], mli)
		if len(p) == 8 {
			out := append(iv[:], p...)
			b.Encrypt(out, out)
			return out
		}
		return wrap(b, iv, append([]byte(nil), p...))
	}
	sixteen := bytes.Repeat([]byte{1}, 16)
	padded := append(bytes.Repeat([]byte{1}, 12), 0, 0, 0, 9)
	for name, w := range map[string][]byte{
		"RFC 3394 IV":       craft([4]byte{0xa6, 0xa6, 0xa6, 0xa6}, 0xa6a6a6a6, sixteen),
		"MLI 0":             craft(aivPrefix, 0, bytes.Repeat([]byte{0}, 8)),
		"MLI too small":     craft(aivPrefix, 8, sixteen),
		"MLI too large":     craft(aivPrefix, 17, sixteen),
		"MLI 2^32-1":        craft(aivPrefix, 0xffffffff, sixteen),
		"MLI 2^31":          craft(aivPrefix, 0x80000000, sixteen),
		"non-zero padding":  craft(aivPrefix, 12, padded),
		"one-block padding": craft(aivPrefix, 7, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
		"one-block MLI 9":   craft(aivPrefix, 9, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
	} {
		if k, err := Unwrap(kek, w); !errors.Is(err, ErrIntegrity) || k != nil {
			t.Errorf("%s: %x, %v", name, k, err)
		}
	}
	// The same crafting with a right register passes (the crafting is sound).
	if k, err := Unwrap(kek, craft(aivPrefix, 13, append(bytes.Repeat([]byte{1}, 13), 0, 0, 0))); err != nil || len(k) != 13 {
		t.Fatalf("sound crafting refused: %x, %v", k, err)
	}
	for _, n := range []int{0, 8, 15, 17, 23, MaxKeyLen + 24} {
		if _, err := Unwrap(kek, make([]byte, n)); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%d octets: %v", n, err)
		}
	}
	if _, err := Unwrap(kek[:5], make([]byte, 16)); err == nil {
		t.Error("a 5-octet KEK accepted")
	}
	if _, err := Wrap(kek, nil); err == nil {
		t.Error("an empty key wrapped")
	}
	if _, err := Wrap(kek, make([]byte, MaxKeyLen+1)); err == nil {
		t.Error("an oversized key wrapped")
	}
	if _, err := Unwrap3394(kek, craft(aivPrefix, 16, sixteen)); !errors.Is(err, ErrIntegrity) {
		t.Errorf("RFC 5649 output accepted by Unwrap3394: %v", err)
	}
}

// FuzzUnwrap feeds hostile wrapped keys to Unwrap and Unwrap3394.
// proves: G2 (issue 17: unwrapping hostile input never panics, returns at
// most len-8 octets, and what it returns wraps back to the same bytes)
func FuzzUnwrap(f *testing.F) {
	kek := []byte("0123456789abcdef01234567")
	f.Add(kek, []byte{0x13, 0x8b, 0xde, 0xaa, 0x9b, 0x8f, 0xa7, 0xfc, 0x61, 0xf9, 0x77, 0x42, 0xe7, 0x22, 0x48, 0xee, 0x5a, 0xe6, 0xae, 0x53, 0x60, 0xd1, 0xae, 0x6a, 0x5f, 0x54, 0xf3, 0x73, 0xfa, 0x54, 0x3b, 0x6a})
	w, _ := Wrap(kek, []byte("a 20 octet key......"))
	f.Add(kek, w)
	w, _ = Wrap(kek, []byte("seven.."))
	f.Add(kek, w)
	w, _ = Wrap3394(kek[:16], make([]byte, 16))
	f.Add(kek[:16], w)
	f.Add(kek[:3], make([]byte, 16))
	f.Fuzz(func(t *testing.T, kek, wrapped []byte) {
		if k, err := Unwrap(kek, wrapped); err == nil {
			if len(k) == 0 || len(k) > len(wrapped)-8 {
				t.Fatalf("%d octets from %d", len(k), len(wrapped))
			}
			again, err := Wrap(kek, k)
			if err != nil || !bytes.Equal(again, wrapped) {
				t.Fatalf("unwrapped key does not wrap back: %v", err)
			}
		}
		if k, err := Unwrap3394(kek, wrapped); err == nil && len(k) != len(wrapped)-8 {
			t.Fatalf("RFC 3394: %d octets from %d", len(k), len(wrapped))
		}
	})
}
