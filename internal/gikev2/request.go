package gikev2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// MaxSenderIDs bounds the Sender-IDs a GM may ask for in GROUP_SENDER (the
// GCKS's "policy-defined upper bound", RFC 9838 §2.5.1; ks allocates at
// most ks.MaxSIDsPerMember of them).
const MaxSenderIDs = 16

// Request is a GM's registration request, the payloads it adds to GSA_AUTH
// (after IDi, [CERT], [CERTREQ], [IDr], AUTH) or sends in GSA_REGISTRATION
// (RFC 9838 §2.3.1, §2.3.2):
//
//	GSA_AUTH:         HDR, SK{IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, IDg, [SAg,] [N(GROUP_SENDER),] [N]}
//	GSA_REGISTRATION: HDR, SK{IDg, [SAg,] [N(GROUP_SENDER),] [N]}
//	leaving:          HDR, SK{IDg, N(NO_PROPOSAL_CHOSEN or REGISTRATION_FAILED)}
type Request struct {
	Group uint32 // IDg: ID_KEY_ID, 4 octets (ikev2.GroupKeyID)
	// Sender asks for SenderIDs Sender-IDs (N(GROUP_SENDER), §4.7.4);
	// a non-sender installs the TEKs inbound only (§2.3.3).
	Sender    bool
	SenderIDs uint32
	// SAg lists the transforms the GM accepts (§4.3); nil: not sent.
	SAg *wire.SA
	// Leave, in a GSA_REGISTRATION, tells the GCKS that the GM refuses the
	// policy (NO_PROPOSAL_CHOSEN) or leaves (REGISTRATION_FAILED): the GCKS
	// "MUST remove the GM from the group IDg" and answers HDR, SK{}.
	Leave wire.NotifyType
}

// Payloads is the request's chain.
func (r Request) Payloads() []wire.Payload {
	ps := []wire.Payload{wire.GroupKeyID(r.Group)}
	if r.SAg != nil {
		ps = append(ps, r.SAg)
	}
	if r.Sender {
		ps = append(ps, &wire.Notify{NotifyType: wire.NotifyGroupSender, Data: u32(max(r.SenderIDs, 1))})
	}
	if r.Leave != 0 {
		ps = append(ps, &wire.Notify{NotifyType: r.Leave})
	}
	return ps
}

// RefusedError is a registration the GCKS refuses, with the notification
// its response carries (INVALID_GROUP_ID, AUTHORIZATION_FAILED,
// REGISTRATION_FAILED, NO_PROPOSAL_CHOSEN; RFC 9838 §2.3.1). internal/ikev2
// takes it as a Refusal from OnAuth (RefusalFor).
type RefusedError struct {
	Notify wire.NotifyType
	Err    error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gikev2: registration refused with %s: %v", e.Notify, e.Err)
}
func (e *RefusedError) Unwrap() error { return e.Err }

func refuse(n wire.NotifyType, format string, args ...any) error {
	return &RefusedError{Notify: n, Err: fmt.Errorf(format, args...)}
}

// ParseRequest reads a GM's request from the decrypted inner payloads of
// GSA_AUTH or GSA_REGISTRATION (other payloads, such as GSA_AUTH's IDi and
// AUTH, are the SA layer's and skipped). A request without a usable IDg is
// refused with INVALID_GROUP_ID.
func ParseRequest(ps []wire.Payload) (Request, error) {
	var r Request
	var idg *wire.ID
	for _, p := range ps {
		switch q := p.(type) {
		case *wire.ID:
			if q.Which != wire.PayloadIDg {
				continue
			}
			if idg != nil {
				return r, refuse(wire.NotifyInvalidGroupID, "two IDg payloads")
			}
			idg = q
		case *wire.SA:
			if r.SAg == nil {
				r.SAg = q
			}
		case *wire.Notify:
			switch q.NotifyType {
			case wire.NotifyGroupSender:
				if len(q.Data) != 4 {
					return r, refuse(wire.NotifyRegistrationFailed, "GROUP_SENDER with %d octets of data (RFC 9838 §4.7.4: 4)", len(q.Data))
				}
				r.Sender = true
				r.SenderIDs = min(max(binary.BigEndian.Uint32(q.Data), 1), MaxSenderIDs)
			case wire.NotifyNoProposalChosen, wire.NotifyRegistrationFailed:
				r.Leave = q.NotifyType
			}
		}
	}
	if idg == nil {
		return r, refuse(wire.NotifyInvalidGroupID, "no IDg payload")
	}
	if idg.IDType != wire.IDKeyID || len(idg.Data) != 4 {
		return r, refuse(wire.NotifyInvalidGroupID, "IDg %s is not a 4-octet ID_KEY_ID group number", idg)
	}
	r.Group = binary.BigEndian.Uint32(idg.Data)
	return r, nil
}

// Registration is what a GCKS answers one admitted registration with.
type Registration struct {
	Request Request
	// KWK is the default KWK of the unicast IKE SA (UnicastKWK): the
	// group's keys are wrapped under it.
	KWK KWK
	// SenderIDs were allocated to this GM (a sender with a counter-mode
	// TEK); they go in GM_SENDER_ID attributes.
	SenderIDs []uint32
	// NextMessageID is the Message ID of the next GSA_REKEY over the
	// group's current Rekey SA (GSA_INITIAL_MESSAGE_ID, sent when not 0).
	NextMessageID uint32
}

// Response is the GCKS's answer to an admitted registration: GSA and KD
// (RFC 9838 §2.3.1: HDR, SK{IDr, [CERT,] AUTH, GSA, KD, [N]}; §2.3.2: HDR,
// SK{GSA, KD, [N]}). The GSA holds the KEK policy with GCAUTH and, when not
// 0, GSA_INITIAL_MESSAGE_ID, the TEK policies and the GW policy; the KD
// the KEK's and every TEK's keys wrapped under r.KWK and a member key bag
// with AUTH_KEY (Digital Signature) and the GM's Sender-IDs.
func (g *Group) Response(r Registration, now time.Time) ([]wire.Payload, error) {
	senderBits := r.Request.Sender && g.counterMode()
	if senderBits && len(r.SenderIDs) == 0 {
		return nil, refuse(wire.NotifyRegistrationFailed, "no Sender-ID for a sender of a counter-mode group")
	}
	gsa, err := g.gsa(now, true, true, senderBits, r.NextMessageID, 0, 0)
	if err != nil {
		return nil, err
	}
	bags, err := g.keyBags(r.KWK, true)
	if err != nil {
		return nil, err
	}
	var member wire.Attributes
	if g.Signer != nil && g.KEK != nil {
		der, err := marshalPublicKey(g.Signer.Public())
		if err != nil {
			return nil, err
		}
		member = append(member, wire.VarAttr(wire.KBAuthKey, der))
	}
	if senderBits {
		for _, sid := range r.SenderIDs {
			if g.SIDBits < 32 && sid >= 1<<g.SIDBits {
				return nil, fmt.Errorf("gikev2: Sender-ID %d does not fit %d bits", sid, g.SIDBits)
			}
			member = append(member, wire.VarAttr(wire.KBGMSenderID, u32(sid)))
		}
	}
	if member != nil {
		bags = append(bags, &wire.KeyBag{Attributes: member})
	}
	return []wire.Payload{gsa, &wire.KD{Bags: bags}}, nil
}

// Refusal is the GCKS's answer to a refused registration: the notification
// alone (HDR, SK{[IDr, CERT, AUTH,] N}).
func Refusal(err error) []wire.Payload {
	n := wire.NotifyRegistrationFailed
	var re *RefusedError
	if errors.As(err, &re) {
		n = re.Notify
	}
	return []wire.Payload{&wire.Notify{NotifyType: n}}
}

// Inband is the GCKS's GSA_INBAND_REKEY request to one GM over its unicast
// IKE SA (RFC 9838 §2.4.2: HDR, SK{GSA, KD, [N]}), keys wrapped under that
// SA's default KWK: the KEK policy without GCAUTH (registration only) and
// without GSA_INITIAL_MESSAGE_ID ("MUST NOT be used if inband rekey ... is
// employed"), the TEKs, the GW policy's ATD and DTD, and Deletes.
func (g *Group) Inband(kwk KWK, deletes []*wire.Delete, now time.Time) ([]wire.Payload, error) {
	gsa, err := g.gsa(now, false, true, false, 0, g.ATD, g.DTD)
	if err != nil {
		return nil, err
	}
	bags, err := g.keyBags(kwk, true)
	if err != nil {
		return nil, err
	}
	ps := []wire.Payload{gsa, &wire.KD{Bags: bags}}
	for _, d := range deletes {
		ps = append(ps, d)
	}
	return ps, nil
}
