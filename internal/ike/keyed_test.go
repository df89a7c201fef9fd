package ike

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// toMM4 plays an initiator at from through message 3 against resp, at now,
// and never sends message 5: what an address that answers message 2 can
// do. It returns the initiator and resp's message 4 (its key pair made and
// the agreement computed), nil if resp dropped message 1 or 3.
func toMM4(t *testing.T, resp *Endpoint, from netip.AddrPort, now time.Time) (*Endpoint, []byte) {
	t.Helper()
	ei, err := NewEndpoint(pskConfig(), from, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, err := ei.Initiate(addrR, now)
	if err != nil {
		t.Fatal(err)
	}
	o2 := resp.Handle(from, o1.Send[0].Data, now)
	if len(o2.Send) != 1 {
		return ei, nil
	}
	o3 := ei.Handle(addrR, o2.Send[0].Data, now)
	if len(o3.Send) != 1 {
		t.Fatalf("the initiator did not answer message 2: %+v", o3)
	}
	if o4 := resp.Handle(from, o3.Send[0].Data, now); len(o4.Send) == 1 {
		return ei, o4.Send[0].Data
	}
	return ei, nil
}

// establish runs a real main mode from from against resp at now.
func establish(t *testing.T, resp *Endpoint, from netip.AddrPort, now time.Time) bool {
	t.Helper()
	gm, err := NewEndpoint(pskConfig(), from, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := gm.Initiate(addrR, now)
	for step := 0; step < 10 && len(out.Send) > 0; step++ {
		var next Output
		for _, pk := range out.Send {
			for _, back := range resp.Handle(from, pk.Data, now).Send {
				o := gm.Handle(addrR, back.Data, now)
				next.Send = append(next.Send, o.Send...)
				for _, ev := range o.Events {
					if _, ok := ev.Event.(Established); ok {
						return true
					}
				}
			}
		}
		out = next
	}
	return false
}

// proves: S1 (issue 18: a key server of 100,000 members is worth
// attacking) — one address that answers message 2 and never sends message
// 5 has the responder compute at most MaxHalfOpenPerPeer Diffie-Hellman
// agreements, and hold as many SAs, until they expire, however many
// message 1s and 3s it sends: an SA past message 3 stays half-open until
// message 5 authenticates its peer, and message 1 never evicts it (before,
// it left the half-open lists at message 3: 200 attempts from one address
// were 200 agreements and 200 SAs held for 46 s). Each dropped message 1
// is counted. Another address establishes meanwhile; once the SAs expire
// (message 4's five transmissions, 46 s) nothing is left, and the
// address may try again.
func TestKeyedSAsBoundedPerAddress(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddrPort("198.51.100.9:500")
	agreements := 0
	for range 200 {
		if _, m4 := toMM4(t, resp, attacker, t0); m4 != nil {
			agreements++
		}
	}
	checkHalfOpen(t, resp)
	if agreements != 16 || resp.keyed.Len() != 16 || len(resp.sas) != 16 {
		t.Fatalf("%d agreements, %d keyed, %d SAs held for one address; want 16 each", agreements, resp.keyed.Len(), len(resp.sas))
	}
	if resp.Stats.HalfOpenRefused != 200-16 || resp.Stats.HalfOpenPeerEvicted != 0 {
		t.Fatalf("refused %d, evicted %d message 1s; want 184, 0", resp.Stats.HalfOpenRefused, resp.Stats.HalfOpenPeerEvicted)
	}
	if !establish(t, resp, addrI, t0) {
		t.Fatal("another address could not establish")
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 16 || len(resp.SAs()) != 1 {
		t.Fatalf("%d keyed, %d established", resp.keyed.Len(), len(resp.SAs()))
	}
	// Message 4 is sent again by its timer and the SAs die after the last
	// transmission: bounded in time as in count.
	for at := time.Second; at <= 50*time.Second; at += time.Second {
		resp.Tick(t0.Add(at))
	}
	checkHalfOpen(t, resp)
	if resp.keyed.Len() != 0 || resp.Stats.KeyedExpired != 16 || len(resp.perPeer) != 0 {
		t.Fatalf("after 50 s: %d keyed, %d expired, %d addresses listed", resp.keyed.Len(), resp.Stats.KeyedExpired, len(resp.perPeer))
	}
	if _, m4 := toMM4(t, resp, attacker, t0.Add(51*time.Second)); m4 == nil {
		t.Fatal("the address was refused after its SAs expired")
	}
	checkHalfOpen(t, resp)
	// Reset empties the lists with the tables (a load generator's
	// Endpoints are reused).
	resp.Reset(addrR)
	assertEmpty(t, resp)
	checkHalfOpen(t, resp)
}

// proves: S1, S3 — the SAs past message 3 of all addresses are bounded too
// (MaxKeyed). At the bound a message 3 is dropped before it costs an
// agreement while the oldest such SA is younger than keyedMinAge (a member
// sends message 5 within a round trip and the time its messages wait in a
// busy socket), and evicts that oldest once it is older: an agreement made
// is never traded for another, and addresses that stop after message 3
// get at most MaxKeyed agreements per keyedMinAge. The dropped message 3,
// sent again, is answered. And message 1s spoofed from a member's address
// while it is past message 3 evict only SAs still waiting for message 3,
// never the member's.
func TestKeyedSAsBoundedInAll(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{MaxKeyed: 8})
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 500)
	}
	for i := range 8 {
		if _, m4 := toMM4(t, resp, addr(i), t0); m4 == nil {
			t.Fatalf("address %d: message 3 not answered", i)
		}
	}
	// A ninth, 5 s later: its message 3 is dropped, its SA waits on for
	// message 3; sent again 6 s later, it evicts the oldest (11 s old).
	at := t0.Add(5 * time.Second)
	ei, err := NewEndpoint(pskConfig(), addr(8), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, _ := ei.Initiate(addrR, at)
	o2 := resp.Handle(addr(8), o1.Send[0].Data, at)
	o3 := ei.Handle(addrR, o2.Send[0].Data, at)
	if o := resp.Handle(addr(8), o3.Send[0].Data, at); len(o.Send) != 0 || resp.Stats.HalfOpenRefused != 1 || resp.Stats.KeyedEvicted != 0 {
		t.Fatalf("a message 3 at a full list of young SAs: %d answers, %d refused, %d evicted", len(o.Send), resp.Stats.HalfOpenRefused, resp.Stats.KeyedEvicted)
	}
	checkHalfOpen(t, resp)
	if resp.halfOpen.Len() != 1 || resp.keyed.Len() != 8 {
		t.Fatalf("%d waiting for message 3, %d past it", resp.halfOpen.Len(), resp.keyed.Len())
	}
	at = t0.Add(11 * time.Second)
	if o := resp.Handle(addr(8), o3.Send[0].Data, at); len(o.Send) != 1 || resp.Stats.KeyedEvicted != 1 {
		t.Fatalf("message 3 again, the oldest 11 s old: %d answers, %d evicted", len(o.Send), resp.Stats.KeyedEvicted)
	}
	checkHalfOpen(t, resp)
	if head := resp.keyed.head.peer; head != addr(1) || resp.keyed.Len() != 8 {
		t.Fatalf("the oldest kept is %s of %d, want %s of 8", head, resp.keyed.Len(), addr(1))
	}
	// Seven more at that instant evict the other seven of t0; the next
	// finds only the ninth's, 6 s old, and is refused.
	for i := 9; i < 16; i++ {
		if _, m4 := toMM4(t, resp, addr(i), at); m4 == nil {
			t.Fatalf("address %d: message 3 not answered", i)
		}
	}
	if _, m4 := toMM4(t, resp, addr(16), at); m4 != nil || resp.Stats.KeyedEvicted != 8 || resp.Stats.HalfOpenRefused != 2 {
		t.Fatalf("with the oldest 6 s old: answered %v, %d evicted, %d refused", m4 != nil, resp.Stats.KeyedEvicted, resp.Stats.HalfOpenRefused)
	}
	checkHalfOpen(t, resp)

	// A member past message 3, then 15 spoofed message 1s from its
	// address and 100 more: the member's SA is the address's oldest, but
	// not one a message 1 may evict.
	resp, err = NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, g1, _ := gm.Initiate(addrR, t0)
	g2 := resp.Handle(addrI, g1.Send[0].Data, t0)
	g3 := gm.Handle(addrR, g2.Send[0].Data, t0)
	g4 := resp.Handle(addrI, g3.Send[0].Data, t0)
	if len(g4.Send) != 1 {
		t.Fatal("message 3 not answered")
	}
	spoof := mm1(t)
	for i := range 115 {
		resp.Handle(addrI, withCookie(spoof, uint64(1<<40+i)), t0)
	}
	checkHalfOpen(t, resp)
	if l := resp.perPeer[addrI.Addr()]; l.Len() != 16 || l.head.state != StateMM4Sent {
		t.Fatalf("the member's address lists %d SAs, the oldest in state %s", l.Len(), l.head.state)
	}
	g5 := gm.Handle(addrR, g4.Send[0].Data, t0)
	g6 := resp.Handle(addrI, g5.Send[0].Data, t0)
	if len(g6.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatalf("the member did not establish: %d answers to message 5, %d established", len(g6.Send), len(resp.SAs()))
	}
	checkHalfOpen(t, resp)
	if resp.Stats.HalfOpenPeerEvicted != 100 {
		t.Fatalf("%d spoofed message 1s evicted, want 100", resp.Stats.HalfOpenPeerEvicted)
	}
}

// junkMM5 is a message 5 of the SA whose message 4 is m4: its header,
// the encryption flag, 32 octets of zeros for a body. Anybody who saw
// the cookies can send it; it needs neither the key nor the agreement.
func junkMM5(m4 []byte) []byte {
	m5 := append([]byte(nil), m4[:isakmp.HeaderLen]...)
	m5[16], m5[19] = byte(isakmp.PayloadID), m5[19]|byte(isakmp.FlagEncryption)
	m5 = append(m5, make([]byte, 32)...)
	binary.BigEndian.PutUint32(m5[24:28], uint32(len(m5)))
	return m5
}

// proves: S1 — a message 5 that does not authenticate its peer does not
// free the SA's place among its address's half-open SAs (before, it failed
// the SA at once, and the next message 1 of the address was answered: one
// address sending junk after each message 3 had the responder compute 200
// agreements for 200 attempts, at one instant). The refusal is reported
// once per SA (PeerNotAuthenticated, with the first message's
// notification), and each is counted.
func TestJunkMessage5KeepsItsPlace(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddrPort("198.51.100.9:500")
	agreements, reports, notifications := 0, 0, 0
	for range 200 {
		_, m4 := toMM4(t, resp, attacker, t0)
		if m4 == nil {
			continue
		}
		agreements++
		for range 3 {
			o := resp.Handle(attacker, junkMM5(m4), t0)
			notifications += len(o.Send)
			for _, ev := range o.Events {
				if _, ok := ev.Event.(PeerNotAuthenticated); ok {
					reports++
				}
			}
		}
	}
	checkHalfOpen(t, resp)
	if agreements != 16 || resp.keyed.Len() != 16 || resp.Stats.HalfOpenRefused != 200-16 {
		t.Fatalf("%d agreements, %d keyed, %d message 1s refused; want 16, 16, 184", agreements, resp.keyed.Len(), resp.Stats.HalfOpenRefused)
	}
	if reports != 16 || notifications != 16 || resp.Stats.Dropped < 48 {
		t.Fatalf("%d refusals reported, %d notifications sent, %d dropped; want 16, 16, at least 48", reports, notifications, resp.Stats.Dropped)
	}
}

// proves: S2, S3 — a message 5 that does not authenticate the peer ends
// nothing: a forged one with a member's cookies from its address (junk, as
// anybody who saw the cookies can send) and one that decrypts but carries
// a wrong HASH (what changes the CBC IV chain and the peer's ID before the
// check) leave the responder's SA waiting, with what they changed undone,
// and the member's own message 5 then establishes both sides (message 6,
// under the IV chain of that message 5, is accepted by the member).
func TestRefusedMessage5EndsNothing(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gm, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, _ := gm.Initiate(addrR, t0)
	o2 := resp.Handle(addrI, o1.Send[0].Data, t0)
	o3 := gm.Handle(addrR, o2.Send[0].Data, t0)
	o4 := resp.Handle(addrI, o3.Send[0].Data, t0)
	o5 := gm.Handle(addrR, o4.Send[0].Data, t0)
	if len(o5.Send) != 1 || len(gm.sas) != 1 {
		t.Fatalf("no message 5: %+v", o5)
	}
	var gmSA *SA
	for _, sa := range gm.sas {
		gmSA = sa
	}
	// A message 5 under the member's keys with a wrong HASH: built from the
	// member's SA at the IV message 5 starts from, its chain put back.
	after := gmSA.hs.iv
	gmSA.hs.iv = gmSA.hs.mk.iv
	id, err := gmSA.ourID()
	if err != nil {
		t.Fatal(err)
	}
	wrongHash, err := gmSA.marshalEncrypted([]isakmp.Payload{id, &isakmp.Hash{Data: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	gmSA.hs.iv = after
	var respSA *SA
	for _, sa := range resp.sas {
		respSA = sa
	}
	before := respSA.hs.iv
	for _, forged := range [][]byte{junkMM5(o4.Send[0].Data), wrongHash} {
		o := resp.Handle(addrI, forged, t0)
		if respSA.State() != StateMM4Sent || respSA.hs.iv != before || respSA.peerID != nil || respSA.initialContact {
			t.Fatalf("after a refused message 5: state %s, IV chain kept %v, peer ID %v", respSA.State(), respSA.hs.iv == before, respSA.peerID)
		}
		for _, ev := range o.Events {
			if _, ok := ev.Event.(Failed); ok {
				t.Fatal("a refused message 5 failed the SA")
			}
		}
	}
	checkHalfOpen(t, resp)
	o6 := resp.Handle(addrI, o5.Send[0].Data, t0)
	if len(o6.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatalf("the member's message 5 did not establish the responder: %d answers", len(o6.Send))
	}
	established := false
	for _, ev := range gm.Handle(addrR, o6.Send[0].Data, t0).Events {
		if _, ok := ev.Event.(Established); ok {
			established = true
		}
	}
	if !established {
		t.Fatal("the member did not accept message 6")
	}
	checkHalfOpen(t, resp)
}
