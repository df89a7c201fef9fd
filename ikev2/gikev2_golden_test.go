package ikev2

import (
	"bytes"
	"net/netip"
	"testing"
)

// The RFC 9838 goldens: the payloads IDg, GSA and KD (with each policy and
// key bag kind), the inner chains of a GSA_AUTH response and of a GSA_REKEY
// message, and the outer GSA_AUTH request and GSA_REKEY messages. All hex is
// written by hand from the figures of RFC 9838 §4.

var (
	ecdsaSHA256AlgID = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	kekSPI           = seq(0x30, 16)
)

func ts4(start, end string, proto uint8, port uint16) TrafficSelector {
	ts := TrafficSelector{TSType: TSIPv4AddrRange, IPProtocol: proto, StartPort: port, EndPort: port,
		Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end)}
	if port == 0 {
		ts.EndPort = 0xffff
	}
	return ts
}

func goldenKEKPolicy() *GroupPolicy {
	return &GroupPolicy{Protocol: ProtoGIKEUpdate, SPI: kekSPI,
		Src: ts4("192.0.2.1", "192.0.2.1", 17, 848), Dst: ts4("239.192.0.1", "239.192.0.1", 17, 848),
		Transforms: []*Transform{
			{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
			{Type: TransformKWA, ID: KWA5649AES256},
			{Type: TransformGCAUTH, ID: GCAuthDigitalSignature, Attributes: Attributes{VarAttr(AttrSignatureAlgorithmID, ecdsaSHA256AlgID)}},
		},
		Attributes: Attributes{VarAttr(GSAKeyLifetime, []byte{0, 1, 0x51, 0x80}), VarAttr(GSAInitialMessageID, []byte{0, 0, 0, 7})},
	}
}

const goldenKEKPolicyHex = `
	06 10 0070                          # GIKE_UPDATE, SPI Size 16, Length 112
	  303132333435363738393a3b3c3d3e3f  # SPI: the Rekey SA's SPIi | SPIr
	  07 11 0010 0350 0350 c0000201 c0000201   # source: UDP 192.0.2.1 port 848
	  07 11 0010 0350 0350 efc00001 efc00001   # destination: UDP 239.192.0.1 port 848
	  03 00 000c 01 00 0014 800e 0100   # ENCR_AES_GCM_16, Key Length 256
	  03 00 0008 0d 00 0003             # KWA (13): KW_5649_256
	  00 00 0018 0e 00 0002             # GCAUTH (14): Digital Signature, last transform
	    0012 000c 300a06082a8648ce3d040302   # Signature Algorithm Identifier (18, TLV): ecdsa-with-SHA256
	  0001 0004 00015180                # GSA_KEY_LIFETIME 86400
	  0002 0004 00000007                # GSA_INITIAL_MESSAGE_ID 7`

func goldenTEKPolicy(spi []byte) *GroupPolicy {
	return &GroupPolicy{Protocol: ProtoESP, SPI: spi,
		Src: PrefixTS(netip.MustParsePrefix("10.1.0.0/16")), Dst: PrefixTS(netip.MustParsePrefix("239.1.1.0/24")),
		Transforms: []*Transform{
			{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
			{Type: TransformSN, ID: SN32BitUnspecified},
		},
		Attributes: Attributes{VarAttr(GSAKeyLifetime, []byte{0, 0, 0x0e, 0x10})},
	}
}

const goldenTEKPolicyHex = `
	03 04 0044 11223344                 # ESP, SPI Size 4, Length 68, SPI
	  07 00 0010 0000 ffff 0a010000 0a01ffff   # source 10.1.0.0/16, any protocol and port
	  07 00 0010 0000 ffff ef010100 ef0101ff   # destination 239.1.1.0/24
	  03 00 000c 01 00 0014 800e 0100   # ENCR_AES_GCM_16/256
	  00 00 0008 05 00 0002             # SN: 32-bit Unspecified Numbers (multi-sender), last
	  0001 0004 00000e10                # GSA_KEY_LIFETIME 3600`

func goldenGWPolicy() *GroupPolicy {
	return &GroupPolicy{Attributes: Attributes{BasicAttr(GWPATD, 30), BasicAttr(GWPDTD, 60), BasicAttr(GWPSenderIDBits, 8)}}
}

const goldenGWPolicyHex = `
	00 00 0010                          # GW policy: Protocol 0, RESERVED, Length 16
	  8001 001e 8002 003c 8003 0008     # GWP_ATD 30, GWP_DTD 60, GWP_SENDER_ID_BITS 8 (TV)`

func goldenRegistrationKD() *KD {
	return &KD{Bags: []*KeyBag{
		{Protocol: ProtoGIKEUpdate, SPI: kekSPI, Attributes: Attributes{WrappedKey{Encrypted: seq(0xa0, 24)}.Attr(KBSAKey)}},
		{Protocol: ProtoESP, SPI: []byte{0x11, 0x22, 0x33, 0x44}, Attributes: Attributes{WrappedKey{Encrypted: seq(0xb0, 24)}.Attr(KBSAKey)}},
		{Attributes: Attributes{
			WrappedKey{KeyID: 9, Encrypted: seq(0xc0, 24)}.Attr(KBWrapKey),
			VarAttr(KBAuthKey, []byte{0x30, 0x02, 0x05, 0x00}),
			VarAttr(KBGMSenderID, []byte{0, 0, 0, 5})}},
	}}
}

const goldenRegistrationKDHex = `
	06 10 0038 303132333435363738393a3b3c3d3e3f   # group key bag: GIKE_UPDATE, SPI Size 16, Length 56, SPI
	  0001 0020 00000000 00000000       # SA_KEY (TLV, 32): Key ID 0, KWK ID 0 (default KWK)
	    a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7   # Encrypted Key
	03 04 002c 11223344                 # group key bag: ESP, SPI Size 4, Length 44
	  0001 0020 00000000 00000000 b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7
	00 00 0038                          # member key bag: Protocol 0, RESERVED, Length 56
	  0001 0020 00000009 00000000       # WRAP_KEY: Key ID 9, KWK ID 0
	    c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7
	  0002 0004 30020500                # AUTH_KEY: SubjectPublicKeyInfo (stand-in DER)
	  0003 0004 00000005                # GM_SENDER_ID 5`

func gikev2PayloadGoldens() []payloadGolden {
	return []payloadGolden{
		{"IDg KEY_ID group 1234 (RFC 9838 §4.2)", GroupKeyID(1234), "00 00 000c | 0b 000000 | 000004d2"},
		{"IDg FQDN", IDg(IDFQDN, []byte("g1")), "00 00 000a | 02 000000 | 6731"},
		{"GSA KEK + TEK + GW (RFC 9838 §4.4)", &GSA{Policies: []*GroupPolicy{goldenKEKPolicy(), goldenTEKPolicy([]byte{0x11, 0x22, 0x33, 0x44}), goldenGWPolicy()}},
			"00 00 00c8  # GSA, 4 + 112 + 68 + 16 octets\n" + goldenKEKPolicyHex + goldenTEKPolicyHex + goldenGWPolicyHex},
		{"GSA one AH TEK", &GSA{Policies: []*GroupPolicy{{Protocol: ProtoAH, SPI: []byte{1, 2, 3, 4},
			Src: PrefixTS(netip.MustParsePrefix("10.1.0.0/16")), Dst: PrefixTS(netip.MustParsePrefix("10.2.0.0/16")),
			Transforms: []*Transform{{Type: TransformINTEG, ID: IntegHMACSHA2256128}, {Type: TransformSN, ID: SN32Bit}}}}}, `
			00 00 003c                        # GSA, 60 octets
			02 04 0038 01020304               # AH, SPI Size 4, Length 56 = 4+4+16+16+8+8
			  07 00 0010 0000 ffff 0a010000 0a01ffff
			  07 00 0010 0000 ffff 0a020000 0a02ffff
			  03 00 0008 03 00 000c           # AUTH_HMAC_SHA2_256_128
			  00 00 0008 05 00 0000           # SN 32-bit Sequential, last; no attributes`},
		{"KD registration: KEK, TEK and member key bags (RFC 9838 §4.5)", goldenRegistrationKD(),
			"00 00 00a0  # KD, 4 + 56 + 44 + 56 octets\n" + goldenRegistrationKDHex},
		{"N GROUP_SENDER (RFC 9838 §4.7.4)", &Notify{NotifyType: NotifyGroupSender, Data: []byte{0, 0, 0, 2}}, "00 00 000c | 00 00 402d | 00000002"},
		{"N INVALID_GROUP_ID (§4.7.1)", &Notify{NotifyType: NotifyInvalidGroupID}, "00 00 0008 | 00 00 002d"},
		{"N AUTHORIZATION_FAILED (§4.7.2)", &Notify{NotifyType: NotifyAuthorizationFailed}, "00 00 0008 | 00 00 002e"},
		{"N REGISTRATION_FAILED (§4.7.3)", &Notify{NotifyType: NotifyRegistrationFailed}, "00 00 0008 | 00 00 0031"},
		{"SAg: the transforms a GM accepts (RFC 9838 §4.3)", &SA{Proposals: []*Proposal{
			{Number: 1, Protocol: ProtoESP, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
				{Type: TransformSN, ID: SN32BitUnspecified}}},
			{Number: 2, Protocol: ProtoGIKEUpdate, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
				{Type: TransformKWA, ID: KWA5649AES256},
				{Type: TransformGCAUTH, ID: GCAuthDigitalSignature}}}}}, `
			00 00 0044                          # SA (type 33 = SAg), 4 + 28 + 36 octets
			02 00 001c 01 03 00 02              # proposal 1, ESP, no SPI, 2 transforms
			  03 00 000c 01 00 0014 800e 0100
			  00 00 0008 05 00 0002             # SN 32-bit Unspecified
			00 00 0024 02 06 00 03              # proposal 2, GIKE_UPDATE, no SPI, 3 transforms: 8+12+8+8
			  03 00 000c 01 00 0014 800e 0100
			  03 00 0008 0d 00 0003             # KWA KW_5649_256
			  00 00 0008 0e 00 0002             # GCAUTH Digital Signature`},
		{"D whole group SA (RFC 9838 §4.6)", &Delete{}, "00 00 0008 | 00 00 0000"},
		{"D Rekey SA", &Delete{Protocol: ProtoGIKEUpdate, SPISize: 16, SPIs: [][]byte{kekSPI}}, `
			00 00 0018 | 06 10 0001 | 303132333435363738393a3b3c3d3e3f`},
	}
}

func gikev2InnerGoldens() []innerGolden {
	return []innerGolden{
		{"GSA_AUTH response inner chain (RFC 9838 §2.3.1)", PayloadIDr, []Payload{
			IDr(IDFQDN, []byte("ks1")),
			&Auth{Method: AuthPSK, Data: seq(0x10, 16)},
			&GSA{Policies: []*GroupPolicy{goldenKEKPolicy(), goldenTEKPolicy([]byte{0x11, 0x22, 0x33, 0x44}), goldenGWPolicy()}},
			goldenRegistrationKD(),
		}, `
			27 00 000b 02 000000 6b7331         # IDr FQDN "ks1", next AUTH
			33 00 0018 02 000000 101112131415161718191a1b1c1d1e1f   # AUTH PSK, next GSA (51)
			34 00 00c8                          # GSA, next KD (52)` + goldenKEKPolicyHex + goldenTEKPolicyHex + goldenGWPolicyHex + `
			00 00 00a0                          # KD, last` + goldenRegistrationKDHex},
		{"GSA_REKEY inner chain (RFC 9838 §2.4.1)", PayloadGSA, goldenRekeyInner(seq(0x5a, 8)), goldenRekeyInnerHex},
	}
}

func goldenRekeyInner(sig []byte) []Payload {
	kek := goldenKEKPolicy()
	kek.Transforms = kek.Transforms[:2] // GCAUTH only at registration (§4.4.2.1)
	kek.Attributes = Attributes{VarAttr(GSAKeyLifetime, []byte{0, 1, 0x51, 0x80})}
	return []Payload{
		&GSA{Policies: []*GroupPolicy{kek, goldenTEKPolicy([]byte{0x55, 0x66, 0x77, 0x88})}},
		&KD{Bags: []*KeyBag{{Protocol: ProtoESP, SPI: []byte{0x55, 0x66, 0x77, 0x88},
			Attributes: Attributes{WrappedKey{KWKID: 0, Encrypted: seq(0xe0, 24)}.Attr(KBSAKey)}}}},
		&Delete{Protocol: ProtoESP, SPISize: 4, SPIs: [][]byte{{0x11, 0x22, 0x33, 0x44}}},
		NewSignatureAuth(ecdsaSHA256AlgID, sig),
	}
}

const goldenRekeyInnerHex = `
	34 00 0098                          # GSA, next KD, 4 + 80 + 68 octets
	  06 10 0050 303132333435363738393a3b3c3d3e3f   # GIKE_UPDATE policy, Length 80 = 4+16+16+16+12+8+8
	    07 11 0010 0350 0350 c0000201 c0000201
	    07 11 0010 0350 0350 efc00001 efc00001
	    03 00 000c 01 00 0014 800e 0100 # ENCR_AES_GCM_16/256
	    00 00 0008 0d 00 0003           # KWA KW_5649_256, last (no GCAUTH in a rekey)
	    0001 0004 00015180              # GSA_KEY_LIFETIME
	  03 04 0044 55667788               # the new ESP TEK
	    07 00 0010 0000 ffff 0a010000 0a01ffff
	    07 00 0010 0000 ffff ef010100 ef0101ff
	    03 00 000c 01 00 0014 800e 0100
	    00 00 0008 05 00 0002
	    0001 0004 00000e10
	2a 00 0030                          # KD, next D, 48 octets
	  03 04 002c 55667788 0001 0020 00000000 00000000 e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7
	27 00 000c 03 04 0001 11223344      # D: the old ESP TEK, next AUTH
	00 00 001d 0e 000000                # AUTH, Digital Signature (14), 29 octets
	  0c 300a06082a8648ce3d040302       # ASN.1 Length 12, ecdsa-with-SHA256
	  5a5b5c5d5e5f6061                  # Signature Value`

func gikev2MessageGoldens() []messageGolden {
	var kekI, kekR SPI
	copy(kekI[:], kekSPI[:8])
	copy(kekR[:], kekSPI[8:])
	return []messageGolden{
		{"IKE_SA_INIT request with KWA (RFC 9838 §4.5.4)", &Message{
			Header: Header{SPIi: spiI, Exchange: ExchangeIKESAInit, Flags: FlagInitiator},
			Payloads: []Payload{&SA{Proposals: []*Proposal{{Number: 1, Protocol: ProtoIKE, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
				{Type: TransformPRF, ID: PRFHMACSHA2256},
				{Type: TransformKE, ID: KEECP256},
				{Type: TransformKWA, ID: KWA5649AES256}}}}},
				&KE{Group: KEECP256, Data: seq(0x60, 64)}, &Nonce{Data: seq(0x40, 32)}},
		}, `
			1112131415161718 0000000000000000
			21 20 22 08 00000000 000000b8       # next SA, IKE_SA_INIT, I, length 184 = 28+48+72+36
			22 00 0030                          # SA, next KE
			  00 00 002c 01 01 00 04            # proposal 1, IKE, 4 transforms
			  03 00 000c 01 00 0014 800e 0100   # ENCR_AES_GCM_16/256
			  03 00 0008 02 00 0005             # PRF_HMAC_SHA2_256
			  03 00 0008 04 00 0013             # KE 19
			  00 00 0008 0d 00 0003             # KWA (13) KW_5649_256: "the key wrap algorithm MUST be negotiated in the IKE_SA_INIT exchange"
			28 00 0048 0013 0000
			  606162636465666768696a6b6c6d6e6f 707172737475767778797a7b7c7d7e7f
			  808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f
			00 00 0024
			  404142434445464748494a4b4c4d4e4f 505152535455565758595a5b5c5d5e5f`, 848},
		{"GSA_AUTH request (SK)", &Message{
			Header:   Header{SPIi: spiI, SPIr: spiR, Exchange: ExchangeGSAAuth, Flags: FlagInitiator, MessageID: 1},
			Payloads: []Payload{&Encrypted{Inner: PayloadIDi, Data: seq(0x80, 40)}},
		}, `
			1112131415161718 2122232425262728
			2e 20 27 08 00000001 00000048       # next SK, GSA_AUTH (39), I, Message ID 1, length 72
			23 00 002c                          # SK, first inner payload IDi, 44 octets
			  808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f a0a1a2a3a4a5a6a7`, 848},
		{"GSA_REKEY (SK, multicast)", &Message{
			Header:   Header{SPIi: kekI, SPIr: kekR, Exchange: ExchangeGSARekey, Flags: FlagInitiator, MessageID: 7},
			Payloads: []Payload{&Encrypted{Inner: PayloadGSA, Data: seq(0x80, 32)}},
		}, `
			3031323334353637 38393a3b3c3d3e3f   # the Rekey SA's SPI (RFC 9838 §2.4.1)
			2e 20 29 08 00000007 00000040       # next SK, GSA_REKEY (41), Message ID 7 (GSA_INITIAL_MESSAGE_ID)
			33 00 0024                          # SK, first inner payload GSA (51)
			  808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f`, 848},
		{"GSA_INBAND_REKEY request (SK)", &Message{
			Header:   Header{SPIi: spiI, SPIr: spiR, Exchange: ExchangeGSAInbandRekey, MessageID: 3},
			Payloads: []Payload{&Encrypted{Inner: PayloadGSA, Data: seq(0x80, 16)}},
		}, `
			1112131415161718 2122232425262728
			2e 20 2a 00 00000003 00000030       # GSA_INBAND_REKEY (42), sent by the GCKS as responder: no I flag
			33 00 0014 808182838485868788898a8b8c8d8e8f`, 500},
	}
}

// proves: G1 (issue 17: RekeySignedData lays out RFC 9838 §2.4.1.1's
// A | P: the header with Next Payload SK and AdjustedLen, the SK header with
// AdjustedPldLen, and the inner payloads with the signature zeroed)
func TestRekeySignedData(t *testing.T) {
	var kekI, kekR SPI
	copy(kekI[:], kekSPI[:8])
	copy(kekR[:], kekSPI[8:])
	h := Header{SPIi: kekI, SPIr: kekR, Exchange: ExchangeGSARekey, Flags: FlagInitiator, MessageID: 7}
	inner := goldenRekeyInner(seq(0x5a, 8))
	zeroed, err := inner[3].(*Auth).WithZeroSignature()
	if err != nil {
		t.Fatal(err)
	}
	inner[3] = zeroed
	got, err := RekeySignedData(h, inner)
	if err != nil {
		t.Fatal(err)
	}
	p := unhex(t, goldenRekeyInnerHex)
	copy(p[len(p)-8:], make([]byte, 8)) // the Signature Value, zeroed
	want := append(unhex(t, `
		3031323334353637 38393a3b3c3d3e3f
		2e 20 29 08 00000007 00000111       # AdjustedLen = 28 + 4 + 241 (P: GSA 152, KD 48, D 12, AUTH 29)
		33 00 00f5                          # AdjustedPldLen = 4 + 241`), p...)
	if !bytes.Equal(got, want) {
		t.Fatalf("A | P:\n got %x\nwant %x", got, want)
	}
	if _, err := (&Auth{Method: AuthPSK, Data: []byte{1}}).WithZeroSignature(); err == nil {
		t.Fatal("WithZeroSignature of a PSK AUTH")
	}
}
