package gdoi

import (
	"bytes"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// countingPayload is a payload that counts its encodings.
type countingPayload struct {
	isakmp.Payload
	appends *int
}

func (c countingPayload) AppendBody(b []byte) []byte {
	*c.appends++
	return c.Payload.AppendBody(b)
}

// proves: N1 (issue 18: the KS's CPU per registration; the GROUPKEY-PULL
// HASHes encoded the payloads they cover again) — a sealed message
// encodes the payloads after its HASH once, not once for the HASH and
// once for the message (2 before), and is byte for byte the message built
// the way it was before: HASH(n) = prf(SKEYID_a, M-ID | prefix | payloads)
// in a HASH payload, then the payloads, encrypted with the exchange's IV
// chain; the GM's side reads and verifies it.
func TestSealEncodesPayloadsOnce(t *testing.T) {
	gm, ks := phase1(t)
	pol := &fakePolicy{}
	groupSA, _ := pol.Join(ike.Info{}, nil)
	_, kd, _ := pol.Keys(ike.Info{}, nil, 0)
	prefix := bytes.Repeat([]byte{5}, 2*NonceLen)
	for i, rest := range [][]isakmp.Payload{
		{&isakmp.Nonce{Data: bytes.Repeat([]byte{1}, NonceLen)}, groupSA},
		{&isakmp.SEQ{Number: 9}, kd},
		nil, // message 3 without a GAP: the HASH alone
	} {
		mid := uint32(0x100 + i)
		h, err := hash(ks, mid, prefix, rest)
		if err != nil {
			t.Fatal(err)
		}
		before, err := ks.EncryptPhase2(isakmp.ExchangePull, mid, append([]isakmp.Payload{&isakmp.Hash{Data: h}}, rest...))
		if err != nil {
			t.Fatal(err)
		}
		ks.ForgetMessageID(mid) // the same first IV again
		n := 0
		counted := make([]isakmp.Payload, len(rest))
		for j, p := range rest {
			counted[j] = countingPayload{p, &n}
		}
		got, err := seal(ks, mid, prefix, counted)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, before) {
			t.Fatalf("message %d differs from HASH and payloads encoded apart:\n%x\n%x", i, got, before)
		}
		if n != len(rest) {
			t.Fatalf("message %d: %d payloads encoded %d times", i, len(rest), n)
		}
		ps, err := open(gm, parse(t, got), prefix)
		if err != nil || len(ps) != len(rest) {
			t.Fatalf("message %d: the GM reads %d payloads: %v", i, len(ps), err)
		}
	}
}
