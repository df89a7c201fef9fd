package ikev2

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
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

// proves: G3 (issue 17: prf+ and the SKEYSEED / DKM / CHILD SA KEYMAT
// derivations of RFC 7296 §2.13, §2.14, §2.17, §2.18 reproduce a NIST
// SP 800-135 CAVS IKEv2 KDF vector, count 0 with SHA-1, as libreswan's CAVS
// driver prints it).
func TestPRFPlusCAVS(t *testing.T) {
	gir := unhex(t, "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52")
	girNew := unhex(t, "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330")
	ni, nr := unhex(t, "32b50d5f4a3763f3"), unhex(t, "9206a04b26564cb1")
	spii, spir := unhex(t, "34c9e7c188868785"), unhex(t, "3ff77d760d2b2199")
	wantSeed := unhex(t, "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7")
	wantDKM := unhex(t, "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435a7a56cc4")
	wantChild := unhex(t, "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e664994d234cb4")
	wantChildDH := unhex(t, "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054d56fd74c")
	wantRekey := unhex(t, "63e81194946ebd05df7df5ebf5d8750056bf1f1d")

	nn := append(append([]byte{}, ni...), nr...)
	seed := prf(sha1.New, nn, gir)
	if !bytes.Equal(seed, wantSeed) {
		t.Fatalf("SKEYSEED %x, want %x", seed, wantSeed)
	}
	dkm, err := PRFPlus(sha1.New, seed, append(append(append([]byte{}, nn...), spii...), spir...), len(wantDKM))
	if err != nil || !bytes.Equal(dkm, wantDKM) {
		t.Fatalf("DKM %x (%v), want %x", dkm, err, wantDKM)
	}
	k := &Keys{prf: sha1.New, SKd: dkm[:20]}
	child, err := k.ChildKeymat(nil, ni, nr, len(wantChild))
	if err != nil || !bytes.Equal(child, wantChild) {
		t.Fatalf("child KEYMAT %x (%v), want %x", child, err, wantChild)
	}
	childDH, err := k.ChildKeymat(girNew, ni, nr, len(wantChildDH))
	if err != nil || !bytes.Equal(childDH, wantChildDH) {
		t.Fatalf("child KEYMAT with DH %x (%v), want %x", childDH, err, wantChildDH)
	}
	if rk := prf(sha1.New, k.SKd, girNew, ni, nr); !bytes.Equal(rk, wantRekey) {
		t.Fatalf("rekey SKEYSEED %x, want %x", rk, wantRekey)
	}
	if _, err := PRFPlus(sha1.New, seed, nil, 255*20+1); err == nil {
		t.Fatal("prf+ beyond 255 iterations accepted")
	}
}

// proves: G3 (issue 17: SK_* lengths per suite: SK_d/SK_p the PRF's
// output, SK_a the integrity key, SK_e the AES key plus RFC 5282's salt).
func TestDeriveKeysLengths(t *testing.T) {
	for _, s := range []Suite{
		{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19},
		{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2384, Group: 20},
		{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14},
	} {
		k, err := DeriveKeys(s, []byte("ni-nonce"), []byte("nr-nonce"), []byte("shared"), [8]byte{1}, [8]byte{2})
		if err != nil {
			t.Fatal(err)
		}
		p := prfHash(s.PRF)().Size()
		ik, _ := integLen(s.Integ)
		for name, got := range map[string][2]int{"SK_d": {len(k.SKd), p}, "SK_pi": {len(k.SKpi), p}, "SK_pr": {len(k.SKpr), p},
			"SK_ai": {len(k.SKai), ik}, "SK_ar": {len(k.SKar), ik}, "SK_ei": {len(k.SKei), s.encrKeyLen()}, "SK_er": {len(k.SKer), s.encrKeyLen()}} {
			if got[0] != got[1] {
				t.Errorf("%s: %s is %d octets, want %d", s, name, got[0], got[1])
			}
		}
	}
	if _, err := DeriveKeys(Suite{Encr: 3, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 14}, []byte("a"), []byte("b"), []byte("c"), [8]byte{}, [8]byte{}); err == nil {
		t.Fatal("3DES suite accepted")
	}
}
