package ike

import (
	"net/netip"
	"testing"
	"time"
)

// toMM4 plays an initiator at from through message 3 against resp, at now,
// and never sends message 5: what an address that answers message 2 can
// do. It returns the initiator and whether resp answered message 3 (with
// message 4: its key pair made and the agreement computed), or false if
// resp dropped message 1 or 3.
func toMM4(t *testing.T, resp *Endpoint, from netip.AddrPort, now time.Time) (*Endpoint, bool) {
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
		return ei, false
	}
	o3 := ei.Handle(addrR, o2.Send[0].Data, now)
	if len(o3.Send) != 1 {
		t.Fatalf("the initiator did not answer message 2: %+v", o3)
	}
	return ei, len(resp.Handle(from, o3.Send[0].Data, now).Send) == 1
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
		if _, keyed := toMM4(t, resp, attacker, t0); keyed {
			agreements++
		}
	}
	checkHalfOpen(t, resp)
	if agreements != 16 || resp.keyed.Len() != 16 || len(resp.sas) != 16 {
		t.Fatalf("%d agreements, %d keyed, %d SAs held for one address; want 16 each", agreements, resp.keyed.Len(), len(resp.sas))
	}
	if resp.Stats.HalfOpenPeerRefused != 200-16 || resp.Stats.HalfOpenPeerEvicted != 0 {
		t.Fatalf("refused %d, evicted %d message 1s; want 184, 0", resp.Stats.HalfOpenPeerRefused, resp.Stats.HalfOpenPeerEvicted)
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
	if _, keyed := toMM4(t, resp, attacker, t0.Add(51*time.Second)); !keyed {
		t.Fatal("the address was refused after its SAs expired")
	}
	checkHalfOpen(t, resp)
}

// proves: S1, S3 — the SAs past message 3 of all addresses are bounded too
// (MaxKeyed): past it the oldest is evicted and counted, never a newer
// one, so members that send message 5 within a round trip establish while
// addresses that stop after message 3 fill the list; and message 1s
// spoofed from a member's address while it is past message 3 evict only
// SAs still waiting for message 3, never the member's.
func TestKeyedSAsBoundedInAll(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{MaxKeyed: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 500)
		if _, keyed := toMM4(t, resp, from, t0); !keyed {
			t.Fatalf("address %d: message 3 not answered", i)
		}
		checkHalfOpen(t, resp)
	}
	if resp.keyed.Len() != 8 || resp.Stats.KeyedEvicted != 32 {
		t.Fatalf("%d keyed, %d evicted; want 8, 32", resp.keyed.Len(), resp.Stats.KeyedEvicted)
	}
	if head := resp.keyed.head.peer.Addr(); head != netip.AddrFrom4([4]byte{203, 0, 113, 32}) {
		t.Fatalf("the oldest kept is %s, want 203.0.113.32: the newest eight kept", head)
	}
	// A member past message 3, then 15 spoofed message 1s from its
	// address and 100 more: the member's SA is the address's oldest, but
	// not one message 1 may evict.
	gm, err := NewEndpoint(pskConfig(), addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, o1, _ := gm.Initiate(addrR, t0)
	o2 := resp.Handle(addrI, o1.Send[0].Data, t0)
	o3 := gm.Handle(addrR, o2.Send[0].Data, t0)
	o4 := resp.Handle(addrI, o3.Send[0].Data, t0)
	if len(o4.Send) != 1 {
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
	o5 := gm.Handle(addrR, o4.Send[0].Data, t0)
	o6 := resp.Handle(addrI, o5.Send[0].Data, t0)
	if len(o6.Send) != 1 || len(resp.SAs()) != 1 {
		t.Fatalf("the member did not establish: %d answers to message 5, %d established", len(o6.Send), len(resp.SAs()))
	}
	checkHalfOpen(t, resp)
	if resp.Stats.HalfOpenPeerEvicted != 100 {
		t.Fatalf("%d spoofed message 1s evicted, want 100", resp.Stats.HalfOpenPeerEvicted)
	}
}
