package ikev2

import "fmt"

// Message is an IKEv2 message: the header and its payload chain. When the
// chain ends in an Encrypted payload (SK) or an Encrypted Fragment (SKF),
// that payload carries the still-encrypted inner chain; the SA layer opens
// it and parses the plaintext with ParseInner.
type Message struct {
	Header   Header
	Payloads []Payload
}

// Len is the encoded length of the message.
func (m *Message) Len() int { return HeaderLen + PayloadsLen(m.Payloads) }

// Append appends the encoded message, setting Header.NextPayload from the
// first payload and Header.Length.
func (m *Message) Append(b []byte) ([]byte, error) {
	n := m.Len()
	if n > MaxMessageLen {
		return b, fmt.Errorf("ikev2: message of %d octets exceeds %d", n, MaxMessageLen)
	}
	m.Header.Length = uint32(n)
	m.Header.NextPayload = PayloadNone
	if len(m.Payloads) > 0 {
		m.Header.NextPayload = m.Payloads[0].Type()
	}
	b = m.Header.Append(b)
	return AppendPayloads(b, m.Payloads)
}

// Marshal encodes the message into a new slice.
func (m *Message) Marshal() ([]byte, error) { return m.Append(make([]byte, 0, m.Len())) }

// Parse decodes one IKEv2 message that fills b exactly (one UDP datagram
// after any non-ESP marker has been removed). The header's Length must equal
// len(b), which may not exceed MaxMessageLen. An SK or SKF payload is the
// last payload; its contents are not decrypted.
func Parse(b []byte) (*Message, error) {
	if len(b) > MaxMessageLen {
		return nil, errMalformed("message", 0, "%d octets exceed %d", len(b), MaxMessageLen)
	}
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(h.Length) != int64(len(b)) {
		return nil, errMalformed("header", 24, "length field %d but the datagram has %d octets", h.Length, len(b))
	}
	ps, err := ParsePayloads(h.NextPayload, b[HeaderLen:])
	if err != nil {
		return nil, wrapAt("message", HeaderLen, err)
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// Encrypted returns the message's SK payload, or nil.
func (m *Message) Encrypted() *Encrypted {
	if n := len(m.Payloads); n > 0 {
		if sk, ok := m.Payloads[n-1].(*Encrypted); ok {
			return sk
		}
	}
	return nil
}

// Fragment returns the message's SKF payload, or nil.
func (m *Message) Fragment() *EncryptedFragment {
	if n := len(m.Payloads); n > 0 {
		if skf, ok := m.Payloads[n-1].(*EncryptedFragment); ok {
			return skf
		}
	}
	return nil
}

// Find returns the first payload of type t in ps, or nil.
func Find(ps []Payload, t PayloadType) Payload {
	for _, p := range ps {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// Notifies returns the Notify payloads of ps.
func Notifies(ps []Payload) []*Notify {
	var out []*Notify
	for _, p := range ps {
		if n, ok := p.(*Notify); ok {
			out = append(out, n)
		}
	}
	return out
}
