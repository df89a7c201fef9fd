package ikev2

import (
	"fmt"
	"math"
)

// PayloadType is a Next Payload value (RFC 7296 §3.2; IANA "IKEv2 Payload
// Types").
type PayloadType uint8

const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 33 // §3.3
	PayloadKE       PayloadType = 34 // §3.4
	PayloadIDi      PayloadType = 35 // §3.5
	PayloadIDr      PayloadType = 36 // §3.5
	PayloadCERT     PayloadType = 37 // §3.6
	PayloadCERTREQ  PayloadType = 38 // §3.7
	PayloadAUTH     PayloadType = 39 // §3.8
	PayloadNonce    PayloadType = 40 // §3.9
	PayloadNotify   PayloadType = 41 // §3.10
	PayloadDelete   PayloadType = 42 // §3.11
	PayloadVendorID PayloadType = 43 // §3.12
	PayloadTSi      PayloadType = 44 // §3.13
	PayloadTSr      PayloadType = 45 // §3.13
	PayloadSK       PayloadType = 46 // §3.14
	PayloadCP       PayloadType = 47 // §3.15 (not decoded: RawPayload)
	PayloadEAP      PayloadType = 48 // §3.16 (not decoded: RawPayload)
	PayloadGSPM     PayloadType = 49 // RFC 6467 (not decoded)
	// RFC 9838 §4.2 (IDg), §4.4 (GSA), §4.5 (KD); the values are IANA's,
	// as libreswan's include/ietf_constants.h has them.
	PayloadIDg PayloadType = 50
	PayloadGSA PayloadType = 51
	PayloadKD  PayloadType = 52
	PayloadSKF PayloadType = 53 // RFC 7383 §2.5
	PayloadPS  PayloadType = 54 // RFC 8019 (not decoded)
)

// GenericHeaderLen is the length of the generic payload header that starts
// every payload (RFC 7296 §3.2, Figure 5):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Payload Length counts the generic header itself. C is the critical bit:
// a recipient that does not understand the payload type rejects the whole
// message if it is set (and answers UNSUPPORTED_CRITICAL_PAYLOAD, §2.5),
// skips the payload if it is clear, and ignores the bit for types it
// understands.
const GenericHeaderLen = 4

const criticalBit = 0x80

// Bounds on what one message may make the parser hold (see doc.go).
const (
	// MaxMessageLen is the largest message Parse accepts: 64 KiB, above
	// any UDP datagram; IKEv2 over TCP (RFC 9329) frames are held to it too.
	MaxMessageLen = 64 << 10
	// MaxPayloads is the most payloads one chain (the outer chain, or the
	// inner chain of an SK payload) may hold.
	MaxPayloads = 128
	// MaxPayloadLen is the largest payload the 16-bit length can describe.
	MaxPayloadLen = math.MaxUint16
)

// Payload is one IKEv2 payload. The generic header is not part of the
// payload value: it is written by AppendPayload from the payload's type, the
// next payload's type and BodyLen.
type Payload interface {
	// Type is the value that announces this payload in the previous
	// payload's (or the header's) Next Payload field.
	Type() PayloadType
	// BodyLen is the number of octets after the generic header.
	BodyLen() int
	// AppendBody appends the octets after the generic header.
	AppendBody(b []byte) []byte
}

// PayloadLen is the encoded length of p including its generic header.
func PayloadLen(p Payload) int { return GenericHeaderLen + p.BodyLen() }

// AppendPayload appends p with its generic header; next is the type of the
// payload that follows (PayloadNone for the last one; for SK and SKF the
// field holds the first inner payload's type and next is ignored). The
// critical bit is set only for a RawPayload that carries it.
func AppendPayload(b []byte, p Payload, next PayloadType) ([]byte, error) {
	n := PayloadLen(p)
	if n > MaxPayloadLen {
		return b, fmt.Errorf("ikev2: %s payload of %d octets exceeds %d", p.Type(), n, MaxPayloadLen)
	}
	var flags byte
	switch q := p.(type) {
	case *Encrypted:
		next = q.Inner
	case *EncryptedFragment:
		next = q.Inner
	case *RawPayload:
		if q.Critical {
			flags = criticalBit
		}
	}
	b = append(b, byte(next), flags)
	b = appendU16(b, uint16(n))
	return p.AppendBody(b), nil
}

// MarshalPayload encodes p alone, followed by no payload.
func MarshalPayload(p Payload) ([]byte, error) {
	return AppendPayload(make([]byte, 0, PayloadLen(p)), p, PayloadNone)
}

// AppendPayloads appends a payload chain, linking Next Payload fields. The
// caller puts Type() of the first payload in the header (or in the field
// that announces the chain). An SK or SKF payload must be the last one.
func AppendPayloads(b []byte, ps []Payload) ([]byte, error) {
	if len(ps) > MaxPayloads {
		return b, fmt.Errorf("ikev2: %d payloads exceed %d", len(ps), MaxPayloads)
	}
	var err error
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			if isEncrypted(p.Type()) {
				return b, fmt.Errorf("ikev2: %s payload %d of %d is not the last one (RFC 7296 §3.14)", p.Type(), i, len(ps))
			}
			next = ps[i+1].Type()
		}
		if b, err = AppendPayload(b, p, next); err != nil {
			return b, err
		}
	}
	return b, nil
}

// PayloadsLen is the encoded length of a payload chain.
func PayloadsLen(ps []Payload) int {
	n := 0
	for _, p := range ps {
		n += PayloadLen(p)
	}
	return n
}

func isEncrypted(t PayloadType) bool { return t == PayloadSK || t == PayloadSKF }

// ParseInner decodes the inner payload chain of an Encrypted payload: the
// plaintext the SA layer got by decrypting Encrypted.Data and removing the
// IV, padding, Pad Length and ICV, starting with type first
// (Encrypted.Inner). The chain must fill plain exactly and may not hold
// another SK or SKF payload (RFC 7296 §3.14: "MUST NOT contain another
// Encrypted payload").
func ParseInner(first PayloadType, plain []byte) ([]Payload, error) {
	ps, err := parseChain(first, cloneBytes(plain), false)
	if err != nil {
		return nil, wrapAt("inner payload chain", 0, err)
	}
	return ps, nil
}

// ParsePayloads decodes an outer payload chain starting with type first
// that fills b exactly; an SK or SKF payload ends it.
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return parseChain(first, cloneBytes(b), true)
}

func parseChain(first PayloadType, b []byte, outer bool) ([]Payload, error) {
	var ps []Payload
	off := 0
	for t := first; t != PayloadNone; {
		if len(ps) == MaxPayloads {
			return ps, errMalformed("payload chain", off, "more than %d payloads", MaxPayloads)
		}
		if isEncrypted(t) && !outer {
			return ps, errMalformed("payload chain", off, "%s payload inside an Encrypted payload", t)
		}
		next, p, n, err := parseOne(t, b[off:])
		if err != nil {
			return ps, wrapAt(fmt.Sprintf("payload %d (%s)", len(ps), t), off, err)
		}
		ps = append(ps, p)
		off += n
		if isEncrypted(t) {
			if off != len(b) {
				return ps, errMalformed("payload chain", off, "%d octets after the %s payload, which must be the last (RFC 7296 §3.14)", len(b)-off, t)
			}
			return ps, nil
		}
		t = next
	}
	if off != len(b) {
		return ps, errMalformed("payload chain", off, "%d octets after the last payload", len(b)-off)
	}
	return ps, nil
}

// parseOne decodes one payload of type t at the start of b and returns the
// Next Payload field, the payload and the octets consumed.
func parseOne(t PayloadType, b []byte) (PayloadType, Payload, int, error) {
	next, critical, body, err := splitGeneric(t.String(), b)
	if err != nil {
		return 0, nil, 0, err
	}
	p, err := parseBody(t, next, critical, body)
	if err != nil {
		return 0, nil, 0, wrapAt("body", GenericHeaderLen, err)
	}
	return next, p, GenericHeaderLen + len(body), nil
}

// splitGeneric reads a generic payload header at the start of b and returns
// its Next Payload field, its critical bit and the body it delimits. The
// RESERVED bits are ignored (RFC 7296 §3.2).
func splitGeneric(what string, b []byte) (PayloadType, bool, []byte, error) {
	r := newReader(what, b)
	next := PayloadType(r.u8())
	critical := r.u8()&criticalBit != 0
	n := int(r.u16())
	if r.err != nil {
		return 0, false, nil, r.err
	}
	if n < GenericHeaderLen {
		return 0, false, nil, errMalformed(what, 2, "payload length %d is shorter than the generic header", n)
	}
	if n > len(b) {
		return 0, false, nil, errShort(what, 2, n, len(b))
	}
	return next, critical, own(b[GenericHeaderLen:n]), nil
}

// parseBody dispatches on the payload type. Types this package does not
// decode are kept as RawPayload, with their critical bit, so that they
// re-marshal unchanged.
func parseBody(t, next PayloadType, critical bool, body []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		return parseSA(body)
	case PayloadKE:
		return parseKE(body)
	case PayloadIDi, PayloadIDr, PayloadIDg:
		return parseID(t, body)
	case PayloadCERT:
		return parseCert(body)
	case PayloadCERTREQ:
		return parseCertReq(body)
	case PayloadAUTH:
		return parseAuth(body)
	case PayloadNonce:
		return parseNonce(body)
	case PayloadNotify:
		return parseNotify(body)
	case PayloadDelete:
		return parseDelete(body)
	case PayloadVendorID:
		return parseVendorID(body)
	case PayloadTSi, PayloadTSr:
		return parseTS(t, body)
	case PayloadSK:
		return parseEncrypted(next, body)
	case PayloadSKF:
		return parseEncryptedFragment(next, body)
	case PayloadGSA:
		return parseGSA(body)
	case PayloadKD:
		return parseKD(body)
	}
	return &RawPayload{PayloadType: t, Critical: critical, Body: own(body)}, nil
}

// RawPayload is a payload of a type this package does not decode (CP, EAP,
// private-use types, ...). It re-marshals unchanged, critical bit included.
type RawPayload struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

func (p *RawPayload) Type() PayloadType          { return p.PayloadType }
func (p *RawPayload) BodyLen() int               { return len(p.Body) }
func (p *RawPayload) AppendBody(b []byte) []byte { return append(b, p.Body...) }

// UnsupportedCritical returns the type of the first payload of ps that is a
// RawPayload with the critical bit set and whose type known does not accept
// (nil known: every RawPayload counts). The SA layer rejects such a
// message with UNSUPPORTED_CRITICAL_PAYLOAD, whose Notification Data is that
// one-octet type (RFC 7296 §2.5, §3.10.1).
func UnsupportedCritical(ps []Payload, known func(PayloadType) bool) (PayloadType, bool) {
	for _, p := range ps {
		if r, ok := p.(*RawPayload); ok && r.Critical && (known == nil || !known(r.PayloadType)) {
			return r.PayloadType, true
		}
	}
	return PayloadNone, false
}
