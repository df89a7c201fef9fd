package ike

import (
	"bytes"
	cryptorand "crypto/rand"
	"errors"
	"math/big"
	mathrand "math/rand/v2"
	"strings"
	"testing"
)

// unhex decodes hex as the RFCs print it: groups of digits separated by
// white space.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || len(s)%2 != 0 {
		t.Fatalf("bad hex %q", s)
	}
	return n.FillBytes(make([]byte, len(s)/2))
}

// rfc5903Vector is one of RFC 5903 §8's examples.
type rfc5903Vector struct {
	group                    *ecpGroup
	i, gix, giy, r, grx, gry string
	girx                     string
}

// rfc5903Vectors are copied from RFC 5903 §8.1, §8.2 and §8.3.
var rfc5903Vectors = []rfc5903Vector{
	{ // §8.1, 256-Bit Random ECP Group, ID 19
		group: ecp256,
		i:     `C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433`,
		gix:   `DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180`,
		giy:   `5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3`,
		r:     `C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53`,
		grx:   `D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63`,
		gry:   `56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB`,
		girx:  `D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE`,
	},
	{ // §8.2, 384-Bit Random ECP Group, ID 20
		group: ecp384,
		i: `099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655
 E35B5380 41E649EE 3FAEF896 783AB194`,
		gix: `667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6
 DE3AC808 ACB4BDB4 C88732AE E95F41AA`,
		giy: `9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E
 EB9FCFF3 C2C947DA E69B4C63 4573A81C`,
		r: `41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942
 E0308312 916B8ED2 960E4BD5 5A7448FC`,
		grx: `E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
 0D1AC43A 0336DEF9 6FDA41D0 774A3571`,
		gry: `DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
 F83FA401 42209DFF 5EAAD96D B9E6386C`,
		girx: `11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4
 D6031355 69B9E9D0 9CF5D4A2 70F59746`,
	},
	{ // §8.3, 521-Bit Random ECP Group, ID 21
		group: ecp521,
		i: `0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0
 95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D
 4A52`,
		gix: `0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE
 E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C
 ED3E`,
		giy: `017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A
 D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F
 9582`,
		r: `0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E
 9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168
 5EB9`,
		grx: `00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21
 9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9
 460F`,
		gry: `015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87
 220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F
 C56A`,
		girx: `01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04
 D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3
 DDEA`,
	},
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHECPKnownAnswerRFC5903(t *testing.T) {
	for _, v := range rfc5903Vectors {
		t.Run(v.group.Name(), func(t *testing.T) {
			g := v.group
			gi := append(unhex(t, v.gix), unhex(t, v.giy)...)
			gr := append(unhex(t, v.grx), unhex(t, v.gry)...)
			want := unhex(t, v.girx)
			if len(gi) != g.PublicLen() || len(gr) != g.PublicLen() || len(want) != g.coordLen {
				t.Fatalf("vector lengths %d/%d/%d, want %d/%d/%d", len(gi), len(gr), len(want), g.PublicLen(), g.PublicLen(), g.coordLen)
			}

			privI, pubI, err := g.newPrivateKey(unhex(t, v.i))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pubI, gi) {
				t.Errorf("g^i = %X\nwant  %X", pubI, gi)
			}
			privR, pubR, err := g.newPrivateKey(unhex(t, v.r))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pubR, gr) {
				t.Errorf("g^r = %X\nwant  %X", pubR, gr)
			}

			zi, err := privI.Shared(gr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(zi, want) {
				t.Errorf("initiator g^ir = %X\nwant             %X", zi, want)
			}
			zr, err := privR.Shared(gi)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(zr, want) {
				t.Errorf("responder g^ir = %X\nwant             %X", zr, want)
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHRegistry(t *testing.T) {
	want := []struct {
		id        uint16
		name      string
		publicLen int
	}{
		{14, "modp2048", 256},
		{15, "modp3072", 384},
		{16, "modp4096", 512},
		{19, "ecp256", 64},
		{20, "ecp384", 96},
		{21, "ecp521", 132},
	}
	gs := Groups()
	if len(gs) != len(want) {
		t.Fatalf("Groups() has %d groups, want %d", len(gs), len(want))
	}
	for i, w := range want {
		g := gs[i]
		if g.ID() != w.id || g.Name() != w.name || g.PublicLen() != w.publicLen {
			t.Errorf("Groups()[%d] = %d %s %d, want %d %s %d", i, g.ID(), g.Name(), g.PublicLen(), w.id, w.name, w.publicLen)
		}
		got, ok := GroupByID(w.id)
		if !ok || got != g {
			t.Errorf("GroupByID(%d) = %v, %v", w.id, got, ok)
		}
	}
	for _, id := range []uint16{0, 1, 2, 5, 17, 18, 22, 24, 25, 26, 31, 0xffff} {
		if g, ok := GroupByID(id); ok || g != nil {
			t.Errorf("GroupByID(%d) = %v, %v; want unsupported", id, g, ok)
		}
	}
	gs[0] = nil // the caller's copy, not the registry
	if g, ok := GroupByID(14); !ok || g == nil || Groups()[0] == nil {
		t.Error("Groups() shares its slice with the registry")
	}
}

// piBits returns floor(pi * 2^k), by Machin's formula
// pi = 16 arctan(1/5) - 4 arctan(1/239) in fixed point with 64 guard bits.
func piBits(k uint) *big.Int {
	const guard = 64
	arctanInv := func(x int64) *big.Int { // arctan(1/x) * 2^(k+guard)
		sum := new(big.Int)
		x2 := big.NewInt(x * x)
		power := new(big.Int).Lsh(bigOne, k+guard)
		power.Quo(power, big.NewInt(x))
		term := new(big.Int)
		for n := int64(0); power.Sign() != 0; n++ {
			term.Quo(power, big.NewInt(2*n+1))
			if n%2 == 0 {
				sum.Add(sum, term)
			} else {
				sum.Sub(sum, term)
			}
			power.Quo(power, x2)
		}
		return sum
	}
	pi := new(big.Int).Mul(big.NewInt(16), arctanInv(5))
	pi.Sub(pi, new(big.Int).Mul(big.NewInt(4), arctanInv(239)))
	return pi.Rsh(pi, guard)
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
//
// The hex in dh.go is checked against the formula RFC 3526 gives beside it,
// recomputed from pi here, so a mistyped digit cannot pass; and each prime
// is checked to be a safe prime, as RFC 3526 §1 relies on.
func TestDHMODPPrimesRFC3526(t *testing.T) {
	for _, c := range []struct {
		g *modpGroup
		k int64 // the "+ k" of the RFC 3526 formula
	}{
		{modp2048, 124476},  // §3
		{modp3072, 1690314}, // §4
		{modp4096, 240904},  // §5
	} {
		t.Run(c.g.Name(), func(t *testing.T) {
			n := uint(c.g.size * 8)
			// 2^n - 2^(n-64) - 1 + 2^64 * { [2^(n-130) pi] + k }
			want := new(big.Int).Lsh(bigOne, n)
			want.Sub(want, new(big.Int).Lsh(bigOne, n-64))
			want.Sub(want, bigOne)
			mid := piBits(n - 130)
			mid.Add(mid, big.NewInt(c.k))
			want.Add(want, mid.Lsh(mid, 64))
			if c.g.p.Cmp(want) != 0 {
				t.Fatalf("prime differs from RFC 3526's formula:\n got %X\nwant %X", c.g.p, want)
			}
			if c.g.g.Cmp(big.NewInt(2)) != 0 {
				t.Errorf("generator %v, want 2", c.g.g)
			}
			if testing.Short() {
				return
			}
			q := new(big.Int).Rsh(c.g.p, 1)
			if !c.g.p.ProbablyPrime(0) || !q.ProbablyPrime(0) {
				t.Error("p or (p-1)/2 is not prime")
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHAgreement(t *testing.T) {
	for _, g := range Groups() {
		t.Run(g.Name(), func(t *testing.T) {
			privA, pubA, err := g.GenerateKey(cryptorand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			privB, pubB, err := g.GenerateKey(nil) // nil means crypto/rand
			if err != nil {
				t.Fatal(err)
			}
			if len(pubA) != g.PublicLen() || len(pubB) != g.PublicLen() {
				t.Fatalf("public values are %d and %d octets, PublicLen() = %d", len(pubA), len(pubB), g.PublicLen())
			}
			if bytes.Equal(pubA, pubB) {
				t.Fatal("two key pairs have the same public value")
			}
			zA, err := privA.Shared(pubB)
			if err != nil {
				t.Fatal(err)
			}
			zB, err := privB.Shared(pubA)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(zA, zB) {
				t.Fatalf("sides disagree:\n%X\n%X", zA, zB)
			}
			wantLen := g.PublicLen() // MODP: the prime's length
			if _, ecp := g.(*ecpGroup); ecp {
				wantLen /= 2 // ECP: the x coordinate
			}
			if len(zA) != wantLen {
				t.Errorf("g^xy is %d octets, want %d", len(zA), wantLen)
			}
			// Computing again gives the same; the key is not consumed.
			if again, err := privA.Shared(pubB); err != nil || !bytes.Equal(again, zA) {
				t.Errorf("second Shared = %X, %v", again, err)
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
//
// x = 2 and y = 3 with g = 2: g^x = 4, g^y = 8, g^xy = 64, each left-padded
// to the prime length (RFC 2409 §5).
func TestDHMODPKnownAnswerSmallExponent(t *testing.T) {
	padded := func(size int, v byte) []byte {
		b := make([]byte, size)
		b[size-1] = v
		return b
	}
	for _, g := range []*modpGroup{modp2048, modp3072, modp4096} {
		t.Run(g.Name(), func(t *testing.T) {
			privX, pubX := g.newPrivateKey(big.NewInt(2))
			privY, pubY := g.newPrivateKey(big.NewInt(3))
			if want := padded(g.size, 4); !bytes.Equal(pubX, want) {
				t.Errorf("g^2 = %X, want %X", pubX, want)
			}
			if want := padded(g.size, 8); !bytes.Equal(pubY, want) {
				t.Errorf("g^3 = %X, want %X", pubY, want)
			}
			want := padded(g.size, 64)
			for _, c := range []struct {
				priv PrivateKey
				peer []byte
			}{{privX, pubY}, {privY, pubX}} {
				z, err := c.priv.Shared(c.peer)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(z, want) {
					t.Errorf("g^6 = %X, want %X", z, want)
				}
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHMODPRejectsInvalidPeer(t *testing.T) {
	for _, g := range []*modpGroup{modp2048, modp3072, modp4096} {
		t.Run(g.Name(), func(t *testing.T) {
			priv, _ := g.newPrivateKey(big.NewInt(5))
			n := g.size
			fixed := func(v *big.Int) []byte { return v.FillBytes(make([]byte, n)) }
			valid := fixed(big.NewInt(4))
			cases := map[string][]byte{
				"empty":        nil,
				"one short":    valid[1:],
				"one long":     append([]byte{0}, valid...),
				"0":            fixed(big.NewInt(0)),
				"1":            fixed(big.NewInt(1)),
				"p-1":          fixed(g.pMinus1),
				"p":            fixed(g.p),
				"p+1":          fixed(new(big.Int).Add(g.p, bigOne)),
				"all ones":     bytes.Repeat([]byte{0xff}, n),
				"short p-2":    fixed(new(big.Int).Sub(g.p, big.NewInt(2)))[1:],
				"unpadded 4":   {4},
				"KE of ecp256": make([]byte, 64),
			}
			for name, peer := range cases {
				z, err := priv.Shared(peer)
				if err == nil {
					t.Errorf("%s: accepted, g^xy = %X", name, z)
					continue
				}
				if !strings.HasPrefix(err.Error(), "ike: "+g.Name()+": ") {
					t.Errorf("%s: error %q lacks context", name, err)
				}
			}
			// The extremes of the valid range are accepted.
			for _, y := range []*big.Int{big.NewInt(2), new(big.Int).Sub(g.p, big.NewInt(2))} {
				if _, err := priv.Shared(fixed(y)); err != nil {
					t.Errorf("y = %X refused: %v", y, err)
				}
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHECPRejectsInvalidPeer(t *testing.T) {
	// The field primes of RFC 5903 §3.1-3.3 ("Group Prime"), to build a
	// coordinate that is not reduced.
	fieldPrime := map[*ecpGroup]string{
		ecp256: `FFFFFFFF 00000001 00000000 00000000 00000000 FFFFFFFF FFFFFFFF FFFFFFFF`,
		ecp384: `FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFE
 FFFFFFFF 00000000 00000000 FFFFFFFF`,
		ecp521: `01FFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF
 FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF
 FFFF`,
	}
	for _, v := range rfc5903Vectors {
		g := v.group
		t.Run(g.Name(), func(t *testing.T) {
			priv, _, err := g.newPrivateKey(unhex(t, v.i))
			if err != nil {
				t.Fatal(err)
			}
			gx, gy := unhex(t, v.grx), unhex(t, v.gry)
			valid := append(append([]byte{}, gx...), gy...)
			if _, err := priv.Shared(valid); err != nil {
				t.Fatalf("valid point refused: %v", err)
			}
			offCurve := bytes.Clone(valid)
			offCurve[len(offCurve)-1] ^= 1
			// A coordinate equal to the field prime is not reduced.
			p := unhex(t, fieldPrime[g])
			cases := map[string][]byte{
				"empty":              nil,
				"one short":          valid[1:],
				"one long":           append(bytes.Clone(valid), 0),
				"with 0x04 prefix":   append([]byte{4}, valid...),
				"x only":             gx,
				"all zero":           make([]byte, g.PublicLen()),
				"off the curve":      offCurve,
				"x = field prime":    append(bytes.Clone(p), gy...),
				"y = field prime":    append(bytes.Clone(gx), p...),
				"all ones":           bytes.Repeat([]byte{0xff}, g.PublicLen()),
				"MODP-sized value 4": append(make([]byte, 255), 4),
			}
			for name, peer := range cases {
				z, err := priv.Shared(peer)
				if err == nil {
					t.Errorf("%s: accepted, g^xy = %X", name, z)
					continue
				}
				if !strings.HasPrefix(err.Error(), "ike: "+g.Name()+": ") {
					t.Errorf("%s: error %q lacks context", name, err)
				}
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
//
// GenerateKey draws its secret from the reader it is given, so equal
// readers give equal keys and different ones different keys.
func TestDHGenerateKeyUsesRand(t *testing.T) {
	seed := [32]byte{1, 2, 3}
	other := [32]byte{4, 5, 6}
	for _, g := range Groups() {
		t.Run(g.Name(), func(t *testing.T) {
			_, pub1, err := g.GenerateKey(mathrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			_, pub2, err := g.GenerateKey(mathrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			_, pub3, err := g.GenerateKey(mathrand.NewChaCha8(other))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pub1, pub2) {
				t.Error("the same random stream gave different keys")
			}
			if bytes.Equal(pub1, pub3) {
				t.Error("different random streams gave the same key")
			}
		})
	}
}

type errReader struct{}

var errNoEntropy = errors.New("no entropy")

func (errReader) Read([]byte) (int, error) { return 0, errNoEntropy }

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
func TestDHGenerateKeyRandFailure(t *testing.T) {
	for _, g := range Groups() {
		t.Run(g.Name(), func(t *testing.T) {
			if _, _, err := g.GenerateKey(errReader{}); !errors.Is(err, errNoEntropy) {
				t.Errorf("failing reader: err = %v, want one wrapping %v", err, errNoEntropy)
			}
			if _, ok := g.(*ecpGroup); ok {
				// All zeros and all ones are never valid scalars (0, or
				// above the order): the draw is refused, not looped on.
				for _, c := range []constReader{0x00, 0xff} {
					if _, _, err := g.GenerateKey(c); err == nil {
						t.Errorf("constant %#x reader: key accepted", byte(c))
					}
				}
			}
		})
	}
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
//
// strongSwan (gmp plugin, dh_exponent_ansi_x9_42 = yes) takes len(p) random
// octets and clears the top bit: with a reader of 0xff octets the exponent
// is 2^(bitlen(p)-1) - 1.
func TestDHMODPExponentLikeStrongSwan(t *testing.T) {
	g := modp2048
	priv, pub, err := g.GenerateKey(constReader(0xff))
	if err != nil {
		t.Fatal(err)
	}
	x := new(big.Int).Lsh(bigOne, uint(8*g.size-1))
	x.Sub(x, bigOne)
	if got := priv.(*modpPrivateKey).x; got.Cmp(x) != 0 {
		t.Fatalf("exponent has %d bits, want %d", got.BitLen(), x.BitLen())
	}
	want := new(big.Int).Exp(big.NewInt(2), x, g.p).FillBytes(make([]byte, g.size))
	if !bytes.Equal(pub, want) {
		t.Error("public value is not 2^x mod p")
	}
	// An exponent below 2 is drawn again: one block of zeros, then 0x01
	// octets, gives the exponent 0x0101...01.
	r := &stagedReader{first: make([]byte, g.size), then: 0x01}
	priv, _, err = g.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := priv.(*modpPrivateKey).x; got.BitLen() != 8*g.size-7 {
		t.Errorf("after a zero draw, exponent has %d bits, want %d", got.BitLen(), 8*g.size-7)
	}
}

// stagedReader gives first, then the octet then forever.
type stagedReader struct {
	first []byte
	then  byte
}

func (s *stagedReader) Read(p []byte) (int, error) {
	if len(s.first) > 0 {
		n := copy(p, s.first)
		s.first = s.first[n:]
		return n, nil
	}
	for i := range p {
		p[i] = s.then
	}
	return len(p), nil
}

// proves: groundwork (IKEv1 phase 1 DH, RFC 3526 / RFC 5903)
//
// One phase-1 exchange's worth of DH per iteration: GenerateKey plus Shared
// against a fixed peer value.
func BenchmarkDH(b *testing.B) {
	for _, g := range Groups() {
		b.Run(g.Name(), func(b *testing.B) {
			_, peer, err := g.GenerateKey(cryptorand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				priv, _, err := g.GenerateKey(cryptorand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := priv.Shared(peer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
