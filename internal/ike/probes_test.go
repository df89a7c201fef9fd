package ike

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"net/netip"
	"slices"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// registrationProbes plays a key server's share of one registration into
// resp: a member at from runs main mode (messages 1, 3 and 5 into resp)
// and sends two GROUPKEY-PULL messages on the SA (what resp hands its
// owner as Phase2 events). It returns resp's table probes for them.
func registrationProbes(t *testing.T, resp *Endpoint, from netip.AddrPort) tableProbes {
	t.Helper()
	ie, err := NewEndpoint(pskConfig(), from, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	held := resp.Established()
	resp.probes = tableProbes{}
	_, out, err := ie.Initiate(addrR, t0)
	if err != nil {
		t.Fatal(err)
	}
	Exchange(ie, resp, ie, out, t0)
	if len(ie.SAs()) != 1 || resp.Established() != held+1 {
		t.Fatal("main mode did not complete")
	}
	sa := ie.SAs()[0]
	for mid := uint32(1); mid <= 2; mid++ {
		pkt, err := sa.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}})
		if err != nil {
			t.Fatal(err)
		}
		o := resp.Handle(from, pkt, t0)
		if len(o.Events) != 1 {
			t.Fatalf("pull message %d: %d events", mid, len(o.Events))
		}
		if _, ok := o.Events[0].Event.(Phase2); !ok {
			t.Fatalf("pull message %d: event %T", mid, o.Events[0].Event)
		}
	}
	return resp.probes
}

// proves: N1 (issue 18: the KS's CPU per registration grows with its
// members, largely from probes of big tables) — a registration's five
// datagrams into a responder holding 1,000 established SAs probe its
// cookie-pair table 6 times, its half-open SAs' tables (by cookie and
// address, and by address) 3 and 3 times, its identity index twice (7, 4,
// 4 and 3 before: message 1 looked for its cookies among every SA, the
// end of the half-open state read what it deleted, INITIAL-CONTACT looked
// for the identity's SAs in the index).
func TestRegistrationTableProbes(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fillEstablished(resp, 1000)
	want := tableProbes{sas: 6, pending: 3, perPeer: 3, byID: 2}
	for i := range 3 {
		got := registrationProbes(t, resp, memberAddr(5000+i))
		if got != want {
			t.Fatalf("registration %d: %+v probes, want %+v", i, got, want)
		}
	}
	// Its removal (a Delete, an expiry) probes the cookie pairs twice and
	// the index once, not the half-open tables (pending once before).
	sa := resp.byID.get(isakmp.AddrID(memberAddr(5002).Addr()))
	if sa == nil {
		t.Fatal("the last member's SA is not filed under its address")
	}
	resp.probes = tableProbes{}
	resp.remove(sa)
	if want := (tableProbes{sas: 2, byID: 1}); resp.probes != want || resp.Established() != 1002 {
		t.Fatalf("removal: %+v probes, want %+v; %d SAs established", resp.probes, want, resp.Established())
	}
}

// zeroFirst is a cookie MAC whose first sum is all zeros and whose later
// ones are SHA-256's.
type zeroFirst struct {
	hash.Hash
	sums int
}

func (z *zeroFirst) Sum(b []byte) []byte {
	z.sums++
	if z.sums == 1 {
		return append(b, make([]byte, z.Size())...)
	}
	return z.Hash.Sum(b)
}

// proves: S1 (issue 18: message 1 is looked for among the half-open SAs
// only) — a responder never issues the zero cookie, which names no
// responder's choice yet: a MAC that comes out zero makes it take the
// next counter's, and the responder SA made is filed and found under the
// non-zero pair.
func TestResponderCookieNeverZero(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	resp.cookieMAC = &zeroFirst{Hash: sha256.New()}
	out := resp.Handle(addrI, mm1(t), t0)
	if len(out.Send) != 1 || resp.seq != 2 {
		t.Fatalf("%d answers, counter %d: want message 2, the counter's second cookie", len(out.Send), resp.seq)
	}
	h, err := isakmp.ParseHeader(out.Send[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if h.ResponderCookie == (isakmp.Cookie{}) || resp.Lookup(h.InitiatorCookie, h.ResponderCookie) == nil {
		t.Fatalf("responder cookie %x: zero, or not filed", h.ResponderCookie)
	}
	checkHalfOpen(t, resp)
}

// proves: S2 (issue 18: dropOlder finds an identity's SAs from the SA
// that sent INITIAL-CONTACT, not from the index) — whichever SA of an
// identity's list sent it, first, middle or last, every other SA of the
// identity, and no SA of another, is deleted, in the order of the
// identity's list, and the index keeps the sender alone.
func TestDropOlderWalksFromTheSA(t *testing.T) {
	name := []byte("gm-dropolder")
	for pos := range 4 {
		e, _ := NewEndpoint(pskConfig(), addrR, Limits{})
		// Keys enough to protect a Delete: dropOlder sends one to each.
		km := make(keyMaterial, 4*pskSuite().Hash.size())
		id := func() *isakmp.ID { return &isakmp.ID{IDType: isakmp.IDFQDN, Data: bytes.Clone(name)} }
		other := &SA{cfg: e.cfg, sh: &e.sh, suite: pskSuite(), km: km, seeded: true, icky: isakmp.Cookie{0xf0}, state: StateEstablished,
			peerID: &isakmp.ID{IDType: isakmp.IDFQDN, Data: []byte("gm-other")}}
		e.sas[pair{other.icky, other.rcky}] = other
		e.index(other)
		var sas []*SA
		for i := range 4 {
			sa := &SA{cfg: e.cfg, sh: &e.sh, suite: pskSuite(), km: km, seeded: true, icky: isakmp.Cookie{byte(i + 1)}, state: StateEstablished, peerID: id()}
			e.sas[pair{sa.icky, sa.rcky}] = sa
			e.index(sa)
			sas = append(sas, sa)
		}
		sender := sas[pos]
		var want []*SA // the oracle: the identity's list from the index
		for o := e.byID.get(id()); o != nil; o = o.idNext {
			if o != sender {
				want = append(want, o)
			}
		}
		out := e.dropOlder(sender, t0)
		var got []*SA
		for _, ev := range out.Events {
			if _, ok := ev.Event.(Deleted); ok {
				got = append(got, ev.SA)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("sender #%d: deleted %v, want %v", pos, got, want)
		}
		if first := e.byID.get(id()); first != sender || sender.idNext != nil || sender.idPrev != nil ||
			e.byID.get(other.peerID) != other || other.state != StateEstablished || e.Established() != 2 {
			t.Fatalf("sender #%d: the index after dropOlder holds %d SAs", pos, e.Established())
		}
	}
}

// proves: N1 (issue 18: the load generator's memory per member) — an
// initiator's released main-mode state is not kept by its Endpoint (a
// load generator makes one Endpoint per member, which would hold it for
// nothing), a responder's is, once.
func TestOnlyRespondersRecycleTheirState(t *testing.T) {
	p := handshake(t, pskConfig(), pskConfig())
	si, sr := p.i.SAs()[0], p.r.SAs()[0]
	if si.hs != nil || len(p.i.sh.scr().free) != 0 {
		t.Fatalf("initiator: state released %v, %d kept by its Endpoint", si.hs == nil, len(p.i.sh.scr().free))
	}
	sr.release()
	if sr.hs != nil || len(p.r.sh.scr().free) != 1 {
		t.Fatalf("responder: state released %v, %d kept by its Endpoint", sr.hs == nil, len(p.r.sh.scr().free))
	}
	sr.release() // released already: nothing more kept
	if len(p.r.sh.scr().free) != 1 {
		t.Fatalf("%d states kept after a second release", len(p.r.sh.scr().free))
	}
}
