package ikev2

import "fmt"

// RekeySignedData returns the octets the GCKS signs, and a GM verifies, for
// the AUTH payload of a GSA_REKEY message (RFC 9838 §2.4.1.1):
//
//	DataToAuthenticate = A | P
//	A = AdjustedIKEHDR | AdjustedEncPldHdr
//	P = InnerPlds
//
// where P is the inner payload chain in plaintext, whose AUTH payload has
// its Authentication Data zeroed but the ASN.1 Length and AlgorithmIdentifier
// filled in (see Auth.WithZeroSignature), AdjustedIKEHDR is h with Next
// Payload SK and Length "set to the sum of the lengths of A and P", and
// AdjustedEncPldHdr is the SK generic header whose Next Payload is the
// first inner payload's type and whose Payload Length is "the length of P
// plus the size of the Payload header (four octets)". The four zero octets
// of port 4500 are not part of it.
func RekeySignedData(h Header, inner []Payload) ([]byte, error) {
	if len(inner) == 0 {
		return nil, fmt.Errorf("ikev2: GSA_REKEY with no inner payload")
	}
	p, err := AppendPayloads(nil, inner)
	if err != nil {
		return nil, err
	}
	n := HeaderLen + GenericHeaderLen + len(p)
	if n > MaxMessageLen {
		return nil, fmt.Errorf("ikev2: GSA_REKEY of %d octets exceeds %d", n, MaxMessageLen)
	}
	h.NextPayload = PayloadSK
	h.Length = uint32(n)
	out := h.Append(make([]byte, 0, n))
	out = append(out, byte(inner[0].Type()), 0)
	out = appendU16(out, uint16(GenericHeaderLen+len(p)))
	return append(out, p...), nil
}

// WithZeroSignature returns a copy of a Digital Signature AUTH payload whose
// Signature Value is zeroed (same length), the form RFC 9838 §2.4.1.1 signs.
func (p *Auth) WithZeroSignature() (*Auth, error) {
	algID, sig, err := p.Signature()
	if err != nil {
		return nil, err
	}
	return NewSignatureAuth(algID, make([]byte, len(sig))), nil
}
