package ikev2

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// unhex decodes hex written with spaces, newlines and "|" separators and
// "#" comments to end of line, so golden bytes can be laid out field by
// field next to the RFC figures they follow.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, r := range line {
			if strings.ContainsRune("0123456789abcdefABCDEF", r) {
				clean.WriteRune(r)
			}
		}
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// payloadGolden is one payload with the octets the RFC figure gives for it,
// written by hand (not by this codec), generic header first (Next Payload 0).
type payloadGolden struct {
	name string
	p    Payload
	hex  string
}

func corePayloadGoldens() []payloadGolden {
	return []payloadGolden{
		{"KE (§3.4)", &KE{Group: KEECP256, Data: []byte{1, 2, 3, 4}}, "00 00 000c | 0013 0000 | 01020304"},
		{"IDi FQDN (§3.5)", IDi(IDFQDN, []byte("gm1.example")), "00 00 0013 | 02 000000 | 676d312e6578616d706c65"},
		{"IDr IPv4 (§3.5)", IDr(IDIPv4Addr, []byte{192, 0, 2, 1}), "00 00 000c | 01 000000 | c0000201"},
		{"IDi KEY_ID", IDi(IDKeyID, []byte{0xab}), "00 00 0009 | 0b 000000 | ab"},
		{"IDi NULL (RFC 7619)", IDi(IDNull, nil), "00 00 0008 | 0d 000000"},
		{"CERT X.509 (§3.6)", &Cert{Encoding: CertX509Sig, Data: []byte{0x30, 0x00}}, "00 00 0007 | 04 | 3000"},
		{"CERTREQ (§3.7)", &CertReq{Encoding: CertX509Sig, Authority: seq(0xa0, 20)}, `
			00 00 0019 | 04 | a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3`},
		{"AUTH PSK (§3.8)", &Auth{Method: AuthPSK, Data: seq(0x10, 4)}, "00 00 000c | 02 000000 | 10111213"},
		{"AUTH digital signature (RFC 7427 §3)", NewSignatureAuth(
			[]byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, []byte{0x5a, 0x5b}), `
			00 00 0017                         # 4 + 4 + 1 + 12 + 2 octets
			0e 000000                          # Auth Method 14, RESERVED
			0c                                 # ASN.1 Length 12
			300a 0608 2a8648ce3d040302         # AlgorithmIdentifier ecdsa-with-SHA256, no parameters
			5a5b                               # Signature Value`},
		{"Nonce (§3.9)", &Nonce{Data: seq(0x40, 16)}, "00 00 0014 | 404142434445464748494a4b4c4d4e4f"},
		{"N INITIAL_CONTACT (§3.10)", &Notify{NotifyType: NotifyInitialContact}, "00 00 0008 | 00 00 4000"},
		{"N NAT_DETECTION_SOURCE_IP", &Notify{NotifyType: NotifyNATDetectionSourceIP, Data: seq(0, 20)}, `
			00 00 001c | 00 00 4004 | 000102030405060708090a0b0c0d0e0f10111213`},
		{"N REKEY_SA for an ESP SA", &Notify{Protocol: ProtoESP, NotifyType: NotifyRekeySA, SPI: []byte{1, 2, 3, 4}}, `
			00 00 000c | 03 04 4009 | 01020304`},
		{"N UNSUPPORTED_CRITICAL_PAYLOAD", &Notify{NotifyType: NotifyUnsupportedCriticalPayload, Data: []byte{0x80}}, `
			00 00 0009 | 00 00 0001 | 80`},
		{"D IKE SA (§3.11)", &Delete{Protocol: ProtoIKE}, "00 00 0008 | 01 00 0000"},
		{"D two ESP SAs", &Delete{Protocol: ProtoESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}}, `
			00 00 0010 | 03 04 0002 | 01020304 05060708`},
		{"V (§3.12)", &VendorID{Data: []byte("gv")}, "00 00 0006 | 6776"},
		{"TSi IPv4 + IPv6 (§3.13)", &TS{Which: PayloadTSi, Selectors: []TrafficSelector{
			PrefixTS(netip.MustParsePrefix("10.1.0.0/16")),
			{TSType: TSIPv6AddrRange, IPProtocol: 17, StartPort: 848, EndPort: 848,
				Start: netip.MustParseAddr("2001:db8::1"), End: netip.MustParseAddr("2001:db8::1")}}}, `
			00 00 0040
			02 000000                          # 2 TSs, RESERVED
			07 00 0010 0000 ffff               # TS_IPV4_ADDR_RANGE, any protocol, length 16, ports 0-65535
			  0a010000 0a01ffff                # 10.1.0.0 - 10.1.255.255
			08 11 0028 0350 0350               # TS_IPV6_ADDR_RANGE, UDP, length 40, port 848
			  20010db8000000000000000000000001
			  20010db8000000000000000000000001`},
		{"SK (§3.14)", &Encrypted{Inner: PayloadIDi, Data: seq(0xe0, 8)}, "23 00 000c | e0e1e2e3e4e5e6e7"},
		{"SKF fragment 1 of 2 (RFC 7383 §2.5)", &EncryptedFragment{Inner: PayloadIDi, Number: 1, Total: 2, Data: seq(0xe0, 4)}, `
			23 00 000c | 0001 0002 | e0e1e2e3`},
		{"SKF fragment 2 of 2", &EncryptedFragment{Number: 2, Total: 2, Data: seq(0xf0, 4)}, "00 00 000c | 0002 0002 | f0f1f2f3"},
		{"CP kept raw (§3.15)", &RawPayload{PayloadType: PayloadCP, Body: []byte{1, 0, 0, 0}}, "00 00 0008 | 01000000"},
		{"private payload, critical", &RawPayload{PayloadType: 200, Critical: true, Body: []byte{9}}, "00 80 0005 | 09"},
		{"SA IKE proposal (§3.3)", goldenIKESA(), `
			00 00 0030
			00 00 002c 01 01 00 04             # last proposal, length 44, #1, IKE, no SPI, 4 transforms
			  03 00 000c 01 00 0014 800e 0080  # ENCR_AES_GCM_16, Key Length 128
			  03 00 0008 02 00 0005            # PRF_HMAC_SHA2_256
			  03 00 0008 04 00 0013            # KE 19 (ECP 256)
			  00 00 0008 04 00 000e            # KE 14 (MODP 2048), last`},
		{"SA two ESP proposals", &SA{Proposals: []*Proposal{
			{Number: 1, Protocol: ProtoESP, SPI: []byte{0xca, 0xfe, 0, 1}, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESCBC, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
				{Type: TransformINTEG, ID: IntegHMACSHA2256128},
				{Type: TransformSN, ID: SN32Bit}}},
			{Number: 2, Protocol: ProtoESP, SPI: []byte{0xca, 0xfe, 0, 1}, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 128)}}}},
		}}, `
			00 00 0044                         # 4 + 40 + 24 octets
			02 00 0028 01 03 04 03 cafe0001    # more proposals, length 40, #1, ESP, SPI size 4, 3 transforms
			  03 00 000c 01 00 000c 800e 0100  # ENCR_AES_CBC, Key Length 256
			  03 00 0008 03 00 000c            # AUTH_HMAC_SHA2_256_128
			  00 00 0008 05 00 0000            # SN 32-bit
			00 00 0018 02 03 04 01 cafe0001    # last proposal, #2
			  00 00 000c 01 00 0014 800e 0080  # ENCR_AES_GCM_16/128`},
	}
}

func goldenIKESA() *SA {
	return &SA{Proposals: []*Proposal{{Number: 1, Protocol: ProtoIKE, Transforms: []*Transform{
		{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 128)}},
		{Type: TransformPRF, ID: PRFHMACSHA2256},
		{Type: TransformKE, ID: KEECP256},
		{Type: TransformKE, ID: KEMODP2048},
	}}}}
}

// proves: G1 (issue 17: every RFC 7296 payload encodes to the octets its
// figure gives, decodes back to the same octets, and every truncation is
// refused)
func TestPayloadGolden(t *testing.T) {
	for _, g := range allPayloadGoldens() {
		t.Run(g.name, func(t *testing.T) { checkPayloadGolden(t, g) })
	}
}

// checkPayloadGolden checks one payload golden: marshal, length, parse,
// re-marshal, and refusal of every truncation.
func checkPayloadGolden(t *testing.T, g payloadGolden) {
	t.Helper()
	want := unhex(t, g.hex)
	got, err := MarshalPayload(g.p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("marshal:\n got %x\nwant %x", got, want)
	}
	if n := PayloadLen(g.p); n != len(got) {
		t.Fatalf("PayloadLen %d, marshalled %d", n, len(got))
	}
	ps, err := ParsePayloads(g.p.Type(), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("parsed %d payloads", len(ps))
	}
	again, err := MarshalPayload(ps[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, want) {
		t.Fatalf("re-marshal:\n got %x\nwant %x", again, want)
	}
	for i := 0; i < len(want); i++ {
		if _, err := ParsePayloads(g.p.Type(), want[:i]); err == nil {
			t.Fatalf("truncated to %d of %d octets: parsed without error", i, len(want))
		}
	}
}

// messageGolden is a whole message with its hand-written octets.
type messageGolden struct {
	name string
	msg  *Message
	hex  string
	port int // UDP port tshark sees it on
}

var (
	spiI = SPI{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}
	spiR = SPI{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28}
)

func coreMessageGoldens() []messageGolden {
	return []messageGolden{
		{"IKE_SA_INIT request", &Message{
			Header: Header{SPIi: spiI, Exchange: ExchangeIKESAInit, Flags: FlagInitiator},
			Payloads: []Payload{goldenIKESA(), &KE{Group: KEECP256, Data: seq(0x60, 64)}, &Nonce{Data: seq(0x40, 32)},
				&Notify{NotifyType: NotifyNATDetectionSourceIP, Data: seq(0, 20)},
				&Notify{NotifyType: NotifyNATDetectionDestinationIP, Data: seq(0x20, 20)},
				&Notify{NotifyType: NotifySignatureHashAlgorithms, Data: []byte{0, 2, 0, 3, 0, 4}},
				&VendorID{Data: []byte("groupvpn")}},
		}, `
			1112131415161718 0000000000000000   # SPIi, SPIr 0
			21 20 22 08                         # next SA, version 2.0, IKE_SA_INIT, I
			00000000 0000010a                   # Message ID 0, length 266 = 28+48+72+36+28+28+14+12
			22 00 0030                          # SA, next KE, 48 octets
			  00 00 002c 01 01 00 04
			  03 00 000c 01 00 0014 800e 0080
			  03 00 0008 02 00 0005
			  03 00 0008 04 00 0013
			  00 00 0008 04 00 000e
			28 00 0048 0013 0000                # KE, next Nonce, 72 octets, group 19
			  606162636465666768696a6b6c6d6e6f 707172737475767778797a7b7c7d7e7f
			  808182838485868788898a8b8c8d8e8f 909192939495969798999a9b9c9d9e9f
			29 00 0024                          # Nonce, next N, 36 octets
			  404142434445464748494a4b4c4d4e4f 505152535455565758595a5b5c5d5e5f
			29 00 001c 00 00 4004               # N(NAT_DETECTION_SOURCE_IP)
			  000102030405060708090a0b0c0d0e0f10111213
			29 00 001c 00 00 4005               # N(NAT_DETECTION_DESTINATION_IP)
			  202122232425262728292a2b2c2d2e2f30313233
			2b 00 000e 00 00 402f 0002 0003 0004   # N(SIGNATURE_HASH_ALGORITHMS): SHA2-256/384/512, next V
			00 00 000c 67726f757076706e         # V "groupvpn", last`, 500},
		{"IKE_AUTH request (SK)", &Message{
			Header:   Header{SPIi: spiI, SPIr: spiR, Exchange: ExchangeIKEAuth, Flags: FlagInitiator, MessageID: 1},
			Payloads: []Payload{&Encrypted{Inner: PayloadIDi, Data: seq(0x80, 48)}},
		}, `
			1112131415161718 2122232425262728
			2e 20 23 08 00000001 00000050       # next SK, IKE_AUTH, I, Message ID 1, length 80
			23 00 0034                          # SK, first inner payload IDi, 52 octets
			  808182838485868788898a8b8c8d8e8f  # IV (AES-GCM: 8 octets) ciphertext, ICV: opaque here
			  909192939495969798999a9b9c9d9e9f a0a1a2a3a4a5a6a7a8a9aaabacadaeaf`, 4500},
		{"INFORMATIONAL response, empty SK", &Message{
			Header:   Header{SPIi: spiI, SPIr: spiR, Exchange: ExchangeInformational, Flags: FlagResponse, MessageID: 2},
			Payloads: []Payload{&Encrypted{Data: seq(0x80, 24)}},
		}, `
			1112131415161718 2122232425262728
			2e 20 25 20 00000002 00000038       # next SK, INFORMATIONAL, R, Message ID 2, length 56
			00 00 001c                          # SK, no inner payload
			  808182838485868788898a8b8c8d8e8f 9091929394959697`, 500},
	}
}

// coreInnerGoldens are decrypted inner chains (ParseInner).
func coreInnerGoldens() []innerGolden {
	return []innerGolden{
		{"IKE_AUTH request inner chain", PayloadIDi, []Payload{
			IDi(IDFQDN, []byte("gm1.example")),
			&Auth{Method: AuthPSK, Data: seq(0x10, 32)},
			&SA{Proposals: []*Proposal{{Number: 1, Protocol: ProtoESP, SPI: []byte{0xca, 0xfe, 0, 1}, Transforms: []*Transform{
				{Type: TransformENCR, ID: EncrAESGCM16, Attributes: Attributes{BasicAttr(AttrKeyLength, 256)}},
				{Type: TransformSN, ID: SN32Bit}}}}},
			&TS{Which: PayloadTSi, Selectors: []TrafficSelector{PrefixTS(netip.MustParsePrefix("10.1.0.0/16"))}},
			&TS{Which: PayloadTSr, Selectors: []TrafficSelector{PrefixTS(netip.MustParsePrefix("10.2.0.0/16"))}},
		}, `
			27 00 0013 02 000000 676d312e6578616d706c65        # IDi FQDN gm1.example, next AUTH
			21 00 0028 02 000000                               # AUTH PSK, next SA
			  101112131415161718191a1b1c1d1e1f 202122232425262728292a2b2c2d2e2f
			2c 00 0024                                         # SA, next TSi
			  00 00 0020 01 03 04 02 cafe0001
			  03 00 000c 01 00 0014 800e 0100                  # ENCR_AES_GCM_16/256
			  00 00 0008 05 00 0000                            # SN 32-bit
			2d 00 0018 01 000000 07 00 0010 0000 ffff 0a010000 0a01ffff   # TSi 10.1.0.0/16, next TSr
			00 00 0018 01 000000 07 00 0010 0000 ffff 0a020000 0a02ffff   # TSr 10.2.0.0/16`},
	}
}

type innerGolden struct {
	name  string
	first PayloadType
	ps    []Payload
	hex   string
}

func messageGoldens() []messageGolden {
	return append(coreMessageGoldens(), gikev2MessageGoldens()...)
}
func allPayloadGoldens() []payloadGolden {
	return append(corePayloadGoldens(), gikev2PayloadGoldens()...)
}
func innerGoldens() []innerGolden {
	return append(coreInnerGoldens(), gikev2InnerGoldens()...)
}

// proves: G1 (issue 17: IKE_SA_INIT and IKE_AUTH messages encode to
// hand-written octets, parse back to the same octets, and every truncated
// prefix is refused)
func TestMessageGolden(t *testing.T) {
	for _, g := range messageGoldens() {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			got, err := g.msg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshal:\n got %x\nwant %x", got, want)
			}
			m, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			again, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, want) {
				t.Fatalf("re-marshal:\n got %x\nwant %x", again, want)
			}
			for i := 0; i < len(want); i++ {
				if _, err := Parse(want[:i]); err == nil {
					t.Fatalf("truncated to %d of %d octets: parsed without error", i, len(want))
				}
			}
		})
	}
}

// proves: G1 (issue 17: decrypted inner chains parse with ParseInner,
// re-marshal to the same octets, and every truncation is refused)
func TestInnerGolden(t *testing.T) {
	for _, g := range innerGoldens() {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			got, err := AppendPayloads(nil, g.ps)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshal:\n got %x\nwant %x", got, want)
			}
			ps, err := ParseInner(g.first, want)
			if err != nil {
				t.Fatal(err)
			}
			again, err := AppendPayloads(nil, ps)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, want) {
				t.Fatalf("re-marshal:\n got %x\nwant %x", again, want)
			}
			for i := 0; i < len(want); i++ {
				if _, err := ParseInner(g.first, want[:i]); err == nil {
					t.Fatalf("truncated to %d of %d octets: parsed without error", i, len(want))
				}
			}
		})
	}
}
