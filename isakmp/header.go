package isakmp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the length of the ISAKMP header (RFC 2408 §3.1).
const HeaderLen = 28

// ErrVersion reports a header whose major version is not 1: an IKEv2 or
// G-IKEv2 message (RFC 9838) sharing the GDOI port, or garbage.
var ErrVersion = errors.New("not an ISAKMP version 1 message")

// Cookie is an ISAKMP initiator or responder cookie. In GROUPKEY-PUSH the
// two cookies together carry the KEK SPI (RFC 6407 §4).
type Cookie [8]byte

// Header is the fixed ISAKMP header (RFC 2408 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                          Initiator                            !
//	!                            Cookie                             !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                          Responder                            !
//	!                            Cookie                             !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!  Next Payload ! MjVer ! MnVer ! Exchange Type !     Flags     !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                          Message ID                           !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	!                            Length                             !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Header struct {
	InitiatorCookie Cookie
	ResponderCookie Cookie
	NextPayload     PayloadType
	Version         uint8 // MjVer<<4 | MnVer; Version (0x10) when zero on Append
	Exchange        ExchangeType
	Flags           Flags
	MessageID       uint32
	Length          uint32 // total message length including the header
}

// AppendHeader appends the 28-octet header. A zero Version is written as
// Version (0x10).
func (h *Header) Append(b []byte) []byte {
	b = append(b, h.InitiatorCookie[:]...)
	b = append(b, h.ResponderCookie[:]...)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(h.NextPayload), v, byte(h.Exchange), byte(h.Flags))
	b = appendU32(b, h.MessageID)
	return appendU32(b, h.Length)
}

// ParseHeader decodes the header at the start of b. It checks the major
// version (ErrVersion) but not Length against len(b): ParseMessage does.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, errShort("header", 0, HeaderLen, len(b))
	}
	copy(h.InitiatorCookie[:], b[0:8])
	copy(h.ResponderCookie[:], b[8:16])
	h.NextPayload = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:24])
	h.Length = binary.BigEndian.Uint32(b[24:28])
	if h.Version>>4 != 1 {
		return h, &ParseError{What: "header", Offset: 17, Err: fmt.Errorf("%w: version 0x%02x", ErrVersion, h.Version)}
	}
	return h, nil
}

func (h *Header) String() string {
	return fmt.Sprintf("icookie=%x rcookie=%x np=%s ver=%d.%d exch=%s flags=%s msgid=%08x len=%d",
		h.InitiatorCookie[:], h.ResponderCookie[:], h.NextPayload, h.Version>>4, h.Version&0xf,
		h.Exchange, h.Flags, h.MessageID, h.Length)
}
