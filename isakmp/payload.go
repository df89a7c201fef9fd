package isakmp

import (
	"fmt"
	"math"
)

// GenericHeaderLen is the length of the generic payload header that starts
// every payload (RFC 2408 §3.2):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Payload Length counts the generic header itself.
const GenericHeaderLen = 4

// MaxPayloadLen is the largest payload the 16-bit length field can describe.
const MaxPayloadLen = math.MaxUint16

// Payload is one ISAKMP payload. The generic header is not part of the
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
// payload that follows (PayloadNone for the last one).
func AppendPayload(b []byte, p Payload, next PayloadType) ([]byte, error) {
	n := PayloadLen(p)
	if n > MaxPayloadLen {
		return b, fmt.Errorf("isakmp: %s payload of %d octets exceeds %d", p.Type(), n, MaxPayloadLen)
	}
	b = append(b, byte(next), 0)
	b = appendU16(b, uint16(n))
	return p.AppendBody(b), nil
}

// MarshalPayload encodes p alone, followed by no payload.
func MarshalPayload(p Payload) ([]byte, error) {
	return AppendPayload(make([]byte, 0, PayloadLen(p)), p, PayloadNone)
}

// AppendPayloads appends a payload chain, linking Next Payload fields. The
// caller puts Type() of the first payload in the header (or in the field
// that announces the chain).
func AppendPayloads(b []byte, ps []Payload) ([]byte, error) {
	var err error
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
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

// ParsePayloads decodes the payload chain that starts with a payload of type
// first and fills b exactly, as it appears outside phase 1 (see
// ParsePayloadsIn). Use SplitPayloads when b may end in padding (a
// decrypted IKEv1 body, RFC 2409 §5.3).
func ParsePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return ParsePayloadsIn(ExchangeNone, first, b)
}

// ParsePayloadsIn is ParsePayloads for a chain carried by exchange exch.
// The exchange settles the one ambiguous layout: an SA payload with the
// GDOI DOI holds proposals in a phase-1 exchange (RFC 6407 §2.1: "The
// Phase 1 SA payload has a DOI value. That value MUST be the GDOI DOI
// value") and SAK/GAP/SAT payloads in GROUPKEY-PULL and GROUPKEY-PUSH
// (§5.2).
func ParsePayloadsIn(exch ExchangeType, first PayloadType, b []byte) ([]Payload, error) {
	ps, rest, err := SplitPayloadsIn(exch, first, b)
	if err != nil {
		return ps, err
	}
	if len(rest) != 0 {
		return ps, errMalformed("payload chain", len(b)-len(rest), "%d octets after the last payload", len(rest))
	}
	return ps, nil
}

// SplitPayloads decodes the payload chain that starts with a payload of
// type first and returns the octets after the last payload (whose Next
// Payload is NONE) unparsed.
func SplitPayloads(first PayloadType, b []byte) (ps []Payload, rest []byte, err error) {
	return splitPayloads(false, first, cloneBytes(b))
}

// SplitPayloadsIn is SplitPayloads for a chain carried by exchange exch
// (see ParsePayloadsIn).
func SplitPayloadsIn(exch ExchangeType, first PayloadType, b []byte) (ps []Payload, rest []byte, err error) {
	return splitPayloads(exch.isPhase1(), first, cloneBytes(b))
}

// SplitPayloadsInPlace is SplitPayloadsIn for a b its caller hands over
// (a body it has just decrypted into a buffer of its own, and does not use
// again): the payloads point into b itself rather than into a copy of it
// (issue 18: a key server copied every decrypted message twice).
func SplitPayloadsInPlace(exch ExchangeType, first PayloadType, b []byte) (ps []Payload, rest []byte, err error) {
	return splitPayloads(exch.isPhase1(), first, b)
}

// isPhase1 reports the exchanges that negotiate an ISAKMP SA (RFC 2408 §4).
func (e ExchangeType) isPhase1() bool { return e >= ExchangeBase && e <= ExchangeAggressive }

func splitPayloads(phase1 bool, first PayloadType, b []byte) (ps []Payload, rest []byte, err error) {
	if first != PayloadNone {
		// Room for a usual message's payloads (main mode's 2 to 4, a
		// GROUPKEY-PULL's 3 to 5) in one allocation: the allocation is what
		// a key server's registrations cost, beyond the cryptography.
		ps = make([]Payload, 0, 4)
	}
	return splitPayloadsInto(ps, phase1, first, b)
}

// splitPayloadsInto is splitPayloads appending to ps.
func splitPayloadsInto(ps []Payload, phase1 bool, first PayloadType, b []byte) ([]Payload, []byte, error) {
	off := 0
	for t := first; t != PayloadNone; {
		next, p, n, err := parseOne(phase1, t, b[off:])
		if err != nil {
			return ps, nil, wrapAt(fmt.Sprintf("payload %d (%s)", len(ps), t), off, err)
		}
		ps = append(ps, p)
		off += n
		t = next
	}
	return ps, b[off:], nil
}

// parseOne decodes one payload of type t at the start of b and returns the
// Next Payload field, the payload and the octets consumed.
func parseOne(phase1 bool, t PayloadType, b []byte) (PayloadType, Payload, int, error) {
	next, body, err := splitGenericOf(t, b)
	if err != nil {
		return 0, nil, 0, err
	}
	p, err := parseBody(phase1, t, body)
	if err != nil {
		return 0, nil, 0, wrapAt("body", GenericHeaderLen, err)
	}
	return next, p, GenericHeaderLen + len(body), nil
}

// splitGenericOf is splitGeneric for a payload of type t, naming t (a map
// lookup) only for an error: a well-formed header is read in place.
func splitGenericOf(t PayloadType, b []byte) (PayloadType, []byte, error) {
	if len(b) >= GenericHeaderLen && b[1] == 0 {
		if n := int(b[2])<<8 | int(b[3]); n >= GenericHeaderLen && n <= len(b) {
			return PayloadType(b[0]), b[GenericHeaderLen:n], nil
		}
	}
	return splitGeneric(t.String(), b)
}

// splitGeneric reads a generic payload header at the start of b and returns
// its Next Payload field and the body it delimits.
func splitGeneric(what string, b []byte) (PayloadType, []byte, error) {
	r := newReader(what, b)
	next := PayloadType(r.u8())
	r.reserved(1, "RESERVED")
	n := int(r.u16())
	if r.err != nil {
		return 0, nil, r.err
	}
	if n < GenericHeaderLen {
		return 0, nil, errMalformed(what, 2, "payload length %d is shorter than the generic header", n)
	}
	if n > len(b) {
		return 0, nil, errShort(what, 2, n, len(b))
	}
	return next, b[GenericHeaderLen:n], nil
}

// parseBody dispatches on the payload type. Types this package does not
// model are kept as RawPayload so that they re-marshal unchanged.
func parseBody(phase1 bool, t PayloadType, body []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		return parseSAPayload(phase1, body)
	case PayloadKE:
		return parseKE(body)
	case PayloadID:
		return parseID(body)
	case PayloadCert:
		return parseCert(body)
	case PayloadCR:
		return parseCertRequest(body)
	case PayloadHash:
		return parseHash(body)
	case PayloadSig:
		return parseSig(body)
	case PayloadNonce:
		return parseNonce(body)
	case PayloadNotification:
		return parseNotify(body)
	case PayloadDelete:
		return parseDelete(body)
	case PayloadVendorID:
		return parseVendorID(body)
	case PayloadKD:
		return parseKD(body)
	case PayloadSEQ:
		return parseSEQ(body)
	case PayloadGAP:
		// A GM may send GAP on its own in GROUPKEY-PULL message 3
		// (RFC 6407 §5.4); the KS's GAP is nested in the SA payload.
		return parseGAP(body)
	case PayloadCOOP:
		return parseCOOP(body)
	case PayloadMembers:
		return parseMembers(body)
	case PayloadSAK, PayloadSAT:
		// SAK and SAT only appear inside a GDOI SA payload (§5.2.1).
		return nil, errMalformed(t.String(), 0, "%s payload outside a GDOI SA payload", t)
	case PayloadProposal, PayloadTransform:
		return nil, errMalformed(t.String(), 0, "%s payload outside an SA payload", t)
	}
	return &RawPayload{PayloadType: t, Body: own(body)}, nil
}

// RawPayload is a payload of a type this package does not decode (NAT-D,
// private-use types, ...). It re-marshals unchanged; a state machine that
// does not expect it answers INVALID-PAYLOAD-TYPE (RFC 2408 §5.1).
type RawPayload struct {
	PayloadType PayloadType
	Body        []byte
}

func (p *RawPayload) Type() PayloadType          { return p.PayloadType }
func (p *RawPayload) BodyLen() int               { return len(p.Body) }
func (p *RawPayload) AppendBody(b []byte) []byte { return append(b, p.Body...) }

func cloneBytes(b []byte) []byte { return append([]byte{}, b...) }

// own returns b with its capacity cut to its length. Parsers work on a
// private copy of the caller's input (made once by the exported entry
// points; ParseMessageInPlace, SplitPayloadsInPlace and Message.SplitBody
// work on the caller's bytes, which it keeps unchanged), so a field can
// alias that input; the cut keeps an append to one field from overwriting
// the next.
func own(b []byte) []byte { return b[:len(b):len(b)] }
