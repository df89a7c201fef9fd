package ikev2

// KE is the Key Exchange payload (RFC 7296 §3.4, Figure 10):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Diffie-Hellman Group Num    |           RESERVED            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Key Exchange Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Group is a Transform Type 4 ID (KEMODP2048, KEECP256, ...). Whether
// Data has the length the group needs is the SA layer's check (it answers
// INVALID_SYNTAX or INVALID_KE_PAYLOAD, §1.2).
type KE struct {
	Group uint16
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }
func (p *KE) BodyLen() int    { return 4 + len(p.Data) }
func (p *KE) AppendBody(b []byte) []byte {
	b = appendU16(appendU16(b, p.Group), 0)
	return append(b, p.Data...)
}

func parseKE(b []byte) (*KE, error) {
	r := newReader("KE payload", b)
	p := &KE{Group: r.u16()}
	r.skip(2)
	p.Data = r.rest()
	return p, r.done()
}
