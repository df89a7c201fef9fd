package ikev2

// Delete is the Delete payload (RFC 7296 §3.11, Figure 17):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Protocol ID   |   SPI Size    |          Num of SPIs          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~               Security Parameter Index(es) (SPI)              ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Deleting the IKE SA: protocol IKE, SPI Size 0, no SPIs. Parsing checks
// that Num of SPIs times SPI Size is exactly the octets present, and that
// SPI Size 0 comes with no SPIs.
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

func (*Delete) Type() PayloadType { return PayloadDelete }
func (p *Delete) BodyLen() int {
	n := 4
	for _, s := range p.SPIs {
		n += len(s)
	}
	return n
}

// AppendBody writes the SPIs as given: each should be SPISize octets long.
func (p *Delete) AppendBody(b []byte) []byte {
	b = append(b, byte(p.Protocol), p.SPISize)
	b = appendU16(b, uint16(len(p.SPIs)))
	for _, s := range p.SPIs {
		b = append(b, s...)
	}
	return b
}

func parseDelete(b []byte) (*Delete, error) {
	r := newReader("Delete payload", b)
	p := &Delete{Protocol: ProtocolID(r.u8()), SPISize: r.u8()}
	count := int(r.u16())
	if r.err != nil {
		return p, r.err
	}
	if p.SPISize == 0 && count != 0 {
		return p, errMalformed("Delete payload", 2, "%d SPIs of size 0", count)
	}
	if count*int(p.SPISize) != r.left() {
		return p, errMalformed("Delete payload", 2, "%d SPIs of %d octets but %d octets present", count, p.SPISize, r.left())
	}
	for i := 0; i < count; i++ {
		p.SPIs = append(p.SPIs, r.bytes(int(p.SPISize)))
	}
	return p, r.done()
}
