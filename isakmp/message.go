package isakmp

import "fmt"

// Message is an ISAKMP message: the header and either a payload chain or,
// when the header's Encryption flag is set, the encrypted body that the
// caller decrypts (RFC 2408 §3.1, RFC 2409 Appendix B for the IV chain) and
// parses with SplitPayloadsIn(Header.Exchange, Header.NextPayload, plaintext).
type Message struct {
	Header   Header
	Payloads []Payload // cleartext payloads; empty when Body is used
	Body     []byte    // the encrypted body when Header.Flags has FlagEncryption
}

// Encrypted reports whether the message carries an encrypted body.
func (m *Message) Encrypted() bool { return m.Header.Flags&FlagEncryption != 0 }

// Len is the encoded length of the message.
func (m *Message) Len() int {
	if m.Encrypted() {
		return HeaderLen + len(m.Body)
	}
	return HeaderLen + PayloadsLen(m.Payloads)
}

// Append appends the encoded message. For a cleartext message it sets
// Header.NextPayload from the first payload; for an encrypted one it keeps
// the NextPayload the caller set (the type of the first encrypted payload).
// Header.Length is set in both cases.
func (m *Message) Append(b []byte) ([]byte, error) {
	n := m.Len()
	if uint64(n) > 0xffffffff {
		return b, fmt.Errorf("isakmp: message of %d octets is too long", n)
	}
	m.Header.Length = uint32(n)
	if m.Encrypted() {
		b = m.Header.Append(b)
		return append(b, m.Body...), nil
	}
	m.Header.NextPayload = PayloadNone
	if len(m.Payloads) > 0 {
		m.Header.NextPayload = m.Payloads[0].Type()
	}
	b = m.Header.Append(b)
	return AppendPayloads(b, m.Payloads)
}

// Marshal encodes the message into a new slice.
func (m *Message) Marshal() ([]byte, error) { return m.Append(make([]byte, 0, m.Len())) }

// ParseMessage decodes one ISAKMP message that fills b exactly (one UDP
// datagram, after any non-ESP marker has been removed). The header's Length
// must equal len(b). An encrypted body is copied into Body, not parsed.
func ParseMessage(b []byte) (*Message, error) { return parseMessage(b, true) }

// ParseMessageInPlace is ParseMessage without its copy of b: the payloads'
// fields and Body alias b, which the caller leaves unchanged for as long as
// it uses the message (a datagram read into a buffer reused for the next
// one: until it is done with this one). Issue 18: a key server copied
// every datagram it read, and kept nothing of most.
func ParseMessageInPlace(b []byte) (*Message, error) { return parseMessage(b, false) }

// messageBuf is a cleartext message and room for its usual payloads, in
// one allocation.
type messageBuf struct {
	m  Message
	ps [4]Payload
}

func parseMessage(b []byte, copyIn bool) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(h.Length) != int64(len(b)) {
		return nil, errMalformed("header", 24, "length field %d but the datagram has %d octets", h.Length, len(b))
	}
	body := b[HeaderLen:]
	if copyIn {
		body = cloneBytes(body)
	}
	if h.Flags&FlagEncryption != 0 {
		return &Message{Header: h, Body: own(body)}, nil
	}
	mb := &messageBuf{m: Message{Header: h}}
	var ps []Payload
	if h.NextPayload != PayloadNone {
		ps = mb.ps[:0]
	}
	ps, rest, err := splitPayloadsInto(ps, h.Exchange.isPhase1(), h.NextPayload, body)
	if err == nil && len(rest) != 0 {
		err = errMalformed("payload chain", len(body)-len(rest), "%d octets after the last payload", len(rest))
	}
	if err != nil {
		return nil, wrapAt("message", HeaderLen, err)
	}
	mb.m.Payloads = ps
	return &mb.m, nil
}
