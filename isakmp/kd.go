package isakmp

// KDType is a Key Download Type (RFC 6407 §5.6).
type KDType uint8

const (
	KDTEK KDType = 1
	KDKEK KDType = 2
	KDLKH KDType = 3
	KDSID KDType = 4 // RFC 6407 §5.6.4, sender IDs for counter modes (RFC 6054)
)

var kdTypeNames = map[KDType]string{KDTEK: "TEK", KDKEK: "KEK", KDLKH: "LKH", KDSID: "SID"}

func (t KDType) String() string { return nameOf(kdTypeNames, t, "KD_TYPE") }

// Key packet attribute types, by KD type (RFC 6407 §5.6.1–§5.6.4). All are
// Variable (TLV) except NUMBER_OF_SID_BITS.
const (
	TEKAlgorithmKey  uint16 = 1 // TEK: cipher key (with the salt for GCM, RFC 4106 §8.1)
	TEKIntegrityKey  uint16 = 2 // TEK: HMAC key
	TEKSourceAuthKey uint16 = 3 // TEK
	KEKAlgorithmKey  uint16 = 1 // KEK: explicit IV (if the mode needs one) then the key (§5.6.2.1)
	KEKSigKey        uint16 = 2 // KEK: the GCKS's public rekey signing key (§5.6.2.2)
	LKHDownloadArray uint16 = 1 // LKH: see LKHArray
	LKHUpdateArray   uint16 = 2 // LKH: see LKHArray
	LKHSigKey        uint16 = 3 // LKH
	SIDNumberOfBits  uint16 = 1 // SID: Basic, width of the sender ID field
	SIDValue         uint16 = 2 // SID: one allocated sender ID; may repeat
)

// KeyPacket is one key packet of a KD payload (RFC 6407 §5.6, Figure 10):
//
//	!   KD Type     !   RESERVED    !            KD Length          !
//	!    SPI Size   !                   SPI (variable)              ~
//	~                    Key Packet Attributes                      ~
//
// KD Length counts the whole key packet including its first four octets.
// The SPI is the TEK SPI (4 octets), the KEK SPI (16 octets) or, for SID,
// absent: "the SPI Size field MUST be zero, and the SPI field is omitted"
// (§5.6.4), which parsing enforces.
type KeyPacket struct {
	KDType     KDType
	SPI        []byte
	Attributes Attributes
}

func (k *KeyPacket) len() int { return 5 + len(k.SPI) + k.Attributes.Len() }

func (k *KeyPacket) append(b []byte) []byte {
	b = append(b, byte(k.KDType), 0)
	b = appendU16(b, uint16(k.len()))
	b = append(append(b, byte(len(k.SPI))), k.SPI...)
	return k.Attributes.Append(b)
}

// KD is the Key Download payload (RFC 6407 §5.6, Figure 9):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	! Number of Key Packets         !            RESERVED2          !
//	~                    Key Packets                                ~
type KD struct {
	Packets []*KeyPacket
}

func (*KD) Type() PayloadType { return PayloadKD }

func (p *KD) BodyLen() int {
	n := 4
	for _, k := range p.Packets {
		n += k.len()
	}
	return n
}

func (p *KD) AppendBody(b []byte) []byte {
	b = appendU16(b, uint16(len(p.Packets)))
	b = appendU16(b, 0)
	for _, k := range p.Packets {
		b = k.append(b)
	}
	return b
}

// Packet returns the first key packet of type t whose SPI equals spi (any
// SPI when spi is nil).
func (p *KD) Packet(t KDType, spi []byte) *KeyPacket {
	for _, k := range p.Packets {
		if k.KDType == t && (spi == nil || string(k.SPI) == string(spi)) {
			return k
		}
	}
	return nil
}

func parseKD(b []byte) (*KD, error) {
	r := newReader("KD payload", b)
	p := &KD{}
	count := int(r.u16())
	r.reserved(2, "RESERVED2")
	for r.err == nil && r.left() > 0 {
		at := r.off
		k, n, err := parseKeyPacket(b[at:])
		if err != nil {
			r.err = wrapAt("KD payload", at, err)
			break
		}
		p.Packets = append(p.Packets, k)
		r.take(n)
	}
	if r.err == nil && len(p.Packets) != count {
		r.fail("Number of Key Packets is %d but %d are present", count, len(p.Packets))
	}
	return p, r.done()
}

func parseKeyPacket(b []byte) (*KeyPacket, int, error) {
	r := newReader("key packet", b)
	k := &KeyPacket{KDType: KDType(r.u8())}
	r.reserved(1, "RESERVED")
	n := int(r.u16())
	if r.err != nil {
		return k, 0, r.err
	}
	if n < 5 {
		return k, 0, errMalformed("key packet", 2, "KD Length %d is shorter than the key packet header", n)
	}
	if n > len(b) {
		return k, 0, errShort("key packet", 2, n, len(b))
	}
	r.b = b[:n]
	spiSize := int(r.u8())
	if k.KDType == KDSID && spiSize != 0 {
		return k, 0, errMalformed("key packet", 4, "SID key packet with SPI Size %d (must be 0)", spiSize)
	}
	k.SPI = r.bytes(spiSize)
	if r.err != nil {
		return k, 0, r.err
	}
	as, err := parseAttributes(r.b[r.off:])
	if err != nil {
		return k, 0, wrapAt("key packet", r.off, err)
	}
	k.Attributes = as
	return k, n, nil
}
