package gikev2

import (
	"fmt"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/isakmp"
)

// The ESP transforms groupvpn's data plane runs, in both registries: the
// IPsec DOI's (GDOI, ks and sadb values) and IKEv2's (G-IKEv2). The AES
// IDs coincide except GMAC (ESP_NULL_AUTH_AES_GMAC 23 in the IPsec DOI,
// ENCR_NULL_AUTH_AES_GMAC 21 in IKEv2).
var espToEncr = map[isakmp.ESPTransform]uint16{
	isakmp.ESPAESCBC:   wire.EncrAESCBC,
	isakmp.ESPAESGCM8:  wire.EncrAESGCM8,
	isakmp.ESPAESGCM12: wire.EncrAESGCM12,
	isakmp.ESPAESGCM16: wire.EncrAESGCM16,
	isakmp.ESPAESGMAC:  wire.EncrNullAuthAESGMAC,
}

// HMAC authentication algorithms (IPsec DOI) and IKEv2 integrity transforms.
var authToInteg = map[uint16]uint16{
	isakmp.AuthAlgHMACSHA1:   wire.IntegHMACSHA196,
	isakmp.AuthAlgHMACSHA256: wire.IntegHMACSHA2256128,
	isakmp.AuthAlgHMACSHA384: wire.IntegHMACSHA2384192,
	isakmp.AuthAlgHMACSHA512: wire.IntegHMACSHA2512256,
}

func encrOf(t isakmp.ESPTransform) (uint16, error) {
	if e, ok := espToEncr[t]; ok {
		return e, nil
	}
	return 0, fmt.Errorf("gikev2: ESP transform %s has no G-IKEv2 mapping here", t)
}

func espOf(encr uint16) (isakmp.ESPTransform, bool) {
	for t, e := range espToEncr {
		if e == encr {
			return t, true
		}
	}
	return 0, false
}

func integOf(auth uint16) (uint16, error) {
	if auth == 0 {
		return wire.IntegNone, nil
	}
	if i, ok := authToInteg[auth]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("gikev2: authentication algorithm %d has no G-IKEv2 mapping here", auth)
}

func authOf(integ uint16) (uint16, bool) {
	if integ == wire.IntegNone {
		return 0, true
	}
	for a, i := range authToInteg {
		if i == integ {
			return a, true
		}
	}
	return 0, false
}
