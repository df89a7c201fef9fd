package isakmp

// Delete is the Delete payload (RFC 2408 §3.15):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!              Domain of Interpretation  (DOI)                  !
//	!  Protocol-Id  !   SPI Size    !           # of SPIs           !
//	~               Security Parameter Index(es) (SPI)              ~
//
// In a GROUPKEY-PUSH, Protocol-Id 0 (ProtoGDOIKEK) with the 16-octet KEK SPI
// deletes the KEK, and a TEK's protocol with its 4-octet SPI deletes that
// TEK (RFC 6407 §4.1.1, §5.8).
type Delete struct {
	DOI      DOI
	Protocol ProtocolID
	SPISize  uint8    // every SPI in SPIs must be this long
	SPIs     [][]byte // each SPISize octets
}

func (*Delete) Type() PayloadType { return PayloadDelete }
func (p *Delete) BodyLen() int    { return 8 + len(p.SPIs)*int(p.SPISize) }

func (p *Delete) AppendBody(b []byte) []byte {
	b = appendU32(b, uint32(p.DOI))
	b = append(b, byte(p.Protocol), p.SPISize)
	b = appendU16(b, uint16(len(p.SPIs)))
	for _, spi := range p.SPIs {
		b = append(b, spi...)
	}
	return b
}

func parseDelete(b []byte) (*Delete, error) {
	r := newReader("Delete payload", b)
	p := &Delete{DOI: DOI(r.u32()), Protocol: ProtocolID(r.u8()), SPISize: r.u8()}
	n := int(r.u16())
	if r.err == nil {
		switch {
		case p.SPISize == 0 && n != 0:
			r.fail("%d SPIs of size 0", n)
		case n*int(p.SPISize) != r.left():
			r.fail("%d SPIs of %d octets need %d octets, %d present", n, p.SPISize, n*int(p.SPISize), r.left())
		}
	}
	for i := 0; i < n && r.err == nil; i++ {
		p.SPIs = append(p.SPIs, r.bytes(int(p.SPISize)))
	}
	return p, r.done()
}
