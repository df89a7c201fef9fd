package gikev2

import (
	"fmt"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/keywrap"
)

// KWK is a key wrap key with its algorithm (a Key Wrap Algorithm transform
// ID, RFC 9838 §4.4.2.1.2).
type KWK struct {
	Alg uint16
	Key []byte
}

// Wrap wraps key material under k (RFC 5649 for KW_5649_*).
func (k KWK) Wrap(key []byte) ([]byte, error) {
	if n, err := keywrap.KeyLen(k.Alg); err != nil {
		return nil, err
	} else if len(k.Key) != n {
		return nil, fmt.Errorf("gikev2: KWK of %d octets for key wrap algorithm %d (want %d)", len(k.Key), k.Alg, n)
	}
	return keywrap.Wrap(k.Key, key)
}

// Unwrap recovers key material wrapped under k; keywrap.ErrIntegrity when it
// does not check.
func (k KWK) Unwrap(w []byte) ([]byte, error) {
	if n, err := keywrap.KeyLen(k.Alg); err != nil {
		return nil, err
	} else if len(k.Key) != n {
		return nil, fmt.Errorf("gikev2: KWK of %d octets for key wrap algorithm %d (want %d)", len(k.Key), k.Alg, n)
	}
	return keywrap.Unwrap(k.Key, w)
}

// DefaultKWA is the key wrap algorithm of the unicast IKE SA while
// internal/ikev2 does not negotiate one in IKE_SA_INIT (RFC 9838 §4.5.4
// wants it negotiated there; docs/gikev2.md "What is left"), and the one
// groupvpn's Rekey SAs use: KW_5649_256, whose 256-bit KWK is not shorter
// than any AES key of the group (§3.1).
const DefaultKWA = wire.KWA5649AES256

// unicastKWKLabel is the seed of the unicast IKE SA's default KWK.
const unicastKWKLabel = "Key Wrap for G-IKEv2"

// UnicastKWK returns the default KWK of a unicast IKE SA (RFC 9838
// §3.1.1): GSK_w = prf+(SK_d, "Key Wrap for G-IKEv2"), "20 ASCII characters
// without null termination", as long as the key wrap algorithm's key.
func UnicastKWK(k *ikev2.Keys, kwa uint16) (KWK, error) {
	n, err := keywrap.KeyLen(kwa)
	if err != nil {
		return KWK{}, err
	}
	key, err := k.PRFPlus(k.SKd, []byte(unicastKWKLabel), n)
	if err != nil {
		return KWK{}, err
	}
	return KWK{Alg: kwa, Key: key}, nil
}
