package gdoi

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"unsafe"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// pullTo2 starts a GROUPKEY-PULL of a GM asking for a sender ID over the
// SAs gm and ks: the GM's Pull, the KS's Serve and message 2.
func pullTo2(t *testing.T, gm, ks *ike.SA, pol Policy) (*Pull, *Serve, []byte) {
	t.Helper()
	pull, m1, err := NewPull(gm, isakmp.GroupID(1234), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve, m2, err := NewServe(ks, parse(t, m1), m1, pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pull, serve, m2
}

// pullTo4 goes on to message 4, which the KS sends: message 3 as the GM
// sent it, message 4 as the KS did. The KS's SA forgets the exchange's IV
// chain, as the node has it do once the exchange is done.
func pullTo4(t *testing.T, ks *ike.SA, pull *Pull, serve *Serve, m2 []byte) (m3, m4 []byte) {
	t.Helper()
	m3, _, err := pull.Handle(parse(t, m2))
	if err != nil {
		t.Fatal(err)
	}
	m4, done, err := serve.Handle(parse(t, m3), m3)
	if err != nil || !done {
		t.Fatalf("message 4: done %v, %v", done, err)
	}
	ks.ForgetMessageID(pull.MessageID())
	return m3, m4
}

// servedPull runs a GROUPKEY-PULL over the fixture's SAs up to message 4,
// which the GM does not get (lost).
func servedPull(t *testing.T) (pull *Pull, serve *Serve, m3, m4 []byte, pol *laidOutPolicy) {
	t.Helper()
	gm, ks, pol := pullFixture(t)
	pull, serve, m2 := pullTo2(t, gm, ks, pol)
	m3, m4 = pullTo4(t, ks, pull, serve, m2)
	return pull, serve, m3, m4, pol
}

// proves: issue 18 (KS memory per member while a registration storm
// lasts: a served GROUPKEY-PULL kept for retransmissions holds what its
// message 4 is made of, not its octets) and groundwork (RFC 6407 §3.1, a
// lost message 4: the GM's message 3 again is answered) — the done Serve
// of a laid-out policy keeps no message; the GM's message 3 received again
// is answered with message 4 built again, the same octets as the first
// (HASH(4) over the kept nonces, encrypted with the IV of message 3's last
// block although the KS's SA forgot the exchange's chain), without asking
// the policy again (one registration, one set of sender IDs); the GM takes
// it as the message 4 it lost, with the sender ID of the first answer.
func TestLostMessage4BuiltAgain(t *testing.T) {
	pull, serve, m3, m4, pol := servedPull(t)
	if serve.last != nil || serve.sc != nil || serve.policy != nil {
		t.Fatalf("a done Serve keeps its message 4 (%d octets) or its working state", len(serve.last))
	}
	for i := range 3 {
		again, done, err := serve.Handle(parse(t, m3), m3)
		if err != nil || !done {
			t.Fatalf("message 3 again (%d): done %v, %v", i+1, done, err)
		}
		if !bytes.Equal(again, m4) {
			t.Fatalf("message 4 built again differs from the one sent:\n%x\n%x", again, m4)
		}
	}
	if pol.calls != 1 {
		t.Fatalf("the policy was asked for keys %d times, want once", pol.calls)
	}
	_, res, err := pull.Handle(parse(t, m4))
	if err != nil || res == nil {
		t.Fatalf("the GM refused message 4 built again: %v", err)
	}
	var sids []uint32
	for _, p := range res.KD.Packets {
		if p.KDType == isakmp.KDSID {
			for _, a := range p.Attributes {
				if a.Type == isakmp.SIDValue {
					v, _ := a.Uint()
					sids = append(sids, uint32(v))
				}
			}
		}
	}
	if res.Seq != 7 || len(sids) != 1 || sids[0] != 1 {
		t.Fatalf("the GM got sequence number %d and sender IDs %v, want 7 and [1]", res.Seq, sids)
	}
	// Anything else for the done exchange is refused, as before.
	if _, _, err := serve.Handle(parse(t, m4), m4); err == nil {
		t.Fatal("a message other than message 3 answered after message 4")
	}
}

// proves: issue 18, T4 (no member is handed keys that are no longer the
// group's) — once the laid-out key packets message 4 handed out are
// cleared (a rekey replaced the group's keys), the GM's message 3
// received again is not answered (ErrAnswerGone): no message 4 of zeroed
// keys, and the policy is not asked again; the GM's retransmissions end
// and it starts a new exchange.
func TestLostMessage4NotBuiltWithClearedKeys(t *testing.T) {
	_, serve, m3, _, pol := servedPull(t)
	pol.kd.Clear()
	again, done, err := serve.Handle(parse(t, m3), m3)
	if !errors.Is(err, ErrAnswerGone) || again != nil || !done {
		t.Fatalf("message 3 again after the keys were cleared: %d octets, done %v, %v", len(again), done, err)
	}
	if pol.calls != 1 {
		t.Fatalf("the policy was asked for keys %d times, want once", pol.calls)
	}
}

// proves: issue 18 (KS memory while a storm's exchanges linger) — 2,000
// done Serves of a laid-out policy whose message 4 is as long as a
// group's of two AES-GCM TEKs and an ECDSA-signed KEK (about 370 octets)
// each hold less than their message 4 alone would (the Serve, its nonces,
// the sender ID: 250 octets; 522 when message 4 was kept).
func TestDoneServeHoldsLessThanMessage4(t *testing.T) {
	if raceEnabled {
		t.Skip("heap figures differ under the race detector: make test runs it without")
	}
	gm, ks, pol := pullFixture(t)
	pol.kd = NewKeyDownload([]*isakmp.KeyPacket{
		TEKKeyPacket(0x1001, make([]byte, 36), nil), TEKKeyPacket(0x1002, make([]byte, 36), nil),
		KEKKeyPacket([isakmp.KEKSPILen]byte{1}, make([]byte, 32), make([]byte, 91))})
	const n = 2000
	kept := make([]*Serve, 0, n)
	var m4len int
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for range n {
		pull, serve, m2 := pullTo2(t, gm, ks, pol)
		_, m4 := pullTo4(t, ks, pull, serve, m2)
		m4len = len(m4)
		gm.ForgetMessageID(pull.MessageID())
		kept = append(kept, serve)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := (float64(ms.HeapAlloc) - float64(before)) / n
	runtime.KeepAlive(kept)
	t.Logf("%.0f octets held per done exchange (message 4: %d octets)", per, m4len)
	if m4len < 340 {
		t.Fatalf("message 4 of %d octets: the fixture is not a group's", m4len)
	}
	if per >= float64(m4len) {
		t.Fatalf("%.0f octets held per done exchange, want less than its message 4's %d", per, m4len)
	}
}

// proves: issue 18, S6 (no unbounded work from a replayed datagram) — a
// done exchange answers the GM's message 3 received again maxResends (4)
// times, the GM's own 3 tries with room to spare; a replay of it beyond
// that is not answered (ErrAnswerGone), and costs no message 4 built again.
func TestMessage4SentAgainAtMostMaxResends(t *testing.T) {
	_, serve, m3, m4, _ := servedPull(t)
	for i := range maxResends {
		again, _, err := serve.Handle(parse(t, m3), m3)
		if err != nil || !bytes.Equal(again, m4) {
			t.Fatalf("message 3 again (%d): %d octets, %v", i+1, len(again), err)
		}
	}
	again, done, err := serve.Handle(parse(t, m3), m3)
	if !errors.Is(err, ErrAnswerGone) || again != nil || !done {
		t.Fatalf("message 3 again (%d): %d octets, done %v, %v", maxResends+1, len(again), done, err)
	}
}

// proves: issue 18 (message 4 built again touches no exchange's IV
// chain) — while the GM runs a second GROUPKEY-PULL over the same phase-1
// SA, the first exchange's message 4 built again leaves the second's
// chain as it was: the second completes.
func TestMessage4AgainLeavesOtherExchanges(t *testing.T) {
	gm, ks, pol := pullFixture(t)
	pull1, serve1, m2 := pullTo2(t, gm, ks, pol)
	m3, m4 := pullTo4(t, ks, pull1, serve1, m2)
	pull2, serve2, m2b := pullTo2(t, gm, ks, pol) // its chain in the SA's slot, message 2 sent
	if again, _, err := serve1.Handle(parse(t, m3), m3); err != nil || !bytes.Equal(again, m4) {
		t.Fatalf("message 4 again: %v", err)
	}
	m3b, _, err := pull2.Handle(parse(t, m2b))
	if err != nil {
		t.Fatal(err)
	}
	m4b, done, err := serve2.Handle(parse(t, m3b), m3b)
	if err != nil || !done {
		t.Fatalf("the second exchange's message 3 after the first's message 4 again: %v", err)
	}
	if _, res, err := pull2.Handle(parse(t, m4b)); err != nil || res == nil {
		t.Fatalf("the second exchange's message 4: %v", err)
	}
}

// proves: issue 18 (a done Serve lingers for each registration of the
// last 30 s) — a Serve fits the allocator's 192-octet class.
func TestServeSize(t *testing.T) {
	if n := unsafe.Sizeof(Serve{}); n > 192 {
		t.Fatalf("a Serve is %d octets, want at most 192", n)
	}
}
