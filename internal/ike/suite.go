// Package ike implements IKEv1 phase 1 (RFC 2409 main mode) as sans-IO
// state machines: an SA takes (datagram, now) and returns datagrams to send,
// the next timer and events. It never reads a clock, touches a socket or
// starts a goroutine. GDOI registration (RFC 6407 §3) runs inside the
// phase-1 SA this package establishes.
package ike

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// HashAlg is a phase-1 hash (RFC 2409 Appendix A; SHA-2 values from the IANA
// IPsec registry). The PRF is HMAC with it (RFC 2409 §5).
type HashAlg uint16

const (
	SHA1   HashAlg = HashAlg(isakmp.HashSHA1)
	SHA256 HashAlg = HashAlg(isakmp.HashSHA256)
	SHA384 HashAlg = HashAlg(isakmp.HashSHA384)
	SHA512 HashAlg = HashAlg(isakmp.HashSHA512)
)

func (h HashAlg) new() func() hash.Hash {
	switch h {
	case SHA1:
		return sha1.New
	case SHA256:
		return sha256.New
	case SHA384:
		return sha512.New384
	case SHA512:
		return sha512.New
	}
	return nil
}

// size is the hash's output length in octets.
func (h HashAlg) size() int {
	switch h {
	case SHA1:
		return 20
	case SHA256:
		return 32
	case SHA384:
		return 48
	case SHA512:
		return 64
	}
	return 0
}

func (h HashAlg) String() string {
	switch h {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SHA384:
		return "sha384"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("hash(%d)", uint16(h))
}

// AuthMethod is a phase-1 authentication method (RFC 2409 Appendix A,
// ECDSA from RFC 4754 §3).
type AuthMethod uint16

const (
	AuthPSK      AuthMethod = AuthMethod(isakmp.AuthPSK)
	AuthRSA      AuthMethod = AuthMethod(isakmp.AuthRSASig)
	AuthECDSA256 AuthMethod = AuthMethod(isakmp.AuthECDSASHA256)
	AuthECDSA384 AuthMethod = AuthMethod(isakmp.AuthECDSASHA384)
	AuthECDSA521 AuthMethod = AuthMethod(isakmp.AuthECDSASHA512)
)

func (a AuthMethod) String() string {
	switch a {
	case AuthPSK:
		return "psk"
	case AuthRSA:
		return "rsa-sig"
	case AuthECDSA256:
		return "ecdsa-256"
	case AuthECDSA384:
		return "ecdsa-384"
	case AuthECDSA521:
		return "ecdsa-521"
	}
	return fmt.Sprintf("auth(%d)", uint16(a))
}

func (a AuthMethod) signature() bool { return a != AuthPSK }

// Suite is one phase-1 transform: AES-CBC with a key length, a hash (and
// HMAC PRF), a DH group, an authentication method and a lifetime.
type Suite struct {
	KeyBits  int // AES-CBC key length: 128, 192 or 256
	Hash     HashAlg
	Group    uint16 // DH group: 14, 15, 16, 19, 20, 21
	Auth     AuthMethod
	Lifetime time.Duration // 0: DefaultLifetime
}

// DefaultLifetime is the phase-1 lifetime offered when a suite sets none
// (Cisco's and strongSwan's default for IKEv1 is longer; 24 h is IOS's).
const DefaultLifetime = 24 * time.Hour

func (s Suite) lifetime() time.Duration {
	if s.Lifetime <= 0 {
		return DefaultLifetime
	}
	return s.Lifetime
}

// String names the suite the way strongSwan's proposals do, e.g.
// "aes128-sha256-modp2048/psk".
func (s Suite) String() string {
	var g string
	if grp, ok := GroupByID(s.Group); ok {
		g = grp.Name()
	} else {
		g = "group" + strconv.Itoa(int(s.Group))
	}
	return "aes" + strconv.Itoa(s.KeyBits) + "-" + s.Hash.String() + "-" + g + "/" + s.Auth.String()
}

// Validate reports what is wrong with a suite, if anything.
func (s Suite) Validate() error {
	var bad []string
	if s.KeyBits != 128 && s.KeyBits != 192 && s.KeyBits != 256 {
		bad = append(bad, fmt.Sprintf("AES key length %d (want 128, 192 or 256)", s.KeyBits))
	}
	if s.Hash.new() == nil {
		bad = append(bad, fmt.Sprintf("hash %s", s.Hash))
	}
	if _, ok := GroupByID(s.Group); !ok {
		bad = append(bad, fmt.Sprintf("DH group %d (want 14, 15, 16, 19, 20 or 21)", s.Group))
	}
	switch s.Auth {
	case AuthPSK, AuthRSA, AuthECDSA256, AuthECDSA384, AuthECDSA521:
	default:
		bad = append(bad, fmt.Sprintf("authentication %s", s.Auth))
	}
	if len(bad) > 0 {
		return fmt.Errorf("ike: unsupported suite: %s", strings.Join(bad, ", "))
	}
	return nil
}

// transform encodes the suite as a KEY_IKE transform (RFC 2409 Appendix A).
func (s Suite) transform(n uint8) *isakmp.Transform { return s.fillTransform(new(suiteTransform), n) }

// suiteTransform holds a KEY_IKE transform and what its fields point to,
// so that one allocation makes it (a key server encodes one per
// registration, in message 2).
type suiteTransform struct {
	t     isakmp.Transform
	attrs [7]isakmp.Attribute
	life  [8]byte
}

// fillTransform writes the suite's transform number n into st and returns
// it: the attributes isakmp.BasicAttr and isakmp.IntAttr would make, in
// st's arrays.
func (s Suite) fillTransform(st *suiteTransform, n uint8) *isakmp.Transform {
	life := uint64(s.lifetime() / time.Second)
	lifeAttr := isakmp.BasicAttr(isakmp.IKELifeDuration, uint16(life))
	switch {
	case life > 0xffffffff:
		binary.BigEndian.PutUint64(st.life[:], life)
		lifeAttr = isakmp.VarAttr(isakmp.IKELifeDuration, st.life[:8:8])
	case life > 0xffff:
		binary.BigEndian.PutUint32(st.life[:], uint32(life))
		lifeAttr = isakmp.VarAttr(isakmp.IKELifeDuration, st.life[:4:4])
	}
	st.attrs = [7]isakmp.Attribute{
		isakmp.BasicAttr(isakmp.IKEEncryptionAlgorithm, isakmp.EncAESCBC),
		isakmp.BasicAttr(isakmp.IKEKeyLength, uint16(s.KeyBits)),
		isakmp.BasicAttr(isakmp.IKEHashAlgorithm, uint16(s.Hash)),
		isakmp.BasicAttr(isakmp.IKEAuthMethod, uint16(s.Auth)),
		isakmp.BasicAttr(isakmp.IKEGroupDescription, s.Group),
		isakmp.BasicAttr(isakmp.IKELifeType, isakmp.LifeSeconds),
		lifeAttr,
	}
	st.t = isakmp.Transform{Number: n, ID: isakmp.TransformKeyIKE, Attributes: st.attrs[:]}
	return &st.t
}

// suiteFromTransform decodes a KEY_IKE transform. Attributes we do not
// support make it unacceptable (an error), never silently ignored.
func suiteFromTransform(t *isakmp.Transform) (Suite, error) {
	var s Suite
	if t.ID != isakmp.TransformKeyIKE {
		return s, fmt.Errorf("transform id %d is not KEY_IKE", t.ID)
	}
	enc := uint16(0)
	for _, a := range t.Attributes {
		v, err := a.Uint()
		if err != nil {
			return s, err
		}
		switch isakmp.IKEAttr(a.Type) {
		case isakmp.IKEEncryptionAlgorithm:
			enc = uint16(v)
		case isakmp.IKEKeyLength:
			s.KeyBits = int(v)
		case isakmp.IKEHashAlgorithm:
			s.Hash = HashAlg(v)
		case isakmp.IKEAuthMethod:
			s.Auth = AuthMethod(v)
		case isakmp.IKEGroupDescription:
			s.Group = uint16(v)
		case isakmp.IKELifeType:
			if v != uint64(isakmp.LifeSeconds) {
				return s, fmt.Errorf("life type %d (only seconds)", v)
			}
		case isakmp.IKELifeDuration:
			if v > uint64(1<<31) {
				v = 1 << 31
			}
			s.Lifetime = time.Duration(v) * time.Second
		default:
			return s, fmt.Errorf("attribute %s not supported", isakmp.IKEAttr(a.Type))
		}
	}
	if enc != isakmp.EncAESCBC {
		return s, fmt.Errorf("encryption algorithm %d (only AES-CBC)", enc)
	}
	return s, s.Validate()
}

// sameAlgorithms reports whether two suites agree on everything but the
// lifetime.
func (s Suite) sameAlgorithms(o Suite) bool {
	return s.KeyBits == o.KeyBits && s.Hash == o.Hash && s.Group == o.Group && s.Auth == o.Auth
}
