package gdoi

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

func testKEK(t *testing.T) KEK {
	k := KEK{Key: make([]byte, 32)}
	rand.Read(k.SPI[:])
	rand.Read(k.Key)
	return k
}

func sampleRekey(seq uint32) *Rekey {
	return &Rekey{Seq: seq,
		Deletes: []*isakmp.Delete{{DOI: isakmp.DOIGDOI, Protocol: isakmp.ProtocolID(isakmp.TEKProtoESP), SPISize: 4, SPIs: [][]byte{{0, 0, 1, 0}}}},
		SA: &isakmp.GroupSA{TEKs: []*isakmp.SAT{{Protocol: isakmp.TEKProtoESP, TransformID: uint8(isakmp.ESPAESGCM16), SPI: 0x2000,
			Selector: isakmp.Selector{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0), Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0)}}}},
		KD: &isakmp.KD{Packets: []*isakmp.KeyPacket{{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 0x20, 0},
			Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{7}, 36))}}}}}
}

// proves: T1 — a GROUPKEY-PUSH sealed by the KS (SEQ, Delete, SA, KD, SIG;
// signed, then encrypted with the KEK) opens at the GM with the right keys
// and is refused with the wrong KEK, a forged signature or another key.
func TestPushSealOpen(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, c := range []struct {
		name   string
		signer crypto.Signer
		alg    isakmp.SigAlg
	}{{"rsa", rsaKey, isakmp.SigAlgRSA}, {"ecdsa-384", ecKey, isakmp.SigAlgECDSA384}} {
		t.Run(c.name, func(t *testing.T) {
			kek := testKEK(t)
			pkt, err := SealPush(sampleRekey(5), kek, c.signer, c.alg, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			h, _ := isakmp.ParseHeader(pkt)
			if h.Exchange != isakmp.ExchangePush || h.Flags != isakmp.FlagEncryption || h.MessageID != 0 || int(h.Length) != len(pkt) {
				t.Fatalf("header %s", &h)
			}
			r, err := OpenPush(pkt, kek, c.signer.Public(), c.alg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq != 5 || len(r.Deletes) != 1 || r.SA.TEKs[0].SPI != 0x2000 || len(r.KD.Packets) != 1 {
				t.Fatalf("opened %+v", r)
			}
			wrong := kek
			wrong.Key = bytes.Repeat([]byte{1}, 32)
			if _, err := OpenPush(pkt, wrong, c.signer.Public(), c.alg); !errors.Is(err, ErrPushMalformed) && !errors.Is(err, ErrPushSignature) {
				t.Fatalf("wrong KEK: %v", err)
			}
			if _, err := OpenPush(pkt, kek, other.Public(), isakmp.SigAlgECDSA384); !errors.Is(err, ErrPushSignature) {
				t.Fatalf("another signer's key: %v", err)
			}
			flipped := append([]byte{}, pkt...)
			flipped[len(flipped)-20] ^= 1 // inside the SIG (or its padding block)
			if _, err := OpenPush(flipped, kek, c.signer.Public(), c.alg); err == nil {
				t.Fatal("a modified push was accepted")
			}
		})
	}
}

// proves: T1 — the RFC 8263 acknowledgement verifies under the KEK and
// names the GM and sequence number; a forged one does not.
func TestAck(t *testing.T) {
	kek := testKEK(t)
	b, err := Ack(kek, 9, netip.MustParseAddr("192.0.2.7"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := isakmp.ParseMessage(b)
	if m.Encrypted() || m.Header.Exchange != isakmp.ExchangePushAck {
		t.Fatalf("ACK header %s", &m.Header)
	}
	seq, gm, err := OpenAck(m, kek)
	if err != nil || seq != 9 || gm.String() != "192.0.2.7" {
		t.Fatalf("%d %s %v", seq, gm, err)
	}
	m.Payloads[1].(*isakmp.SEQ).Number = 10
	if _, _, err := OpenAck(m, kek); !errors.Is(err, ErrHash) {
		t.Fatalf("forged ACK: %v", err)
	}
}
