package isakmp

// SEQ is the GDOI Sequence Number payload (RFC 6407 §5.6):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!                        Sequence Number                        !
//
// The KS increments it for every GROUPKEY-PUSH; GMs reject any value not
// greater than the last one accepted (RFC 6407 §4.3, §5.6).
type SEQ struct{ Number uint32 }

func (*SEQ) Type() PayloadType            { return PayloadSEQ }
func (*SEQ) BodyLen() int                 { return 4 }
func (p *SEQ) AppendBody(b []byte) []byte { return appendU32(b, p.Number) }

func parseSEQ(b []byte) (*SEQ, error) {
	r := newReader("SEQ payload", b)
	p := &SEQ{Number: r.u32()}
	return p, r.done()
}
