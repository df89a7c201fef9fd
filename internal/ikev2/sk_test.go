package ikev2

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// fakeSKMessage builds header-like prefix bytes whose length fields count
// the sealed body, as the SA does.
func sealTest(t *testing.T, c *SKCipher, plain []byte) []byte {
	t.Helper()
	prefix := make([]byte, 32)
	binary.BigEndian.PutUint32(prefix[24:], uint32(32+c.SealedLen(len(plain))))
	prefix = append(prefix, 0x29, 0, 0, 0)
	binary.BigEndian.PutUint16(prefix[30:], uint16(4+c.SealedLen(len(plain))))
	msg, err := c.Seal(prefix, plain, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != 32+4+c.SealedLen(len(plain)) {
		t.Fatalf("sealed message of %d octets, sealedLen says %d", len(msg), 36+c.SealedLen(len(plain)))
	}
	return msg
}

// proves: G3 (issue 17: the SK payload with AES-GCM-16 (RFC 5282) and
// AES-CBC + HMAC-SHA2-256-128 (RFC 7296 §3.14) opens what it seals, and a
// flipped bit anywhere in the message, a truncation, or the other
// direction's key is refused as ErrIntegrity, never a panic).
func TestSKSealOpen(t *testing.T) {
	for _, s := range []Suite{
		{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19},
		{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 19},
		{Encr: wire.EncrAESCBC, KeyBits: 128, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14},
		{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14},
	} {
		k, err := DeriveKeys(s, []byte("ni"), []byte("nr"), []byte("gir"), [8]byte{1}, [8]byte{2})
		if err != nil {
			t.Fatal(err)
		}
		ci, err := NewSKCipher(s, k.SKei, k.SKai)
		if err != nil {
			t.Fatal(err)
		}
		cr, _ := NewSKCipher(s, k.SKer, k.SKar)
		for _, n := range []int{0, 1, 15, 16, 17, 100} {
			plain := bytes.Repeat([]byte{byte(n)}, n)
			msg := sealTest(t, ci, plain)
			got, err := ci.Open(msg, 36)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%s: %d octets: open %x, %v", s, n, got, err)
			}
			if _, err := cr.Open(msg, 36); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("%s: opened with the other direction's key: %v", s, err)
			}
			for i := range msg {
				bad := append([]byte{}, msg...)
				bad[i] ^= 0x80
				if _, err := ci.Open(bad, 36); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("%s: bit flipped at %d accepted: %v", s, i, err)
				}
			}
			for i := 0; i < len(msg); i++ {
				if _, err := ci.Open(msg[:i], 36); err == nil {
					t.Fatalf("%s: truncated to %d accepted", s, i)
				}
			}
		}
	}
}
