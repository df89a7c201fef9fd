package esp

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proves: E1 (issue 12: known answers) — the engine's own in-place CBC
// (crypto/cipher's CBC objects would allocate per packet) against the
// AES-CBC test vectors of RFC 3602 §4, cases #1 to #3, both ways.
func TestCBCKnownAnswersRFC3602(t *testing.T) {
	for _, c := range []struct{ key, iv, pt, ct string }{
		{"06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
			hex.EncodeToString([]byte("Single block msg")), "e353779c1079aeb82708942dbe77181a"},
		{"c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"},
		{"6c3ea0477630ce21a2ce334aa746c2cd", "c782dc4c098c66cbd9cd27d825682c81",
			hex.EncodeToString([]byte("This is a 48-byte message (exactly 3 AES blocks)")),
			"d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5021c19216bad525c8579695d83ba2684"},
	} {
		b, err := aes.NewCipher(unhex(t, c.key))
		if err != nil {
			t.Fatal(err)
		}
		enc, dec, ok := cbcModes(b)
		if !ok {
			t.Fatal("no CBC modes with SetIV")
		}
		buf := unhex(t, c.pt)
		cbcEncrypt(enc, unhex(t, c.iv), buf)
		if !bytes.Equal(buf, unhex(t, c.ct)) {
			t.Fatalf("encrypt: % x, want %s", buf, c.ct)
		}
		cbcDecrypt(dec, unhex(t, c.iv), buf)
		if !bytes.Equal(buf, unhex(t, c.pt)) {
			t.Fatalf("decrypt: % x, want %s", buf, c.pt)
		}
	}
}

// proves: E1 (issue 12: known answers) — the ICV of an SA with
// HMAC-SHA-256-128 is the truncation of RFC 4868 §2.7.2.1 test case
// AUTH256-1 (key 0x0b x 32, "Hi There"), computed through the SA's own MAC
// state.
func TestHMACSHA256128KnownAnswerRFC4868(t *testing.T) {
	tek := transforms()[4].tek
	tek.AuthAlg, tek.AuthKey = isakmp.AuthAlgHMACSHA256, bytes.Repeat([]byte{0x0b}, 32)
	s := mustNew(t, tek, Config{})
	m := s.macs.Get().(*macState)
	m.h.Reset()
	m.h.Write([]byte("Hi There"))
	got := m.h.Sum(nil)[:s.icvLen]
	if want := unhex(t, "198a607eb44bfbc69903a0f1cf2bbdc5"); !bytes.Equal(got, want) {
		t.Fatalf("AUTH256-1: % x, want % x", got, want)
	}
}
