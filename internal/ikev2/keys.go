package ikev2

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
)

// prf is the negotiated PRF: HMAC with a SHA-2 hash (RFC 4868).
func prf(h func() hash.Hash, key []byte, data ...[]byte) []byte {
	m := hmac.New(h, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// maxPRFPlus is the most prf+ can produce: 255 iterations (RFC 7296 §2.13).
const maxPRFPlus = 255

// PRFPlus is prf+ of RFC 7296 §2.13 over HMAC with h: T1 | T2 | ... cut
// to n octets, with T1 = prf(K, S | 0x01) and Tn = prf(K, Tn-1 | S | n).
// At most 255 iterations.
func PRFPlus(h func() hash.Hash, key, seed []byte, n int) ([]byte, error) {
	size := h().Size()
	if n > maxPRFPlus*size {
		return nil, fmt.Errorf("ikev2: prf+ of %d octets exceeds 255 iterations", n)
	}
	out := make([]byte, 0, n+size)
	var t []byte
	for i := 1; len(out) < n; i++ {
		t = prf(h, key, t, seed, []byte{byte(i)})
		out = append(out, t...)
	}
	return out[:n], nil
}

// Keys is the keying material of one IKE SA (RFC 7296 §2.14). The SK_e
// keys of AES-GCM end with their 4-octet salt (RFC 5282 §7.1); SK_ai and
// SK_ar are empty with AES-GCM.
type Keys struct {
	SKEYSEED   []byte
	SKd        []byte
	SKai, SKar []byte
	SKei, SKer []byte
	SKpi, SKpr []byte
	prf        func() hash.Hash
	suite      Suite
}

// DeriveKeys computes SKEYSEED = prf(Ni | Nr, g^ir) and
// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 §2.14). gir is the DH
// shared secret as internal/ike's groups compute it (for ECP groups the x
// coordinate, RFC 5903 §7).
func DeriveKeys(s Suite, ni, nr, gir []byte, spii, spir [8]byte) (*Keys, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(ni) == 0 || len(nr) == 0 || len(gir) == 0 {
		return nil, errors.New("ikev2: key derivation needs both nonces and the shared secret")
	}
	h := prfHash(s.PRF)
	k := &Keys{prf: h, suite: s}
	k.SKEYSEED = prf(h, append(append([]byte{}, ni...), nr...), gir)
	prfLen := h().Size()
	integKey, _ := integLen(s.Integ)
	encrKey := s.encrKeyLen()
	seed := append(append(append(append([]byte{}, ni...), nr...), spii[:]...), spir[:]...)
	total := 3*prfLen + 2*integKey + 2*encrKey
	km, err := PRFPlus(h, k.SKEYSEED, seed, total)
	if err != nil {
		return nil, err
	}
	take := func(n int) []byte {
		b := km[:n:n]
		km = km[n:]
		return b
	}
	k.SKd = take(prfLen)
	k.SKai, k.SKar = take(integKey), take(integKey)
	k.SKei, k.SKer = take(encrKey), take(encrKey)
	k.SKpi, k.SKpr = take(prfLen), take(prfLen)
	return k, nil
}

// ChildKeymat returns n octets of CHILD SA keying material, KEYMAT =
// prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17); gir is nil unless
// the CREATE_CHILD_SA exchange had a KE.
func (k *Keys) ChildKeymat(gir, ni, nr []byte, n int) ([]byte, error) {
	seed := append(append(append([]byte{}, gir...), ni...), nr...)
	return PRFPlus(k.prf, k.SKd, seed, n)
}

// PRFPlus is prf+ (RFC 7296 §2.13) with the SA's PRF, as G-IKEv2's
// GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2") (RFC 9838 §3.1.1).
func (k *Keys) PRFPlus(key, seed []byte, n int) ([]byte, error) { return PRFPlus(k.prf, key, seed, n) }

// PRF computes the SA's PRF (for exchanges built on the SA, such as
// G-IKEv2's key derivations).
func (k *Keys) PRF(key []byte, data ...[]byte) []byte { return prf(k.prf, key, data...) }
