package ikev2

import (
	"bytes"
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// proves: G2 (issue 17: Config.OnAuthSA gives the GSA_AUTH responder the
// SA itself, whose keys are the initiator's (GSK_w can be derived for the
// response), whose peer is the initiator's address and identity; an SA
// payload in GSA_AUTH is the member's SAg and reaches the hook instead of
// being answered NO_PROPOSAL_CHOSEN as a CHILD SA request)
func TestOnAuthSAKeysAndSAg(t *testing.T) {
	ca, cb := pskConfig(), pskConfig()
	ca.AuthExchange, cb.AuthExchange = wire.ExchangeGSAAuth, wire.ExchangeGSAAuth
	sag := &wire.SA{Proposals: []*wire.Proposal{{Number: 1, Protocol: wire.ProtoESP,
		Transforms: []*wire.Transform{{Type: wire.TransformENCR, ID: 20, Attributes: wire.Attributes{{Type: wire.AttrKeyLength, Value: 128}}}}}}}
	ca.AuthRequest = []wire.Payload{&wire.ID{Which: wire.PayloadIDg, IDType: wire.IDKeyID, Data: []byte{0, 0, 0, 90}}, sag}
	var seenSD []byte
	var seenSA *SA
	var sawSAg bool
	cb.OnAuthSA = func(sa *SA, req []wire.Payload) ([]wire.Payload, error) {
		seenSA, seenSD = sa, append([]byte(nil), sa.Keys().SKd...)
		sawSAg = wire.Find(req, wire.PayloadSA) != nil
		return []wire.Payload{&wire.Notify{NotifyType: 40001, Data: []byte("keys")}}, nil
	}
	a, b := pair(t, ca, cb, Limits{})
	sa, out, _ := a.Initiate(addrB, t0)
	evs := Exchange(a, b, a, out, t0)
	established(t, evs)
	if seenSA == nil || seenSA.Peer() != addrA || !seenSA.Info().PeerID.equal(AddrIdentity(addrA.Addr())) {
		t.Fatalf("OnAuthSA saw %+v", seenSA)
	}
	if !bytes.Equal(seenSD, sa.Keys().SKd) || !sawSAg {
		t.Fatalf("OnAuthSA: SK_d equal %v, SAg seen %v", bytes.Equal(seenSD, sa.Keys().SKd), sawSAg)
	}
	for _, ev := range evs {
		if r, ok := ev.Event.(Response); ok {
			for _, n := range wire.Notifies(r.Payloads) {
				if n.NotifyType == wire.NotifyNoProposalChosen {
					t.Fatal("the SAg was answered as a CHILD SA request")
				}
			}
		}
	}
}
