package isakmp

// GroupSA is the SA payload in the GDOI (RFC 6407 §5.2, Figure 4):
//
//	! Next Payload  !   RESERVED    !         Payload Length        !
//	!                              DOI                              !
//	!                           Situation                           !
//	! SA Attribute Next Payload     !          RESERVED2            !
//	~        SA attribute payloads: [SAK] [GAP] SAT ...             ~
//
// DOI is 2 and Situation MUST be zero. "SA Attribute Next Payload
// (2 octets)" names the first SA attribute payload and RESERVED2 is
// 2 octets. The Payload Length covers "the generic header and all TEK and
// KEK payloads": the SA attribute payloads are nested inside the SA payload
// and chained by their own Next Payload fields, the last one 0, while the
// SA's Next Payload names the payload after the whole block (§5.2).
//
// "There may be zero or one SAK payload, zero or one GAP payload, and zero
// or more SAT payloads, where either one SAK or SAT payload MUST be present.
// When present, the order of the SA Attribute payloads MUST be: SAK, GAP,
// and SATs" (§5.2.1). Parsing enforces exactly that; AppendBody writes that
// order.
type GroupSA struct {
	KEK  *SAK
	GAP  *GAP
	TEKs []*SAT
}

func (*GroupSA) Type() PayloadType { return PayloadSA }

// attrs counts the SA attribute payloads; attr returns the i-th in wire
// order. Walked by index rather than listed in a new slice: a key server
// encodes a GroupSA per registration, and each encoding asked for the
// list several times (issue 18: allocations).
func (p *GroupSA) attrs() int {
	n := len(p.TEKs)
	if p.KEK != nil {
		n++
	}
	if p.GAP != nil {
		n++
	}
	return n
}

func (p *GroupSA) attr(i int) Payload {
	if p.KEK != nil {
		if i == 0 {
			return p.KEK
		}
		i--
	}
	if p.GAP != nil {
		if i == 0 {
			return p.GAP
		}
		i--
	}
	return p.TEKs[i]
}

func (p *GroupSA) BodyLen() int {
	n := 12
	for i := range p.attrs() {
		n += PayloadLen(p.attr(i))
	}
	return n
}

func (p *GroupSA) AppendBody(b []byte) []byte {
	k := p.attrs()
	first := PayloadNone
	if k > 0 {
		first = p.attr(0).Type()
	}
	b = appendU32(b, uint32(DOIGDOI))
	b = appendU32(b, 0)
	b = appendU16(b, uint16(first))
	b = appendU16(b, 0)
	for i := range k {
		a := p.attr(i)
		next := PayloadNone
		if i+1 < k {
			next = p.attr(i + 1).Type()
		}
		b = append(b, byte(next), 0)
		b = appendU16(b, uint16(GenericHeaderLen+a.BodyLen()))
		b = a.AppendBody(b)
	}
	return b
}

func parseGroupSA(b []byte) (*GroupSA, error) {
	r := newReader("GDOI SA payload", b)
	p := &GroupSA{}
	r.u32() // DOI, checked by the caller
	r.reserved(4, "Situation")
	first := r.u16()
	r.reserved(2, "RESERVED2")
	if r.err == nil && first != uint16(PayloadSAK) && first != uint16(PayloadSAT) && first != uint16(PayloadGAP) {
		r.err = errMalformed(r.what, 8, "SA Attribute Next Payload %d is not SAK, GAP or SAT", first)
	}
	// rank enforces the SAK, GAP, SAT... order of §5.2.1.
	rank := func(t PayloadType) int {
		switch t {
		case PayloadSAK:
			return 0
		case PayloadGAP:
			return 1
		case PayloadSAT:
			return 2
		}
		return -1
	}
	last := -1
	allowed := func(t PayloadType) bool { return rank(t) >= 0 }
	r.chain(PayloadType(first), allowed, func(t PayloadType, body []byte) error {
		if rank(t) < last || (rank(t) == last && t != PayloadSAT) {
			return errMalformed(t.String(), 0, "%s out of order: SA attribute payloads must be SAK, GAP, SATs", t)
		}
		last = rank(t)
		var err error
		switch t {
		case PayloadSAK:
			p.KEK, err = parseSAK(body)
		case PayloadGAP:
			p.GAP, err = parseGAP(body)
		default:
			var sat *SAT
			sat, err = parseSAT(body)
			p.TEKs = append(p.TEKs, sat)
		}
		return err
	})
	return p, r.done()
}
