package isakmp

import "fmt"

// ANN is the content of a COOP announcement after its HASH payload
// (docs/wire.md "COOP announcements"):
//
//	HDR*(ExchangeCOOPAnn), HASH, SEQ, ID(group), COOP [, SA, KD] [, MEMBERS]
//
// SA and KD travel together or not at all. The HASH and the encryption are
// the phase-1 SA's business (internal/gdoi SealANN / OpenANN).
type ANN struct {
	Seq     uint32   // the SEQ payload: the announcement sequence number
	Group   *ID      // the group, ID_KEY_ID
	COOP    *COOP    // the sender's role, priority, version, ...
	SA      *GroupSA // the group's policy (SAK, GAP, SATs); nil: none
	KD      *KD      // the keys for SA; nil exactly when SA is nil
	Members *Members // a part of the member list; nil: none
}

// Payloads returns the payload chain after the HASH, in wire order.
func (a *ANN) Payloads() ([]Payload, error) {
	if a.Group == nil || a.COOP == nil {
		return nil, fmt.Errorf("isakmp: ANN without group or COOP payload")
	}
	if (a.SA == nil) != (a.KD == nil) {
		return nil, fmt.Errorf("isakmp: ANN carries SA and KD only together")
	}
	ps := []Payload{&SEQ{Number: a.Seq}, a.Group, a.COOP}
	if a.SA != nil {
		ps = append(ps, a.SA, a.KD)
	}
	if a.Members != nil {
		ps = append(ps, a.Members)
	}
	return ps, nil
}

// ParseANN reads the payloads after an ANN's HASH, as parsed under
// ExchangeCOOPAnn: exactly SEQ, ID (ID_KEY_ID), COOP, then optionally SA
// (a GDOI SA) with KD, then optionally MEMBERS. Anything else, in any
// other order, is refused as malformed.
func ParseANN(ps []Payload) (*ANN, error) {
	a := &ANN{}
	i := 0
	next := func() Payload {
		if i < len(ps) {
			i++
			return ps[i-1]
		}
		return nil
	}
	bad := func(format string, args ...any) (*ANN, error) {
		return nil, errMalformed("ANN", i, format, args...)
	}
	seq, ok := next().(*SEQ)
	if !ok {
		return bad("payload 0 is not SEQ")
	}
	a.Seq = seq.Number
	if a.Group, ok = next().(*ID); !ok || a.Group.IDType != IDKeyID {
		return bad("payload 1 is not the group's ID_KEY_ID")
	}
	if a.COOP, ok = next().(*COOP); !ok {
		return bad("payload 2 is not COOP")
	}
	if i < len(ps) {
		if sa, ok := ps[i].(*GroupSA); ok {
			i++
			a.SA = sa
			if a.KD, ok = next().(*KD); !ok {
				return bad("SA without KD")
			}
		}
	}
	if i < len(ps) {
		if a.Members, ok = next().(*Members); !ok {
			return bad("unexpected %s payload", ps[i-1].Type())
		}
	}
	if i < len(ps) {
		return bad("unexpected %s payload after MEMBERS", ps[i].Type())
	}
	return a, nil
}
