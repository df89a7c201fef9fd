package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S5 (issue 18, review: the count of established phase-1 SAs a
// scrape and `| count` read is len(SAs()) without walking them) —
// Established follows establishment, Delete, INITIAL-CONTACT and expiry.
func TestEstablishedCountFollowsSAs(t *testing.T) {
	check := func(what string, e *Endpoint) {
		t.Helper()
		if got, want := e.Established(), len(e.SAs()); got != want {
			t.Fatalf("%s: Established() %d, %d SAs held", what, got, want)
		}
	}
	p := handshake(t, pskConfig(), pskConfig())
	check("responder after establishment", p.r)
	check("initiator after establishment", p.i)
	if p.r.Established() != 1 {
		t.Fatalf("responder counts %d SAs, want 1", p.r.Established())
	}
	if _, err := p.r.Delete(p.r.SAs()[0], p.now); err != nil {
		t.Fatal(err)
	}
	check("after Delete", p.r)
	p.i.Tick(p.now.Add(48 * time.Hour))
	check("after expiry", p.i)
	gm1 := pskConfig()
	gm1.LocalID = &isakmp.ID{IDType: isakmp.IDFQDN, Data: []byte("gm1")}
	resp, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	a, _ := NewEndpoint(gm1, addrI, Limits{})
	converse(t, a, resp, t0)
	b, _ := NewEndpoint(gm1, netip.MustParseAddrPort("127.0.0.3:500"), Limits{})
	converse(t, b, resp, t0)
	check("after INITIAL-CONTACT", resp)
	if resp.Established() != 1 {
		t.Fatalf("after INITIAL-CONTACT: %d counted, want 1", resp.Established())
	}
	e, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	fillEstablished(e, 1000)
	check("1,000 filled", e)
}
