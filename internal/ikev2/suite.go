// Package ikev2 implements the IKEv2 SA layer (RFC 7296) as sans-IO state
// machines: IKE_SA_INIT and IKE_AUTH as initiator and responder, the
// INFORMATIONAL exchange (Delete, liveness), retransmission (§2.1) and the
// responder's stored answers, cookies and half-open bounds. Like
// internal/ike, an SA takes (datagram, now) and returns datagrams to send,
// the next timer and events; it never reads a clock, touches a socket or
// starts a goroutine. The wire codec is the top-level package ikev2
// (github.com/groupvpn/groupvpn/ikev2); G-IKEv2 (RFC 9838) builds on this
// layer: GSA_AUTH takes IKE_AUTH's place after IKE_SA_INIT.
package ikev2

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strings"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
)

// Suite is one IKE SA proposal, in the codec's transform IDs: an
// encryption algorithm (ENCR_AES_CBC or ENCR_AES_GCM_16) and key length,
// an integrity algorithm (AUTH_HMAC_SHA2_*; none with AES-GCM), a PRF
// (PRF_HMAC_SHA2_*) and a DH group (one of internal/ike's: 14, 15, 16,
// 19, 20, 21).
type Suite struct {
	Encr    uint16
	KeyBits int // 128, 192 or 256
	Integ   uint16
	PRF     uint16
	Group   uint16
}

// DefaultSuites are offered when a Config names none, strongest first.
var DefaultSuites = []Suite{
	{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA2256, Group: 19},
	{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19},
	{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14},
}

// String names the suite as strongSwan's proposals do, e.g.
// "aes128gcm16-prfsha256-ecp256" or "aes256-sha256-prfsha256-modp2048".
func (s Suite) String() string {
	var b strings.Builder
	switch s.Encr {
	case wire.EncrAESGCM16:
		fmt.Fprintf(&b, "aes%dgcm16", s.KeyBits)
	case wire.EncrAESCBC:
		fmt.Fprintf(&b, "aes%d", s.KeyBits)
	default:
		fmt.Fprintf(&b, "encr%d", s.Encr)
	}
	switch s.Integ {
	case wire.IntegNone:
	case wire.IntegHMACSHA2256128:
		b.WriteString("-sha256")
	case wire.IntegHMACSHA2384192:
		b.WriteString("-sha384")
	case wire.IntegHMACSHA2512256:
		b.WriteString("-sha512")
	default:
		fmt.Fprintf(&b, "-integ%d", s.Integ)
	}
	switch s.PRF {
	case wire.PRFHMACSHA2256:
		b.WriteString("-prfsha256")
	case wire.PRFHMACSHA2384:
		b.WriteString("-prfsha384")
	case wire.PRFHMACSHA2512:
		b.WriteString("-prfsha512")
	default:
		fmt.Fprintf(&b, "-prf%d", s.PRF)
	}
	if g, ok := ike.GroupByID(s.Group); ok {
		b.WriteString("-" + g.Name())
	} else {
		fmt.Fprintf(&b, "-group%d", s.Group)
	}
	return b.String()
}

// Validate reports what is wrong with a suite, if anything.
func (s Suite) Validate() error {
	var bad []string
	switch s.Encr {
	case wire.EncrAESGCM16:
		if s.Integ != wire.IntegNone {
			bad = append(bad, "AES-GCM with an integrity transform")
		}
	case wire.EncrAESCBC:
		if integHash(s.Integ) == nil {
			bad = append(bad, fmt.Sprintf("integrity %d (want HMAC-SHA2)", s.Integ))
		}
	default:
		bad = append(bad, fmt.Sprintf("encryption %d (want AES-CBC or AES-GCM-16)", s.Encr))
	}
	if s.KeyBits != 128 && s.KeyBits != 192 && s.KeyBits != 256 {
		bad = append(bad, fmt.Sprintf("key length %d", s.KeyBits))
	}
	if prfHash(s.PRF) == nil {
		bad = append(bad, fmt.Sprintf("PRF %d (want HMAC-SHA2)", s.PRF))
	}
	if _, ok := ike.GroupByID(s.Group); !ok {
		bad = append(bad, fmt.Sprintf("DH group %d", s.Group))
	}
	if len(bad) > 0 {
		return fmt.Errorf("ikev2: unsupported suite: %s", strings.Join(bad, ", "))
	}
	return nil
}

func prfHash(id uint16) func() hash.Hash {
	switch id {
	case wire.PRFHMACSHA2256:
		return sha256.New
	case wire.PRFHMACSHA2384:
		return sha512.New384
	case wire.PRFHMACSHA2512:
		return sha512.New
	}
	return nil
}

func integHash(id uint16) func() hash.Hash {
	switch id {
	case wire.IntegHMACSHA2256128:
		return sha256.New
	case wire.IntegHMACSHA2384192:
		return sha512.New384
	case wire.IntegHMACSHA2512256:
		return sha512.New
	}
	return nil
}

// integLen is the key length and the truncated ICV length of an
// integrity transform (RFC 4868 §2.6, §2.1).
func integLen(id uint16) (key, icv int) {
	switch id {
	case wire.IntegHMACSHA2256128:
		return 32, 16
	case wire.IntegHMACSHA2384192:
		return 48, 24
	case wire.IntegHMACSHA2512256:
		return 64, 32
	}
	return 0, 0
}

// encrKeyLen is the length of SK_e: the AES key, plus the 4-octet salt
// for AES-GCM (RFC 5282 §7.1).
func (s Suite) encrKeyLen() int {
	n := s.KeyBits / 8
	if s.Encr == wire.EncrAESGCM16 {
		n += 4
	}
	return n
}
