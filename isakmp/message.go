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

	// room holds the list of the first payloads parsed, of the message
	// (Payloads) or of its decrypted body (SplitBody), without an
	// allocation of its own (issue 18: a key server parses five messages
	// per registration).
	room [4]Payload
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
	m := &Message{Header: h}
	if h.Flags&FlagEncryption != 0 {
		m.Body = own(body)
		return m, nil
	}
	ps, rest, err := m.split(body)
	if err == nil && len(rest) != 0 {
		err = errMalformed("payload chain", len(body)-len(rest), "%d octets after the last payload", len(rest))
	}
	if err != nil {
		return nil, wrapAt("message", HeaderLen, err)
	}
	m.Payloads = ps
	return m, nil
}

// SplitBody decodes plain, the decrypted body of the encrypted message m,
// as SplitPayloadsInPlace(m.Header.Exchange, m.Header.NextPayload, plain)
// does: the payloads alias plain, and what follows the last one (the
// padding) is returned unparsed. The list of the first four payloads lies
// in m: a second SplitBody of m overwrites the first one's.
func (m *Message) SplitBody(plain []byte) (ps []Payload, rest []byte, err error) {
	return m.split(plain)
}

// split decodes the payload chain b of m's exchange, starting with
// m.Header.NextPayload, into m.room.
func (m *Message) split(b []byte) ([]Payload, []byte, error) {
	var ps []Payload
	if m.Header.NextPayload != PayloadNone {
		ps = m.room[:0]
	}
	return splitPayloadsInto(ps, m.Header.Exchange.isPhase1(), m.Header.NextPayload, b)
}
