package isakmp

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

func seq16(start byte) []byte {
	b := make([]byte, 16)
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

func payloadGoldens() []payloadGolden {
	var spi [16]byte
	copy(spi[:], seq16(0))
	return []payloadGolden{
		{"KE", &KE{Data: []byte{1, 2, 3, 4}}, "00 00 0008 | 01020304"},
		{"HASH", &Hash{Data: []byte{0xaa, 0xbb}}, "00 00 0006 | aabb"},
		{"SIG", &Sig{Data: []byte{0xcc}}, "00 00 0005 | cc"},
		{"NONCE", &Nonce{Data: seq16(0x40)[:8]}, "00 00 000c | 4041424344454647"},
		{"VID", &VendorID{Data: []byte("gv")}, "00 00 0006 | 6776"},
		{"CERT", &Cert{Encoding: CertX509Sig, Data: []byte{0x30, 0x00}}, "00 00 0007 | 04 | 3000"},
		{"CR", &CertRequest{CertType: CertX509Sig}, "00 00 0005 | 04"},
		{"ID group (GDOI, RFC 6407 §5.1)", GroupID(1234), `
			00 00 000c
			0b        # ID_KEY_ID
			00 0000   # DOI-specific ID data MUST be 0 in the GDOI
			000004d2  # group 1234`},
		{"ID subnet (IPsec DOI, RFC 2407 §4.6.2)", &ID{IDType: IDIPv4AddrSubnet, ProtocolID: 17, Port: 848,
			Data: []byte{10, 0, 0, 0, 255, 0, 0, 0}}, `
			00 00 0010
			04 11 0350          # ID_IPV4_ADDR_SUBNET, UDP, 848
			0a000000 ff000000   # 10.0.0.0/8`},
		{"ID FQDN", &ID{IDType: IDFQDN, Data: []byte("ks1.example")}, "00 00 0013 | 02 00 0000 | 6b73312e6578616d706c65"},
		{"ID USER_FQDN", &ID{IDType: IDUserFQDN, Data: []byte("a@b")}, "00 00 000b | 03 00 0000 | 614062"},
		{"ID IPv6 address", AddrID(mustAddr("2001:db8::1")), "00 00 0018 | 05 00 0000 | 20010db8000000000000000000000001"},
		{"ID IPv6 subnet", PrefixID(netip.MustParsePrefix("2001:db8::/32"), 0, 0), `
			00 00 0028 | 06 00 0000 | 20010db8000000000000000000000000 ffffffff000000000000000000000000`},
		{"ID IPv4 range", &ID{IDType: IDIPv4AddrRange, Data: []byte{10, 0, 0, 1, 10, 0, 0, 9}}, "00 00 0010 | 07 00 0000 | 0a000001 0a000009"},
		{"ID DER DN", &ID{IDType: IDDERASN1DN, Data: []byte{0x30, 0x00}}, "00 00 000a | 09 00 0000 | 3000"},
		{"N INITIAL-CONTACT", &Notify{DOI: DOIIPsec, Protocol: ProtoISAKMP, NotifyType: NotifyInitialContact, SPI: seq16(0)}, `
			00 00 001c
			00000001        # DOI IPsec
			01 10 6002      # PROTO_ISAKMP, SPI size 16, INITIAL-CONTACT (24578)
			000102030405060708090a0b0c0d0e0f`},
		{"N R-U-THERE with data", &Notify{DOI: DOIIPsec, Protocol: ProtoISAKMP, NotifyType: NotifyRUThere, SPI: seq16(0), Data: []byte{0, 0, 0, 7}}, `
			00 00 0020 | 00000001 | 01 10 8d28 | 000102030405060708090a0b0c0d0e0f | 00000007`},
		{"D KEK (RFC 6407 §5.9)", &Delete{DOI: DOIGDOI, Protocol: ProtoGDOIKEK, SPISize: 16, SPIs: [][]byte{seq16(0)}}, `
			00 00 001c
			00000002        # DOI GDOI
			00 10 0001      # protocol 0 = KEK, SPI size 16, one SPI
			000102030405060708090a0b0c0d0e0f`},
		{"D two TEKs", &Delete{DOI: DOIGDOI, Protocol: ProtocolID(TEKProtoESP), SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}, {5, 6, 7, 8}}}, `
			00 00 0014 | 00000002 | 01 04 0002 | 01020304 05060708`},
		{"SEQ (RFC 6407 §5.7)", &SEQ{Number: 5}, "00 00 0008 | 00000005"},
		{"GAP from a GM (SENDER_ID_REQUEST)", &GAP{Attributes: Attributes{BasicAttr(GAPSenderIDRequest, 4)}}, `
			00 00 0008 | 8003 0004`},
		{"KD TEK + KEK + SID (RFC 6407 §5.6)", &KD{Packets: []*KeyPacket{
			{KDType: KDTEK, SPI: []byte{0x11, 0x22, 0x33, 0x44}, Attributes: Attributes{
				VarAttr(TEKAlgorithmKey, []byte{0xaa, 0xbb, 0xcc, 0xdd}), VarAttr(TEKIntegrityKey, []byte{0xee, 0xff})}},
			{KDType: KDKEK, SPI: seq16(0), Attributes: Attributes{VarAttr(KEKAlgorithmKey, []byte{9, 9})}},
			{KDType: KDSID, Attributes: Attributes{BasicAttr(SIDNumberOfBits, 8), VarAttr(SIDValue, []byte{0, 0, 0, 1})}},
		}}, `
			00 00 004b
			0003 0000                         # 3 key packets, RESERVED2
			01 00 0017 04 11223344            # TEK, KD Length 23, SPI size 4
			  0001 0004 aabbccdd              # TEK_ALGORITHM_KEY (V)
			  0002 0002 eeff                  # TEK_INTEGRITY_KEY (V)
			02 00 001b 10 000102030405060708090a0b0c0d0e0f   # KEK, length 27, SPI size 16
			  0001 0002 0909                  # KEK_ALGORITHM_KEY
			04 00 0011 00                     # SID, length 17, SPI size 0, no SPI
			  8001 0008                       # NUMBER_OF_SID_BITS (B) 8
			  0002 0004 00000001              # SID_VALUE`},
		{"SA phase 1 (RFC 2408 §3.4-3.6)", &SA{DOI: DOIIPsec, Situation: SituationIdentityOnly, Proposals: []*Proposal{{
			Number: 1, Protocol: ProtoISAKMP, Transforms: []*Transform{{Number: 1, ID: TransformKeyIKE, Attributes: Attributes{
				BasicAttr(IKEEncryptionAlgorithm, EncAESCBC), BasicAttr(IKEKeyLength, 128),
				BasicAttr(IKEHashAlgorithm, HashSHA256), BasicAttr(IKEAuthMethod, AuthPSK),
				BasicAttr(IKEGroupDescription, 14), BasicAttr(IKELifeType, LifeSeconds),
				BasicAttr(IKELifeDuration, 28800)}}}}}}, `
			00 00 0038
			00000001 00000001                 # DOI IPsec, SIT_IDENTITY_ONLY
			00 00 002c 01 01 00 01            # proposal 1, PROTO_ISAKMP, no SPI, 1 transform
			00 00 0024 01 01 0000             # transform 1, KEY_IKE
			8001 0007 800e 0080 8002 0004 8003 0001 8004 000e 800b 0001 800c 7080`},
		{"SA GDOI with one AH TEK and no KEK (RFC 6407 §5.5.1)", &GroupSA{TEKs: []*SAT{{Protocol: TEKProtoAH,
			Selector: Selector{Protocol: 6,
				Src: Endpoint{IDType: IDIPv4Addr, Port: 179, Data: []byte{10, 0, 0, 1}},
				Dst: Endpoint{IDType: IDIPv4Addr, Data: []byte{10, 0, 0, 2}}},
			TransformID: uint8(AHSHA256), SPI: 0xdeadbeef,
			Attributes: Attributes{BasicAttr(IPsecAuthAlgorithm, AuthAlgHMACSHA256), BasicAttr(IPsecSADirection, SADirReceiverOnly)}}}}, `
			00 00 0033
			00000002 00000000 0010 0000       # SA Attribute Next Payload = SAT
			00 00 0023                        # SAT, last, length 35
			  02                              # GDOI_PROTO_IPSEC_AH
			  06 01 00b3 04 0a000001          # TCP, SRC 10.0.0.1 port 179
			  01 0000 04 0a000002             # DST 10.0.0.2
			  05 deadbeef                     # AH_SHA2-256, SPI
			  8005 0005 800f 0002             # HMAC-SHA2-256, SA Direction receiver-only`},
		{"SA GDOI with SAK, GAP, SAT (RFC 6407 §5.2-5.5)", goldenGroupSA(), `
			00 00 009c
			00000002 00000000                 # DOI GDOI, Situation 0
			000f 0000                         # SA Attribute Next Payload = SAK (2 octets), RESERVED2 (2 octets)
			16 00 0045                        # SAK, next = GAP, length 69
			  11                              # Protocol UDP
			  01 0350 04 c0000201             # SRC ID_IPV4_ADDR port 848, 1-octet length 4, 192.0.2.1
			  01 0350 04 ef010101             # DST ID_IPV4_ADDR port 848, 1-octet length 4, 239.1.1.1
			  000102030405060708090a0b0c0d0e0f   # KEK SPI
			  00000000                        # RESERVED2 (4 octets; RFC 3547's POP fields)
			  8002 0003 8003 0080             # KEK_ALGORITHM AES, KEK_KEY_LENGTH 128
			  0004 0004 00015180              # KEK_KEY_LIFETIME 86400 (V)
			  8005 0003 8006 0001 8007 0800   # SIG_HASH SHA256, SIG_ALG RSA, SIG_KEY_LENGTH 2048
			10 00 0008 8001 001e              # GAP, next = SAT: ACTIVATION_TIME_DELAY 30
			00 00 003f                        # SAT, last
			  01                              # GDOI_PROTO_IPSEC_ESP
			  00                              # Protocol any
			  04 0000 08 0a010000 ffff0000    # SRC 10.1.0.0/16, 1-octet length 8
			  04 0000 08 0a020000 ffff0000    # DST 10.2.0.0/16
			  0c 11223344                     # ESP_AES-CBC, SPI
			  8001 0001 8002 0e10 8004 0001 8005 0002 8006 0080
			  800e 0004 800f 0003             # Address Preservation src+dst, SA Direction symmetric`},
	}
}

func goldenGroupSA() *GroupSA {
	var spi [16]byte
	copy(spi[:], seq16(0))
	return &GroupSA{
		KEK: &SAK{
			Selector: Selector{Protocol: 17,
				Src: Endpoint{IDType: IDIPv4Addr, Port: 848, Data: []byte{192, 0, 2, 1}},
				Dst: Endpoint{IDType: IDIPv4Addr, Port: 848, Data: []byte{239, 1, 1, 1}}},
			SPI: spi,
			Attributes: Attributes{
				BasicAttr(KEKAlgorithm, uint16(KEKAlgAES)), BasicAttr(KEKKeyLength, 128),
				VarAttr(KEKKeyLifetime, []byte{0, 1, 0x51, 0x80}),
				BasicAttr(KEKSigHashAlgorithm, uint16(SigHashSHA256)), BasicAttr(KEKSigAlgorithm, uint16(SigAlgRSA)),
				BasicAttr(KEKSigKeyLength, 2048)},
		},
		GAP: &GAP{Attributes: Attributes{BasicAttr(GAPActivationTimeDelay, 30)}},
		TEKs: []*SAT{{
			Protocol: TEKProtoESP,
			Selector: Selector{
				Src: Endpoint{IDType: IDIPv4AddrSubnet, Data: []byte{10, 1, 0, 0, 255, 255, 0, 0}},
				Dst: Endpoint{IDType: IDIPv4AddrSubnet, Data: []byte{10, 2, 0, 0, 255, 255, 0, 0}}},
			TransformID: uint8(ESPAESCBC), SPI: 0x11223344,
			Attributes: Attributes{
				BasicAttr(IPsecSALifeType, LifeSeconds), BasicAttr(IPsecSALifeDuration, 3600),
				BasicAttr(IPsecEncapsulationMode, EncapTunnel), BasicAttr(IPsecAuthAlgorithm, AuthAlgHMACSHA1),
				BasicAttr(IPsecKeyLength, 128), BasicAttr(IPsecAddressPreservation, AddrPreserveSrcDst),
				BasicAttr(IPsecSADirection, SADirSymmetric)},
		}},
	}
}

// proves: groundwork (codec) — every payload encodes to the octets its RFC
// figure gives, decodes back to the same octets, and Len matches.
func TestPayloadGolden(t *testing.T) {
	for _, g := range payloadGoldens() {
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
