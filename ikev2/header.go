package ikev2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the length of the IKE header (RFC 7296 §3.1).
const HeaderLen = 28

// Version is the version octet of IKEv2: major 2, minor 0 (RFC 7296 §3.1:
// "MUST set the Major Version to 2 and the Minor Version to 0").
const Version = 0x20

// ErrVersion reports a header whose major version is not 2: an IKEv1/GDOI
// message sharing the port, or garbage. The notification for it is
// INVALID_MAJOR_VERSION (RFC 7296 §2.5, §3.10.1).
var ErrVersion = errors.New("not an IKE version 2 message")

// SPI is an IKE SA SPI (RFC 7296 §3.1: 8 octets each).
type SPI [8]byte

// ExchangeType is the header's Exchange Type (RFC 7296 §3.1; IANA "IKEv2
// Exchange Types").
type ExchangeType uint8

const (
	ExchangeIKESAInit        ExchangeType = 34 // RFC 7296 §3.1
	ExchangeIKEAuth          ExchangeType = 35 // RFC 7296 §3.1
	ExchangeCreateChildSA    ExchangeType = 36 // RFC 7296 §3.1
	ExchangeInformational    ExchangeType = 37 // RFC 7296 §3.1
	ExchangeIKESessionResume ExchangeType = 38 // RFC 5723
	// RFC 9838 §7 (IANA Considerations) registers the four G-IKEv2
	// exchanges. Values checked against libreswan's include/ietf_constants.h
	// (39-41, and 43 = IKE_INTERMEDIATE there) and a copy of IANA's
	// registry: GSA_INBAND_REKEY is 42, not 43 (43 is RFC 9242's
	// IKE_INTERMEDIATE).
	ExchangeGSAAuth         ExchangeType = 39
	ExchangeGSARegistration ExchangeType = 40
	ExchangeGSARekey        ExchangeType = 41
	ExchangeGSAInbandRekey  ExchangeType = 42
	ExchangeIKEIntermediate ExchangeType = 43 // RFC 9242
	ExchangeIKEFollowupKE   ExchangeType = 44 // RFC 9370
)

// Flags is the header Flags octet (RFC 7296 §3.1): bits 0-2 and 6-7 are
// reserved.
type Flags uint8

const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: the sender can speak a higher major version
	FlagResponse  Flags = 0x20 // R: this message is a response
)

// Header is the fixed IKE header (RFC 7296 §3.1, Figure 4):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Initiator's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Responder's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          Message ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                            Length                             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// In a G-IKEv2 GSA_REKEY message the SPIs are the Rekey SA's (RFC 9838
// §2.4): the codec does not care.
type Header struct {
	SPIi        SPI
	SPIr        SPI
	NextPayload PayloadType
	Version     uint8 // MjVer<<4 | MnVer; Version (0x20) when zero on Append
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32 // total message length including the header
}

// Append appends the 28-octet header. A zero Version is written as
// Version (0x20).
func (h *Header) Append(b []byte) []byte {
	b = append(b, h.SPIi[:]...)
	b = append(b, h.SPIr[:]...)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = appendU32(b, h.MessageID)
	return appendU32(b, h.Length)
}

// ParseHeader decodes the header at the start of b. It checks the major
// version (ErrVersion) but not Length against len(b): Parse does. The minor
// version is kept as received; RFC 7296 §3.1 says to ignore it.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, errShort("header", 0, HeaderLen, len(b))
	}
	copy(h.SPIi[:], b[0:8])
	copy(h.SPIr[:], b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.Version>>4 != 2 {
		return h, &ParseError{What: "header", Offset: 17, Err: fmt.Errorf("%w: version 0x%02x", ErrVersion, h.Version)}
	}
	return h, nil
}

// IsResponse reports the R flag.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports the I flag (sent by the original initiator).
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

func (h *Header) String() string {
	return fmt.Sprintf("spii=%x spir=%x np=%s ver=%d.%d exch=%s flags=%s msgid=%d len=%d",
		h.SPIi[:], h.SPIr[:], h.NextPayload, h.Version>>4, h.Version&0xf,
		h.Exchange, h.Flags, h.MessageID, h.Length)
}
