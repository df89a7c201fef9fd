package ikev2

// Encrypted is the Encrypted and Authenticated payload, SK (RFC 7296
// §3.14, Figure 21):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Initialization Vector                     |
//	|         (length is block size for encryption algorithm)       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                    Encrypted IKE Payloads                     ~
//	+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|               |             Padding (0-255 octets)            |
//	+-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
//	|                                               |  Pad Length   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                    Integrity Checksum Data                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// "The Next Payload field of the Encrypted payload is set to the payload
// type of the first contained payload"; the SK payload is the last one of
// the message. The codec does not know the algorithms: Data is everything
// after the generic header (IV, ciphertext, Padding, Pad Length, ICV) and
// the SA layer splits it. For the associated data of an AEAD cipher
// (RFC 5282 §5.1: the IKE header through the SK generic header) or the
// ICV's coverage, see EncryptedDataOffset.
type Encrypted struct {
	Inner PayloadType // the type of the first inner payload
	Data  []byte
}

func (*Encrypted) Type() PayloadType            { return PayloadSK }
func (p *Encrypted) BodyLen() int               { return len(p.Data) }
func (p *Encrypted) AppendBody(b []byte) []byte { return append(b, p.Data...) }

func parseEncrypted(inner PayloadType, b []byte) (*Encrypted, error) {
	if len(b) == 0 {
		return nil, errMalformed("SK payload", 0, "no IV, ciphertext or ICV")
	}
	return &Encrypted{Inner: inner, Data: own(b)}, nil
}

// EncryptedFragment is the Encrypted and Authenticated Fragment payload, SKF
// (RFC 7383 §2.5, Figure 2):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Fragment Number        |        Total Fragments        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Initialization Vector                     |
//	~                      Encrypted content                        ~
//	|               |             Padding (0-255 octets)            |
//	|                                               |  Pad Length   |
//	~                    Integrity Checksum Data                    ~
//
// The codec parses fragments and checks their numbering (Fragment Number
// from 1 to Total Fragments; Next Payload only in fragment 1, zero in the
// others, as §2.5 requires); decrypting and reassembling them is the SA
// layer's job, and an SA layer that does not support RFC 7383 drops them
// (it never sent IKEV2_FRAGMENTATION_SUPPORTED).
type EncryptedFragment struct {
	Inner  PayloadType // the type of the first inner payload (fragment 1 only)
	Number uint16      // Fragment Number, from 1
	Total  uint16      // Total Fragments
	Data   []byte      // IV, ciphertext, Padding, Pad Length, ICV
}

func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }
func (p *EncryptedFragment) BodyLen() int    { return 4 + len(p.Data) }
func (p *EncryptedFragment) AppendBody(b []byte) []byte {
	b = appendU16(appendU16(b, p.Number), p.Total)
	return append(b, p.Data...)
}

func parseEncryptedFragment(inner PayloadType, b []byte) (*EncryptedFragment, error) {
	r := newReader("SKF payload", b)
	p := &EncryptedFragment{Inner: inner, Number: r.u16(), Total: r.u16()}
	p.Data = r.rest()
	switch {
	case r.err != nil:
	case p.Number == 0 || p.Number > p.Total:
		r.failAt(0, "Fragment Number %d of Total Fragments %d", p.Number, p.Total)
	case p.Number > 1 && inner != PayloadNone:
		r.failAt(0, "fragment %d names an inner payload (%s); only fragment 1 may", p.Number, inner)
	case len(p.Data) == 0:
		r.fail("no IV, ciphertext or ICV")
	}
	return p, r.done()
}

// EncryptedDataOffset returns the offset, in the marshalled message msg, of
// the first octet after the SK payload's generic header (after the SKF
// payload's Fragment Number and Total Fragments): where the IV starts.
// msg[:offset] is the associated data of an AEAD cipher (RFC 5282 §5.1,
// RFC 7383 §2.5); the ICV of a non-AEAD transform covers
// msg[:len(msg)-icvLen] (RFC 7296 §3.14). The message is walked through its
// generic headers only, so it may be one the caller is still building (ICV
// not yet computed).
func EncryptedDataOffset(msg []byte) (int, error) {
	h, err := ParseHeader(msg)
	if err != nil {
		return 0, err
	}
	off := HeaderLen
	for t, n := h.NextPayload, 0; t != PayloadNone; n++ {
		if n == MaxPayloads {
			return 0, errMalformed("message", off, "more than %d payloads", MaxPayloads)
		}
		next, _, body, err := splitGeneric(t.String(), msg[off:])
		if err != nil {
			return 0, wrapAt("message", off, err)
		}
		switch t {
		case PayloadSK:
			return off + GenericHeaderLen, nil
		case PayloadSKF:
			if len(body) < 4 {
				return 0, errShort("SKF payload", off+GenericHeaderLen, 4, len(body))
			}
			return off + GenericHeaderLen + 4, nil
		}
		off += GenericHeaderLen + len(body)
		t = next
	}
	return 0, errMalformed("message", off, "no SK or SKF payload")
}
