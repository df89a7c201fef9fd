package isakmp

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.hex from the message builders")

// goldenMessage is one complete cleartext message of a kind groupvpn sends.
// The GROUPKEY-PULL and GROUPKEY-PUSH messages are sent encrypted; here
// their bodies are in the clear so that third-party dissectors can check
// every payload (the "encrypted body" is the caller's business).
type goldenMessage struct {
	name string
	msg  *Message
}

var (
	testICookie = Cookie{0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81}
	testRCookie = Cookie{0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09}
)

func hdr(e ExchangeType, msgID uint32) Header {
	return Header{InitiatorCookie: testICookie, ResponderCookie: testRCookie, Exchange: e, MessageID: msgID}
}

func goldenTEKGCM() *SAT {
	return &SAT{
		Protocol: TEKProtoESP,
		Selector: Selector{Protocol: 0,
			Src: Endpoint{IDType: IDIPv4AddrSubnet, Data: []byte{10, 3, 0, 0, 255, 255, 0, 0}},
			Dst: Endpoint{IDType: IDIPv4AddrSubnet, Data: []byte{10, 4, 0, 0, 255, 255, 0, 0}}},
		TransformID: uint8(ESPAESGCM16), SPI: 0x55667788,
		Attributes: Attributes{
			BasicAttr(IPsecSALifeType, LifeSeconds), VarAttr(IPsecSALifeDuration, []byte{0, 1, 0x51, 0x80}),
			BasicAttr(IPsecEncapsulationMode, EncapTunnel), BasicAttr(IPsecKeyLength, 256)},
	}
}

func goldenKD() *KD {
	return &KD{Packets: []*KeyPacket{
		{KDType: KDTEK, SPI: []byte{0x11, 0x22, 0x33, 0x44}, Attributes: Attributes{
			VarAttr(TEKAlgorithmKey, bytes.Repeat([]byte{0xa1}, 16)),
			VarAttr(TEKIntegrityKey, bytes.Repeat([]byte{0xb2}, 20))}},
		{KDType: KDTEK, SPI: []byte{0x55, 0x66, 0x77, 0x88}, Attributes: Attributes{
			VarAttr(TEKAlgorithmKey, bytes.Repeat([]byte{0xc3}, 36))}}, // AES-256 key + 4-octet salt
		{KDType: KDKEK, SPI: seq16(0), Attributes: Attributes{
			VarAttr(KEKAlgorithmKey, bytes.Repeat([]byte{0xd4}, 32)), // IV + AES-128 key
			VarAttr(KEKSigKey, bytes.Repeat([]byte{0xe5}, 24))}},
		{KDType: KDSID, Attributes: Attributes{BasicAttr(SIDNumberOfBits, 8),
			VarAttr(SIDValue, []byte{0, 0, 0, 3}), VarAttr(SIDValue, []byte{0, 0, 0, 4})}},
	}}
}

func goldenMessages(t testing.TB) []goldenMessage {
	sa := goldenGroupSA()
	sa.TEKs = append(sa.TEKs, goldenTEKGCM())
	pushSA := goldenGroupSA()
	pushSA.GAP = nil
	hash := &Hash{Data: bytes.Repeat([]byte{0x48}, 32)}
	ni := &Nonce{Data: bytes.Repeat([]byte{0x4e}, 16)}
	nr := &Nonce{Data: bytes.Repeat([]byte{0x4f}, 16)}
	vid := &VendorID{Data: []byte("groupvpn-version\x01\x00\x02")} // docs/wire.md
	mm1SA := payloadGoldenNamed(t, "SA phase 1 (RFC 2408 §3.4-3.6)")
	return []goldenMessage{
		{"mm1", &Message{Header: hdr(ExchangeIdentityProt, 0), Payloads: []Payload{mm1SA, vid}}},
		{"mm3", &Message{Header: hdr(ExchangeIdentityProt, 0), Payloads: []Payload{
			&KE{Data: bytes.Repeat([]byte{0x6b}, 256)}, ni}}},
		{"mm5-cleartext", &Message{Header: hdr(ExchangeIdentityProt, 0), Payloads: []Payload{
			AddrID(mustAddr("192.0.2.10")), &Cert{Encoding: CertX509Sig, Data: testCertDER(t)},
			&CertRequest{CertType: CertX509Sig}, &Sig{Data: bytes.Repeat([]byte{0x53}, 64)},
			&Notify{DOI: DOIIPsec, Protocol: ProtoISAKMP, NotifyType: NotifyInitialContact,
				SPI: append(testICookie[:], testRCookie[:]...)}}}},
		{"informational-delete", &Message{Header: hdr(ExchangeInformational, 0x01020304), Payloads: []Payload{
			hash, &Delete{DOI: DOIIPsec, Protocol: ProtoISAKMP, SPISize: 16,
				SPIs: [][]byte{append(testICookie[:], testRCookie[:]...)}}}}},
		{"pull1", &Message{Header: hdr(ExchangePull, 0x0a0b0c0d), Payloads: []Payload{hash, ni, GroupID(1234)}}},
		{"pull2", &Message{Header: hdr(ExchangePull, 0x0a0b0c0d), Payloads: []Payload{hash, nr, sa}}},
		{"pull3", &Message{Header: hdr(ExchangePull, 0x0a0b0c0d), Payloads: []Payload{hash,
			&GAP{Attributes: Attributes{BasicAttr(GAPSenderIDRequest, 2)}}}}},
		{"pull4", &Message{Header: hdr(ExchangePull, 0x0a0b0c0d), Payloads: []Payload{hash, &SEQ{Number: 7}, goldenKD()}}},
		{"push", &Message{Header: hdr(ExchangePush, 0), Payloads: []Payload{
			&SEQ{Number: 8},
			&Delete{DOI: DOIGDOI, Protocol: ProtocolID(TEKProtoESP), SPISize: 4, SPIs: [][]byte{{0x11, 0x22, 0x33, 0x44}}},
			&Delete{DOI: DOIGDOI, Protocol: ProtoGDOIKEK, SPISize: 16, SPIs: [][]byte{seq16(0)}},
			pushSA, goldenKD(), &Sig{Data: bytes.Repeat([]byte{0x53}, 256)}}}},
		{"push-ack", &Message{Header: hdr(ExchangePushAck, 0), Payloads: []Payload{
			hash, &SEQ{Number: 8}, AddrID(mustAddr("192.0.2.20"))}}},
		{"notify-error", &Message{Header: hdr(ExchangeInformational, 0x0badcafe), Payloads: []Payload{
			hash, &Notify{DOI: DOIGDOI, Protocol: ProtoISAKMP, NotifyType: NotifyInvalidHashInformation,
				SPI: append(testICookie[:], testRCookie[:]...)}}}},
	}
}

// marshalGoldens encodes every golden message and checks or rewrites its
// testdata file.
func marshalGoldens(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for _, g := range goldenMessages(t) {
		b, err := g.msg.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if g.msg.Len() != len(b) {
			t.Fatalf("%s: Len %d, marshalled %d", g.name, g.msg.Len(), len(b))
		}
		path := filepath.Join("testdata", g.name+".hex")
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -update once to create it)", g.name, err)
		}
		if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
			t.Fatalf("%s: marshal differs from %s:\n got %s\nwant %s", g.name, path, got, want)
		}
		out[g.name] = b
	}
	return out
}

// proves: groundwork (codec) — complete messages are stable, round-trip,
// and every truncated prefix is refused.
func TestMessageGolden(t *testing.T) {
	for name, b := range marshalGoldens(t) {
		m, err := ParseMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%s: re-marshal differs:\n got %x\nwant %x", name, again, b)
		}
		for i := 0; i < len(b); i++ {
			if _, err := ParseMessage(b[:i]); err == nil {
				t.Fatalf("%s: truncated to %d of %d octets: parsed without error", name, i, len(b))
			}
		}
		// The header's Length alone refuses a short datagram; the payload
		// chain must refuse a short body on its own too.
		body := b[HeaderLen:]
		for i := 0; i < len(body); i++ {
			if _, err := ParsePayloads(m.Header.NextPayload, body[:i]); err == nil {
				t.Fatalf("%s: body truncated to %d of %d octets: parsed without error", name, i, len(body))
			}
		}
	}
}

func payloadGoldenNamed(t testing.TB, name string) Payload {
	for _, g := range payloadGoldens() {
		if g.name == name {
			return g.p
		}
	}
	t.Fatalf("no payload golden %q", name)
	return nil
}
