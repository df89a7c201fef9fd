package gdoi

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

var (
	gmAddr = netip.MustParseAddrPort("127.0.0.1:848")
	ksAddr = netip.MustParseAddrPort("127.0.0.2:848")
	t0     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
)

// phase1 establishes a GDOI phase-1 SA between a GM and a KS in memory and
// returns both sides' SAs.
func phase1(t testing.TB) (gm, ks *ike.SA) {
	t.Helper()
	return phase1With(t, ike.SHA256)
}

type fakePolicy struct {
	refuse *Refusal
	sids   uint16
}

func (f *fakePolicy) Join(peer ike.Info, group *isakmp.ID) (*isakmp.GroupSA, error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	return &isakmp.GroupSA{TEKs: []*isakmp.SAT{{Protocol: isakmp.TEKProtoESP, TransformID: uint8(isakmp.ESPAESGCM16), SPI: 0x1234,
		Selector: isakmp.Selector{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0),
			Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0)}}}}, nil
}

func (f *fakePolicy) Keys(peer ike.Info, group *isakmp.ID, sids uint16) (uint32, *isakmp.KD, error) {
	f.sids = sids
	return 7, &isakmp.KD{Packets: []*isakmp.KeyPacket{{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 0x12, 0x34},
		Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{9}, 36))}}}}, nil
}

func parse(t testing.TB, b []byte) *isakmp.Message {
	t.Helper()
	m, err := isakmp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// proves: groundwork (GROUPKEY-PULL, RFC 6407 §3) — the four messages with
// their HASHes, nonces, group ID, SA, GAP SENDER_ID_REQUEST, SEQ and KD.
func TestPull(t *testing.T) {
	gm, ks := phase1(t)
	pol := &fakePolicy{}
	pull, m1, err := NewPull(gm, isakmp.GroupID(1234), 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve, m2, err := NewServe(ks, parse(t, m1), m1, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := serve.Group(); id.String() != "ID_KEY_ID 1234" {
		t.Fatalf("KS saw group %v", id)
	}
	m3, res, err := pull.Handle(parse(t, m2))
	if err != nil || res != nil {
		t.Fatal(err)
	}
	m4, done, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !done {
		t.Fatal(err)
	}
	if pol.sids != 2 {
		t.Fatalf("KS saw SENDER_ID_REQUEST %d", pol.sids)
	}
	_, res, err = pull.Handle(parse(t, m4))
	if err != nil || res == nil {
		t.Fatal(err)
	}
	if res.Seq != 7 || res.Policy.TEKs[0].SPI != 0x1234 || len(res.KD.Packets) != 1 {
		t.Fatalf("result %+v", res)
	}
	// The GM retransmits message 3: the KS answers with message 4 again.
	again, _, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !bytes.Equal(again, m4) {
		t.Fatalf("retransmitted message 3 answered with %d octets, %v", len(again), err)
	}
}

// proves: groundwork (GROUPKEY-PULL integrity) — a message whose HASH does
// not verify is refused.
func TestPullHashChecked(t *testing.T) {
	gm, ks := phase1(t)
	_, m1, _ := NewPull(gm, isakmp.GroupID(1), 0, nil)
	m := parse(t, m1)
	// Re-encrypt the same payloads with a corrupted HASH.
	ps, err := ks.DecryptPhase2(m)
	if err != nil {
		t.Fatal(err)
	}
	ps[0].(*isakmp.Hash).Data[0] ^= 1
	forged, _ := gm.EncryptPhase2(isakmp.ExchangePull, m.Header.MessageID+2, ps)
	if _, _, err := NewServe(ks, parse(t, forged), forged, &fakePolicy{}, nil); !errors.Is(err, ErrHash) {
		t.Fatalf("forged HASH(1): %v", err)
	}
}

// proves: groundwork — a refused registration is a *Refusal carrying the
// notification to send.
func TestPullRefusal(t *testing.T) {
	gm, ks := phase1(t)
	_, m1, _ := NewPull(gm, isakmp.GroupID(99), 0, nil)
	_, _, err := NewServe(ks, parse(t, m1), m1, &fakePolicy{refuse: &Refusal{Notify: isakmp.NotifyInvalidIDInformation, Reason: "no group 99"}}, nil)
	var r *Refusal
	if !errors.As(err, &r) || r.Notify != isakmp.NotifyInvalidIDInformation {
		t.Fatalf("%v", err)
	}
	msg, err := ks.Notify(r.Notify, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := parse(t, msg); m.Header.Exchange != isakmp.ExchangeInformational || !m.Encrypted() {
		t.Fatalf("refusal sent as %s", m.Header.Exchange)
	}
}

// forge returns msg with one octet of its second ciphertext block flipped:
// under CBC the second plaintext block is garbled and one octet of the
// third flipped, both inside HASH data, so the message still parses, fails
// its HASH, and ends with the same last block as the real one (the IV the
// chain would take).
func forge(t *testing.T, msg []byte) []byte {
	t.Helper()
	f := append([]byte(nil), msg...)
	f[isakmp.HeaderLen+16] ^= 0x80
	return f
}

// proves: S2 (issue 11) — a forged GROUPKEY-PULL message that parses but
// fails its HASH, carrying the Message ID of the exchange in progress,
// neither ends the exchange nor moves its IV chain: it is refused as
// unauthenticated, and the real message 2 (at the GM) and message 3 (at
// the KS) that follow are accepted.
func TestForgedPullMessageLeavesTheExchange(t *testing.T) {
	gm, ks := phase1(t)
	pull, m1, err := NewPull(gm, isakmp.GroupID(1234), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve, m2, err := NewServe(ks, parse(t, m1), m1, &fakePolicy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pull.Handle(parse(t, forge(t, m2))); !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, ErrHash) {
		t.Fatalf("forged message 2: %v; want ErrUnauthenticated (ErrHash)", err)
	}
	m3, _, err := pull.Handle(parse(t, m2))
	if err != nil {
		t.Fatalf("the real message 2 after a forged one: %v", err)
	}
	if _, _, err := serve.Handle(parse(t, forge(t, m3)), forge(t, m3)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("forged message 3: %v; want ErrUnauthenticated", err)
	}
	m4, done, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !done {
		t.Fatalf("the real message 3 after a forged one: %v", err)
	}
	if _, res, err := pull.Handle(parse(t, m4)); err != nil || res == nil {
		t.Fatalf("message 4: %v", err)
	}
}

// proves: issue 18 (KS memory per member: a served GROUPKEY-PULL kept for
// retransmissions holds only what answers message 3 again) — once message
// 4 is sent, the Serve of a policy not laid out (which keeps message 4's
// octets; a LaidOutPolicy's: TestLostMessage4BuiltAgain) drops the
// nonces, the group ID and the policy, and
// still answers a retransmitted message 3 with the same message 4 after the
// KS's SA forgot the exchange's IV chain; any other message is refused.
func TestDoneServeKeepsOnlyTheAnswer(t *testing.T) {
	gm, ks := phase1(t)
	pull, m1, err := NewPull(gm, isakmp.GroupID(1234), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve, m2, err := NewServe(ks, parse(t, m1), m1, &fakePolicy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if serve.Done() {
		t.Fatal("done after message 2")
	}
	m3, _, err := pull.Handle(parse(t, m2))
	if err != nil {
		t.Fatal(err)
	}
	m4, done, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !done || !serve.Done() {
		t.Fatalf("message 4: done %v, %v", done, err)
	}
	if serve.nonces != nil || serve.sc != nil || serve.check != nil || serve.group != nil || serve.policy != nil || serve.Group() != nil {
		t.Fatalf("a done Serve keeps the exchange's state: %+v", serve)
	}
	ks.ForgetMessageID(parse(t, m3).Header.MessageID)
	again, done, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !done || !bytes.Equal(again, m4) {
		t.Fatalf("retransmitted message 3 answered with %d octets, done %v, %v", len(again), done, err)
	}
	if _, _, err := serve.Handle(parse(t, m1), m1); err == nil {
		t.Fatal("message 1 answered after message 4")
	}
	if _, _, err = pull.Handle(parse(t, m4)); err != nil {
		t.Fatal(err)
	}
}

// proves: issue 18 (the KS's allocations per registration: it computes
// four GROUPKEY-PULL HASHes per registration) — a HASH over M-ID, a
// nonce prefix and a payload chain builds its input in one exact-size
// buffer: two allocations besides the PRF's own (that buffer and one in
// the key download's encoding), not one per payload grown (6 before).
func TestHashAllocations(t *testing.T) {
	_, ks := phase1(t)
	pol := &fakePolicy{}
	_, kd, _ := pol.Keys(ike.Info{}, nil, 0)
	rest := []isakmp.Payload{&isakmp.SEQ{Number: 7}, kd}
	prefix := bytes.Repeat([]byte{1}, 2*NonceLen)
	prfOnly := testing.AllocsPerRun(100, func() { ks.PRFa(prefix) })
	got := testing.AllocsPerRun(100, func() {
		if _, err := hash(ks, 1, prefix, rest); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("hash: %.0f allocations, the PRF alone %.0f", got, prfOnly)
	if got > prfOnly+2 {
		t.Fatalf("hash makes %.0f allocations besides the PRF's %.0f, want at most 2 (its input buffer, the key download's own)", got-prfOnly, prfOnly)
	}
}
