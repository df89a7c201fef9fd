package ikev2

import (
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// establish runs a PSK exchange between fresh endpoints and returns them
// and the SAs.
func establishPair(t *testing.T, limits Limits) (a, b *Endpoint, si, sr *SA) {
	t.Helper()
	a, b = pair(t, pskConfig(), pskConfig(), limits)
	_, out, err := a.Initiate(addrB, t0)
	if err != nil {
		t.Fatal(err)
	}
	si, sr = established(t, Exchange(a, b, a, out, t0))
	return a, b, si, sr
}

// initRequest returns a fresh IKE_SA_INIT request from an initiator at
// from (not kept anywhere).
func initRequest(t *testing.T, from netip.AddrPort) []byte {
	t.Helper()
	_, r, err := NewInitiator(pskConfig(), from, addrB, t0)
	if err != nil {
		t.Fatal(err)
	}
	return r.Send[0]
}

// proves: G3, S1 (issue 17: half-open SAs are bounded per address and in
// all, the oldest evicted, and expire without IKE_AUTH; every eviction and
// expiry is counted).
func TestHalfOpenBounds(t *testing.T) {
	_, b := pair(t, pskConfig(), pskConfig(), Limits{MaxHalfOpen: 8, MaxHalfOpenPerPeer: 3, CookieThreshold: 1000, HalfOpenTimeout: 10 * time.Second})
	for i := 0; i < 5; i++ {
		b.Handle(addrA, initRequest(t, addrA), t0)
	}
	if b.HalfOpen() != 3 || b.Stats.HalfOpenPeerEvicted != 2 {
		t.Fatalf("one address: half-open %d, evicted %d", b.HalfOpen(), b.Stats.HalfOpenPeerEvicted)
	}
	for i := 0; i < 10; i++ {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), 500)
		b.Handle(from, initRequest(t, from), t0)
	}
	if b.HalfOpen() != 8 || b.Stats.HalfOpenEvicted != 5 || len(b.sas) != 8 || len(b.pending) != 8 {
		t.Fatalf("global: half-open %d, evicted %d, sas %d, pending %d", b.HalfOpen(), b.Stats.HalfOpenEvicted, len(b.sas), len(b.pending))
	}
	b.Tick(t0.Add(10 * time.Second))
	if b.HalfOpen() != 0 || len(b.sas) != 0 || b.Stats.HalfOpenExpired != 8 || !b.NextTimer().IsZero() {
		t.Fatalf("expiry: half-open %d, sas %d, expired %d", b.HalfOpen(), len(b.sas), b.Stats.HalfOpenExpired)
	}
}

// proves: G3, S1 (issue 17: past the cookie threshold an IKE_SA_INIT
// without our COOKIE gets one and creates no state; the initiator sends its
// request again with the cookie and the SA is established; a wrong cookie
// is counted and answered with a fresh one).
func TestCookies(t *testing.T) {
	a, b := pair(t, pskConfig(), pskConfig(), Limits{CookieThreshold: -1})
	_, out, _ := a.Initiate(addrB, t0)
	first := out.Send[0].Data
	r := b.Handle(addrA, first, t0)
	if len(r.Send) != 1 || b.HalfOpen() != 0 || len(b.sas) != 0 || b.Stats.CookieSent != 1 {
		t.Fatalf("no cookie answer: %d sent, half-open %d", len(r.Send), b.HalfOpen())
	}
	m, err := wire.Parse(r.Send[0].Data)
	if err != nil || len(m.Payloads) != 1 || m.Payloads[0].(*wire.Notify).NotifyType != wire.NotifyCookie {
		t.Fatalf("cookie answer %v %v", m, err)
	}
	// The initiator echoes it; the exchange completes.
	evs := Exchange(a, b, b, r, t0)
	established(t, evs)
	// A forged cookie: counted, answered with the real one, no state.
	before := len(b.sas)
	c, _ := pair(t, pskConfig(), pskConfig(), Limits{})
	sa, o, _ := c.Initiate(addrB, t0)
	sa.cookie = []byte("forged cookie value")
	msg, _ := sa.initRequest()
	_ = o
	r = b.Handle(netip.MustParseAddrPort("127.0.0.3:500"), msg, t0)
	if b.Stats.CookieInvalid != 1 || len(r.Send) != 1 || len(b.sas) != before {
		t.Fatalf("forged cookie: invalid %d, answers %d, sas %d", b.Stats.CookieInvalid, len(r.Send), len(b.sas))
	}
}

// proves: G3 (issue 17: INVALID_KE_PAYLOAD: a responder that chose another
// proposal's group says so without keeping state, and the initiator sends
// IKE_SA_INIT again with a KE of that group).
func TestInvalidKE(t *testing.T) {
	gcm := Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19}
	cbc := Suite{Encr: wire.EncrAESCBC, KeyBits: 128, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14}
	a, b := pair(t, pskConfig(gcm, cbc), pskConfig(cbc), Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	r := b.Handle(addrA, out.Send[0].Data, t0)
	if len(b.sas) != 0 || b.Stats.RefusalSent != 1 || len(r.Send) != 1 {
		t.Fatalf("INVALID_KE: sas %d, refusals %d", len(b.sas), b.Stats.RefusalSent)
	}
	si, _ := established(t, Exchange(a, b, b, r, t0))
	if si.Info().Suite != cbc {
		t.Fatalf("suite %s", si.Info().Suite)
	}
	// No common proposal: NO_PROPOSAL_CHOSEN, unprotected, so the
	// initiator keeps waiting and fails with ErrRefused only when its
	// retransmissions end.
	c, d := pair(t, pskConfig(gcm), pskConfig(cbc), Limits{})
	_, out, _ = c.Initiate(addrB, t0)
	if evs := Exchange(c, d, c, out, t0); len(evs) != 0 || len(c.sas) != 1 {
		t.Fatalf("unprotected refusal acted on at once: %v", evs)
	}
	var failed error
	for failed == nil {
		now := c.NextTimer()
		if now.IsZero() {
			t.Fatal("no failure")
		}
		for _, ev := range c.Tick(now).Events {
			failed = ev.Event.(Failed).Err
		}
	}
	if !errors.Is(failed, ErrRefused) {
		t.Fatal(failed)
	}
}

// proves: G3, S2 (issue 17: nothing unauthenticated deletes or changes an
// established SA: a forged INFORMATIONAL Delete (wrong keys), a truncated
// or bit-flipped real Delete and a real one from another address are
// dropped and counted; the SA answers liveness afterwards).
func TestForgedMessagesIgnored(t *testing.T) {
	a, b, si, sr := establishPair(t, Limits{})
	// A Delete sealed with other keys (an attacker's own SA's) under the
	// established SA's SPIs.
	_, _, xi, _ := establishPair(t, Limits{})
	xi.spii, xi.spir = si.spii, si.spir
	forged, err := xi.seal(wire.ExchangeInformational, 2, false, []wire.Payload{&wire.Delete{Protocol: wire.ProtoIKE}})
	if err != nil {
		t.Fatal(err)
	}
	real, _ := si.Delete(t0) // a real Delete, kept for tampering, never delivered
	si.req = request{}
	si.nextMID--
	inputs := [][]byte{forged, real.Send[0][:len(real.Send[0])-1]}
	for i := 28; i < len(real.Send[0]); i += 9 {
		bad := append([]byte{}, real.Send[0]...)
		bad[i] ^= 1
		inputs = append(inputs, bad)
	}
	for _, in := range inputs {
		if out := b.Handle(addrA, in, t0); len(out.Send) != 0 || len(out.Events) != 0 {
			t.Fatalf("forged message answered: %v", out)
		}
	}
	// The real Delete from another address is not this SA's either.
	if out := b.Handle(netip.MustParseAddrPort("127.0.0.9:500"), real.Send[0], t0); len(out.Send) != 0 {
		t.Fatal("message from another address answered")
	}
	if sr.State() != StateEstablished || b.Stats.Dropped < uint64(len(inputs)-2) || b.Stats.UnknownSA == 0 {
		t.Fatalf("state %s, dropped %d, unknown %d", sr.State(), b.Stats.Dropped, b.Stats.UnknownSA)
	}
	out, err := a.Liveness(si, t0)
	if err != nil {
		t.Fatal(err)
	}
	if evs := Exchange(a, b, a, out, t0); len(evs) != 1 || evs[0].Event != (Alive{}) {
		t.Fatalf("liveness after the forgeries: %v", evs)
	}
}

// proves: G3 (issue 17: the request/response exchange an owner builds on
// the SA (G-IKEv2's GSA_REGISTRATION will): a request of another exchange
// type reaches the responder's owner as a Request event, its answer comes
// back as a Response, a retransmitted request gets the stored answer).
func TestOwnerExchange(t *testing.T) {
	a, b, si, sr := establishPair(t, Limits{})
	vid := &wire.VendorID{Data: []byte("groupvpn")}
	out, err := a.Request(si, wire.ExchangeGSARegistration, []wire.Payload{vid}, t0)
	if err != nil {
		t.Fatal(err)
	}
	req := out.Send[0].Data
	o := b.Handle(addrA, req, t0)
	if len(o.Events) != 1 {
		t.Fatalf("responder events %v", o.Events)
	}
	rq, ok := o.Events[0].Event.(Request)
	if !ok || rq.Exchange != wire.ExchangeGSARegistration || len(rq.Payloads) != 1 {
		t.Fatalf("%#v", o.Events[0].Event)
	}
	if o := b.Handle(addrA, req, t0); len(o.Send) != 0 {
		t.Fatal("answered before the owner did")
	}
	resp, err := b.Respond(sr, []wire.Payload{&wire.Notify{NotifyType: 40000, Data: []byte("ok")}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if o := b.Handle(addrA, req, t0); len(o.Send) != 1 || string(o.Send[0].Data) != string(resp.Send[0].Data) {
		t.Fatal("retransmitted request not answered with the stored response")
	}
	o = a.Handle(addrB, resp.Send[0].Data, t0)
	if len(o.Events) != 1 {
		t.Fatalf("initiator events %v", o.Events)
	}
	if r, ok := o.Events[0].Event.(Response); !ok || r.Payloads[0].(*wire.Notify).NotifyType != 40000 {
		t.Fatalf("%#v", o.Events[0].Event)
	}
}

// proves: G3 (issue 17: an established SA expires at its lifetime, and the
// timer heap keeps one live entry per SA however often it is re-armed).
func TestLifetimeAndTimers(t *testing.T) {
	cfg := pskConfig()
	cfg.Lifetime = time.Hour
	a, b := pair(t, cfg, pskConfig(), Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	si, _ := established(t, Exchange(a, b, a, out, t0))
	for i := 0; i < 500; i++ {
		o, err := a.Liveness(si, t0)
		if err != nil {
			t.Fatal(err)
		}
		Exchange(a, b, a, o, t0)
	}
	if len(a.timers) > 2*len(a.gen)+64 {
		t.Fatalf("%d timers for %d SAs", len(a.timers), len(a.gen))
	}
	evs := a.Tick(t0.Add(time.Hour))
	if len(evs.Events) != 1 || evs.Events[0].Event != (Expired{}) || len(a.sas) != 0 {
		t.Fatalf("expiry: %v", evs.Events)
	}
}

// proves: G3 (issue 17: NAT traversal (RFC 7296 §2.23): with a NAT
// between them (the initiator's own address is not the one the responder
// sees), both detect it from the NAT_DETECTION hashes, the initiator moves
// to port 4500 for IKE_AUTH and the responder follows once that message
// authenticates; a message from port 4500 that does not authenticate moves
// nothing; without NATT nothing moves).
func TestNATTraversal(t *testing.T) {
	ca, cb := pskConfig(), pskConfig()
	ca.NATT, cb.NATT = true, true
	behindNAT := netip.MustParseAddrPort("10.0.0.1:500") // a's own idea of its address
	a, err := NewEndpoint(ca, behindNAT, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewEndpoint(cb, addrB, Limits{})
	natAddr := func(p Packet) netip.AddrPort { // the NAT maps a's ports to 127.0.0.1
		if p.NATT {
			return netip.AddrPortFrom(addrA.Addr(), NATTPort)
		}
		return addrA
	}
	_, out, _ := a.Initiate(addrB, t0)
	var evs []SAEvent
	for round := 0; len(out.Send) > 0 && round < 10; round++ {
		var back Output
		for _, p := range out.Send {
			if p.To.Port() != addrB.Port() && p.To != netip.AddrPortFrom(addrB.Addr(), NATTPort) {
				t.Fatalf("sent to %s", p.To)
			}
			// A forged message from a's NAT-T port first: it must not move b.
			b.Handle(netip.AddrPortFrom(addrA.Addr(), NATTPort), append(append([]byte{}, p.Data[:len(p.Data)-1]...), p.Data[len(p.Data)-1]^1), t0)
			o := b.Handle(natAddr(p), p.Data, t0)
			evs = append(evs, o.Events...)
			back.Send = append(back.Send, o.Send...)
		}
		out = Output{}
		for _, p := range back.Send {
			from := addrB
			if p.NATT {
				from = netip.AddrPortFrom(addrB.Addr(), NATTPort)
			}
			o := a.Handle(from, p.Data, t0)
			evs = append(evs, o.Events...)
			out.Send = append(out.Send, o.Send...)
		}
	}
	si, sr := established(t, evs)
	if !si.Info().NATT || si.Peer().Port() != NATTPort || !sr.Info().NATT || sr.Peer() != netip.AddrPortFrom(addrA.Addr(), NATTPort) {
		t.Fatalf("did not move to 4500: initiator %s %v, responder %s %v", si.Peer(), si.Info().NATT, sr.Peer(), sr.Info().NATT)
	}
	o, _ := b.Liveness(sr, t0)
	if len(o.Send) != 1 || !o.Send[0].NATT || o.Send[0].To.Port() != NATTPort {
		t.Fatalf("responder's request not on the NAT-T port: %+v", o.Send)
	}
	// Without NATT: no NAT_DETECTION, nobody moves.
	x, y := pair(t, pskConfig(), pskConfig(), Limits{})
	_, out, _ = x.Initiate(addrB, t0)
	xi, _ := established(t, Exchange(x, y, x, out, t0))
	if xi.Info().NATT || xi.Peer() != addrB {
		t.Fatal("moved without NATT")
	}
}

// proves: G3 (issue 17: the slot G-IKEv2 uses: with AuthExchange GSA_AUTH
// the second exchange is GSA_AUTH (RFC 9838 §2.3), the initiator's
// AuthRequest payloads reach the responder's OnAuth with the authenticated
// identity, OnAuth's payloads come back in the response as a Response
// event, and an OnAuth refusal answers with its notification and
// establishes nothing).
func TestGSAAuthSlot(t *testing.T) {
	ca, cb := pskConfig(), pskConfig()
	ca.AuthExchange, cb.AuthExchange = wire.ExchangeGSAAuth, wire.ExchangeGSAAuth
	idg := &wire.ID{Which: wire.PayloadIDg, IDType: wire.IDKeyID, Data: []byte("group-1234")}
	ca.AuthRequest = []wire.Payload{idg}
	var seen []wire.Payload
	var seenID *Identity
	cb.OnAuth = func(peer *Identity, _ *x509.Certificate, req []wire.Payload) ([]wire.Payload, error) {
		seen, seenID = req, peer
		return []wire.Payload{&wire.Notify{NotifyType: 40001, Data: []byte("policy")}}, nil
	}
	a, b := pair(t, ca, cb, Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	if m, _ := wire.Parse(out.Send[0].Data); m.Header.Exchange != wire.ExchangeIKESAInit {
		t.Fatal("first exchange is not IKE_SA_INIT")
	}
	evs := Exchange(a, b, a, out, t0)
	established(t, evs)
	if wire.Find(seen, wire.PayloadIDg) == nil || !seenID.equal(AddrIdentity(addrA.Addr())) {
		t.Fatalf("OnAuth saw %v from %s", seen, seenID)
	}
	var resp *Response
	for _, ev := range evs {
		if r, ok := ev.Event.(Response); ok {
			resp = &r
		}
	}
	if resp == nil || resp.Exchange != wire.ExchangeGSAAuth || len(wire.Notifies(resp.Payloads)) != 1 {
		t.Fatalf("response %+v", resp)
	}
	cb.OnAuth = func(*Identity, *x509.Certificate, []wire.Payload) ([]wire.Payload, error) {
		return nil, &Refusal{Notify: wire.NotifyAuthorizationFailed, Err: errors.New("not a member")}
	}
	_, out, _ = a.Initiate(addrB, t0)
	for _, ev := range Exchange(a, b, a, out, t0) {
		if f, ok := ev.Event.(Failed); !ok {
			t.Fatalf("%#v", ev.Event)
		} else if ev.SA.initiator && !errors.Is(f.Err, ErrRefused) {
			t.Fatal(f.Err)
		}
	}
	if len(a.SAs()) != 1 || len(b.SAs()) != 1 {
		t.Fatalf("SAs %d %d", len(a.SAs()), len(b.SAs()))
	}
}
