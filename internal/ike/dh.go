package ike

import (
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// Group is a Diffie-Hellman group of the IKE registry (RFC 2409 §6, RFC 3526,
// RFC 5903).
//
// The groups behave as strongSwan's charon does with its default settings,
// so that both sides derive the same g^xy:
//   - MODP: public values and g^xy are big-endian and left-padded with zeros
//     to the length of the prime (RFC 2409 §5); the private exponent has the
//     full length of the prime with its top bit cleared
//     (charon.dh_exponent_ansi_x9_42 = yes, the default); a peer value is
//     accepted only if it is exactly prime-length and 1 < y < p-1.
//   - ECP: the KE data is x || y, each coordinate fixed-length big-endian,
//     without the 0x04 SEC 1 prefix; g^xy is the x coordinate only
//     (RFC 5903 §7; charon.ecp_x_coordinate_only = yes, the default); a
//     peer value must be exactly 2 coordinates long and a point on the curve.
type Group interface {
	ID() uint16     // IANA transform value: 14, 15, 16, 19, 20, 21
	Name() string   // e.g. "modp2048", "ecp256" (strongSwan's names)
	PublicLen() int // octets of the KE payload data
	// GenerateKey makes a key pair from rand; pub is the KE payload data.
	// A nil rand means crypto/rand.Reader.
	GenerateKey(rand io.Reader) (priv PrivateKey, pub []byte, err error)
}

// PrivateKey computes the shared secret g^xy from the peer's KE payload data.
type PrivateKey interface {
	Shared(peerPub []byte) ([]byte, error)
}

// GroupByID returns the group with IANA transform value id, if supported.
func GroupByID(id uint16) (Group, bool) {
	for _, g := range groups {
		if g.ID() == id {
			return g, true
		}
	}
	return nil, false
}

// Groups returns all supported groups in ID order.
func Groups() []Group {
	out := make([]Group, len(groups))
	copy(out, groups)
	return out
}

// groups is in ID order.
var groups = []Group{modp2048, modp3072, modp4096, ecp256, ecp384, ecp521}

// The MODP primes, as RFC 3526 prints them.

// rfc3526Prime2048 is RFC 3526 §3, "2048-bit MODP Group" (group 14):
// 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, generator 2.
const rfc3526Prime2048 = `
      FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
      29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
      EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
      E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
      EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
      C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
      83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
      670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
      E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
      DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
      15728E5A 8AACAA68 FFFFFFFF FFFFFFFF
`

// rfc3526Prime3072 is RFC 3526 §4, "3072-bit MODP Group" (group 15):
// 2^3072 - 2^3008 - 1 + 2^64 * { [2^2942 pi] + 1690314 }, generator 2.
const rfc3526Prime3072 = `
      FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
      29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
      EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
      E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
      EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
      C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
      83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
      670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
      E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
      DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
      15728E5A 8AAAC42D AD33170D 04507A33 A85521AB DF1CBA64
      ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
      ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B
      F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C
      BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31
      43DB5BFC E0FD108E 4B82D120 A93AD2CA FFFFFFFF FFFFFFFF
`

// rfc3526Prime4096 is RFC 3526 §5, "4096-bit MODP Group" (group 16):
// 2^4096 - 2^4032 - 1 + 2^64 * { [2^3966 pi] + 240904 }, generator 2.
const rfc3526Prime4096 = `
      FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
      29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
      EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245
      E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
      EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
      C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
      83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D
      670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
      E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
      DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
      15728E5A 8AAAC42D AD33170D 04507A33 A85521AB DF1CBA64
      ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7
      ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B
      F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C
      BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31
      43DB5BFC E0FD108E 4B82D120 A9210801 1A723C12 A787E6D7
      88719A10 BDBA5B26 99C32718 6AF4E23C 1A946834 B6150BDA
      2583E9CA 2AD44CE8 DBBBC2DB 04DE8EF9 2E8EFC14 1FBECAA6
      287C5947 4E6BC05D 99B2964F A090C3A2 233BA186 515BE7ED
      1F612970 CEE2D7AF B81BDD76 2170481C D0069127 D5B05AA9
      93B4EA98 8D8FDDC1 86FFB7DC 90A6C08F 4DF435C9 34063199
      FFFFFFFF FFFFFFFF
`

var (
	modp2048 = newMODPGroup(14, "modp2048", 2048, rfc3526Prime2048)
	modp3072 = newMODPGroup(15, "modp3072", 3072, rfc3526Prime3072)
	modp4096 = newMODPGroup(16, "modp4096", 4096, rfc3526Prime4096)

	// RFC 5903 §3.1-3.3; the component lengths are those of RFC 5903 §7
	// (521 bits are carried in 528, i.e. 66 octets).
	ecp256 = &ecpGroup{id: 19, name: "ecp256", curve: ecdh.P256(), coordLen: 32}
	ecp384 = &ecpGroup{id: 20, name: "ecp384", curve: ecdh.P384(), coordLen: 48}
	ecp521 = &ecpGroup{id: 21, name: "ecp521", curve: ecdh.P521(), coordLen: 66, topMask: 0x01}
)

var bigOne = big.NewInt(1)

// modpGroup is a MODP group of RFC 3526 (generator 2).
type modpGroup struct {
	id      uint16
	name    string
	p       *big.Int
	pMinus1 *big.Int
	g       *big.Int
	size    int // octets of p, of public values and of g^xy
}

func newMODPGroup(id uint16, name string, bits int, primeHex string) *modpGroup {
	p, ok := new(big.Int).SetString(strings.Join(strings.Fields(primeHex), ""), 16)
	if !ok || p.BitLen() != bits {
		panic(fmt.Sprintf("ike: %s: malformed RFC 3526 prime", name))
	}
	return &modpGroup{
		id:      id,
		name:    name,
		p:       p,
		pMinus1: new(big.Int).Sub(p, bigOne),
		g:       big.NewInt(2),
		size:    bits / 8,
	}
}

func (g *modpGroup) ID() uint16     { return g.id }
func (g *modpGroup) Name() string   { return g.name }
func (g *modpGroup) PublicLen() int { return g.size }

// GenerateKey draws the private exponent as strongSwan's gmp and gcrypt
// plugins do by default: as many random octets as the prime has, with the
// most significant bit cleared (an exponent of bitlen(p)-1 bits). An
// exponent below 2 (probability 2^-2046 or less) is drawn again.
func (g *modpGroup) GenerateKey(rand io.Reader) (PrivateKey, []byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	buf := make([]byte, g.size)
	defer clear(buf)
	for {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, nil, fmt.Errorf("ike: %s: reading private exponent: %w", g.name, err)
		}
		buf[0] &= 0x7f
		x := new(big.Int).SetBytes(buf)
		if x.Cmp(bigOne) > 0 {
			priv, pub := g.newPrivateKey(x)
			return priv, pub, nil
		}
	}
}

// newPrivateKey makes the key pair of exponent x; the tests use it with
// fixed exponents. x must be positive.
func (g *modpGroup) newPrivateKey(x *big.Int) (*modpPrivateKey, []byte) {
	y := new(big.Int).Exp(g.g, x, g.p)
	return &modpPrivateKey{group: g, x: new(big.Int).Set(x)}, y.FillBytes(make([]byte, g.size))
}

type modpPrivateKey struct {
	group *modpGroup
	x     *big.Int
}

// Shared checks the peer's value as strongSwan does (exact length,
// 1 < y < p-1; RFC 6989 §2.1 finds that enough for these safe-prime groups
// with ephemeral exponents) and returns g^xy left-padded to the prime length.
func (k *modpPrivateKey) Shared(peerPub []byte) ([]byte, error) {
	g := k.group
	if len(peerPub) != g.size {
		return nil, fmt.Errorf("ike: %s: peer public value is %d octets, want %d", g.name, len(peerPub), g.size)
	}
	y := new(big.Int).SetBytes(peerPub)
	if y.Cmp(bigOne) <= 0 || y.Cmp(g.pMinus1) >= 0 {
		return nil, fmt.Errorf("ike: %s: peer public value out of range (want 1 < y < p-1)", g.name)
	}
	z := new(big.Int).Exp(y, k.x, g.p)
	return z.FillBytes(make([]byte, g.size)), nil
}

// ecpGroup is an ECP group of RFC 5903.
type ecpGroup struct {
	id       uint16
	name     string
	curve    ecdh.Curve
	coordLen int  // octets of one coordinate, of the scalar and of g^xy
	topMask  byte // mask for the scalar's first octet; 0 means 0xff
}

func (g *ecpGroup) ID() uint16     { return g.id }
func (g *ecpGroup) Name() string   { return g.name }
func (g *ecpGroup) PublicLen() int { return 2 * g.coordLen }

// maxScalarTries bounds the rejection sampling in GenerateKey; with a working
// random source a draw is refused with probability below 2^-32.
const maxScalarTries = 64

// GenerateKey draws the scalar from rand by rejection sampling (a draw is
// kept if it lies in [1, n-1]), so that rand is honoured: since Go 1.26,
// crypto/ecdh's own GenerateKey ignores its reader.
func (g *ecpGroup) GenerateKey(rand io.Reader) (PrivateKey, []byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	k := &ecpPrivateKey{group: g}
	buf := k.work[:g.coordLen] // the scalar drawn: cleared once crypto/ecdh has its copy
	defer clear(buf)
	for range maxScalarTries {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, nil, fmt.Errorf("ike: %s: reading private scalar: %w", g.name, err)
		}
		if g.topMask != 0 {
			buf[0] &= g.topMask
		}
		pub, err := k.set(buf)
		if err == nil {
			return k, pub, nil
		}
	}
	return nil, nil, fmt.Errorf("ike: %s: random source gave no valid scalar in %d draws", g.name, maxScalarTries)
}

// newPrivateKey makes the key pair of the big-endian scalar (coordLen
// octets, in [1, n-1]); the tests use it with the RFC 5903 §8 scalars.
func (g *ecpGroup) newPrivateKey(scalar []byte) (*ecpPrivateKey, []byte, error) {
	k := &ecpPrivateKey{group: g}
	pub, err := k.set(scalar)
	if err != nil {
		return nil, nil, err
	}
	return k, pub, nil
}

// set makes k the key of scalar and returns its public value.
func (k *ecpPrivateKey) set(scalar []byte) ([]byte, error) {
	g := k.group
	priv, err := g.curve.NewPrivateKey(scalar)
	if err != nil {
		return nil, fmt.Errorf("ike: %s: private scalar: %w", g.name, err)
	}
	// Bytes is 0x04 || x || y (SEC 1 §2.3.3); the KE data drops the 0x04.
	enc := priv.PublicKey().Bytes()
	if len(enc) != 1+2*g.coordLen || enc[0] != 4 {
		return nil, errors.New("ike: " + g.name + ": unexpected public key encoding")
	}
	k.priv = priv
	return enc[1:], nil
}

type ecpPrivateKey struct {
	group *ecpGroup
	priv  *ecdh.PrivateKey
	// work holds the scalar while GenerateKey draws it, then the peer's
	// point while Shared decodes it: crypto/ecdh copies both, and both
	// are cleared after (issue 18: two allocations per key pair fewer).
	work [1 + 2*66]byte
}

// Shared checks that the peer's x || y has the right length and is a point
// on the curve, other than the point at infinity (crypto/ecdh's SEC 1
// §2.3.4 decoding), and returns the x coordinate of the common point
// (RFC 5903 §7).
func (k *ecpPrivateKey) Shared(peerPub []byte) ([]byte, error) {
	g := k.group
	if len(peerPub) != 2*g.coordLen {
		return nil, fmt.Errorf("ike: %s: peer public value is %d octets, want %d", g.name, len(peerPub), 2*g.coordLen)
	}
	enc := k.work[:1+len(peerPub)]
	enc[0] = 4
	copy(enc[1:], peerPub)
	pub, err := g.curve.NewPublicKey(enc)
	clear(enc)
	if err != nil {
		return nil, fmt.Errorf("ike: %s: peer public value is not a point on the curve: %w", g.name, err)
	}
	z, err := k.priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("ike: %s: computing shared secret: %w", g.name, err)
	}
	if len(z) != g.coordLen {
		return nil, fmt.Errorf("ike: %s: shared secret is %d octets, want %d", g.name, len(z), g.coordLen)
	}
	return z, nil
}
