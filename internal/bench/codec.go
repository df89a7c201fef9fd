package bench

import (
	"bytes"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// RekeyMessage builds a realistic GROUPKEY-PUSH body as a KS sends it to
// every GM: SEQ, SA with a KEK and two TEKs (AES-CBC/HMAC-SHA-256 and
// AES-256-GCM), KD with both TEKs' keys, the KEK and an RSA-2048 public
// key, and a 256-octet RSA signature.
func RekeyMessage() *isakmp.Message {
	var spi [isakmp.KEKSPILen]byte
	for i := range spi {
		spi[i] = byte(i + 1)
	}
	sel := func(src, dst byte) isakmp.Selector {
		return isakmp.Selector{
			Src: isakmp.Endpoint{IDType: isakmp.IDIPv4AddrSubnet, Data: []byte{10, src, 0, 0, 255, 255, 0, 0}},
			Dst: isakmp.Endpoint{IDType: isakmp.IDIPv4AddrSubnet, Data: []byte{10, dst, 0, 0, 255, 255, 0, 0}},
		}
	}
	life := isakmp.IntAttr(isakmp.IPsecSALifeDuration, 3600)
	sa := &isakmp.GroupSA{
		KEK: &isakmp.SAK{
			Selector: isakmp.Selector{Protocol: 17,
				Src: isakmp.Endpoint{IDType: isakmp.IDIPv4Addr, Port: 848, Data: []byte{192, 0, 2, 1}},
				Dst: isakmp.Endpoint{IDType: isakmp.IDIPv4Addr, Port: 848, Data: []byte{239, 192, 1, 1}}},
			SPI: spi,
			Attributes: isakmp.Attributes{
				isakmp.BasicAttr(isakmp.KEKAlgorithm, uint16(isakmp.KEKAlgAES)),
				isakmp.BasicAttr(isakmp.KEKKeyLength, 256),
				isakmp.VarAttr(isakmp.KEKKeyLifetime, []byte{0, 1, 0x51, 0x80}),
				isakmp.BasicAttr(isakmp.KEKSigHashAlgorithm, uint16(isakmp.SigHashSHA256)),
				isakmp.BasicAttr(isakmp.KEKSigAlgorithm, uint16(isakmp.SigAlgRSA)),
				isakmp.BasicAttr(isakmp.KEKSigKeyLength, 2048)},
		},
		TEKs: []*isakmp.SAT{
			{Protocol: isakmp.TEKProtoESP, Selector: sel(1, 2), TransformID: uint8(isakmp.ESPAESCBC), SPI: 0x1000,
				Attributes: isakmp.Attributes{isakmp.BasicAttr(isakmp.IPsecSALifeType, isakmp.LifeSeconds), life,
					isakmp.BasicAttr(isakmp.IPsecEncapsulationMode, isakmp.EncapTunnel),
					isakmp.BasicAttr(isakmp.IPsecAuthAlgorithm, isakmp.AuthAlgHMACSHA256),
					isakmp.BasicAttr(isakmp.IPsecKeyLength, 256)}},
			{Protocol: isakmp.TEKProtoESP, Selector: sel(3, 4), TransformID: uint8(isakmp.ESPAESGCM16), SPI: 0x2000,
				Attributes: isakmp.Attributes{isakmp.BasicAttr(isakmp.IPsecSALifeType, isakmp.LifeSeconds), life,
					isakmp.BasicAttr(isakmp.IPsecEncapsulationMode, isakmp.EncapTunnel),
					isakmp.BasicAttr(isakmp.IPsecKeyLength, 256)}},
		},
	}
	key := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	kd := &isakmp.KD{Packets: []*isakmp.KeyPacket{
		{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 0x10, 0}, Attributes: isakmp.Attributes{
			isakmp.VarAttr(isakmp.TEKAlgorithmKey, key(32, 1)), isakmp.VarAttr(isakmp.TEKIntegrityKey, key(32, 2))}},
		{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 0x20, 0}, Attributes: isakmp.Attributes{
			isakmp.VarAttr(isakmp.TEKAlgorithmKey, key(36, 3))}},
		{KDType: isakmp.KDKEK, SPI: spi[:], Attributes: isakmp.Attributes{
			isakmp.VarAttr(isakmp.KEKAlgorithmKey, key(48, 4)), isakmp.VarAttr(isakmp.KEKSigKey, key(294, 5))}},
	}}
	return &isakmp.Message{
		Header: isakmp.Header{InitiatorCookie: isakmp.Cookie(spi[:8]), ResponderCookie: isakmp.Cookie(spi[8:]),
			Exchange: isakmp.ExchangePush},
		Payloads: []isakmp.Payload{&isakmp.SEQ{Number: 42}, sa, kd, &isakmp.Sig{Data: key(256, 6)}},
	}
}

// Codec is the wire-codec scenario: parsing and encoding one rekey message,
// against copying its octets (a parser that hands out copies cannot beat
// one memory copy of the datagram).
func Codec() Scenario {
	msg := RekeyMessage()
	wire, err := msg.Marshal()
	if err != nil {
		panic(err) // the message above is fixed and valid
	}
	n := int64(len(wire))
	return Scenario{
		Name:  "codec",
		About: "one GROUPKEY-PUSH body (SEQ, SA with KEK and 2 TEKs, KD, SIG)",
		Ceiling: Case{Name: "copy datagram", Octets: n, Run: func(b *testing.B) {
			for b.Loop() { // b.Loop keeps each call's result alive
				bytes.Clone(wire)
			}
		}},
		Cases: []Case{
			{Name: "parse", Octets: n, Run: func(b *testing.B) {
				for b.Loop() {
					if _, err := isakmp.ParseMessage(wire); err != nil {
						b.Fatal(err)
					}
				}
			}},
			{Name: "marshal (reused buffer)", Octets: n, Run: func(b *testing.B) {
				buf := make([]byte, 0, len(wire))
				for b.Loop() {
					var err error
					if buf, err = msg.Append(buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}},
		},
	}
}
