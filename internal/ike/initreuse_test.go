package ike

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// initiatorMainMode runs main mode from ie to resp; it returns the
// initiator's SA and the allocations of ie's calls (Initiate, and Handle
// of messages 2, 4 and 6), with prepare's (the Endpoint's making or
// reset) before them.
func initiatorMainMode(t *testing.T, resp *Endpoint, prepare func() *Endpoint) (*SA, *Endpoint, uint64) {
	t.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a0 := ms.Mallocs
	ie := prepare()
	sa, out, err := ie.Initiate(addrR, t0)
	runtime.ReadMemStats(&ms)
	allocs := ms.Mallocs - a0
	if err != nil {
		t.Fatal(err)
	}
	for len(out.Send) > 0 {
		ro := resp.Handle(ie.sh.local, out.Send[0].Data, t0)
		if len(ro.Send) == 0 {
			break
		}
		runtime.ReadMemStats(&ms)
		a0 = ms.Mallocs
		out = ie.Handle(addrR, ro.Send[0].Data, t0)
		runtime.ReadMemStats(&ms)
		allocs += ms.Mallocs - a0
	}
	if sa.State() != StateEstablished {
		t.Fatalf("initiator in %s", sa.State())
	}
	return sa, ie, allocs
}

// proves: issue 18 (the load generator's CPU per registration) — an
// initiator's main mode from an Endpoint reset (Endpoint.Reset, the load
// generator's, an Endpoint per registration in progress) allocates at
// most 58 times, the Reset included (55 counted), against 91 for one
// from a new Endpoint: the Endpoint, its tables, its scratch with its
// hash states, its logger, the Vendor IDs and message 1's SA payload
// (shared.proposal) are made once.
func TestInitiatorMainModeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	a := netip.MustParseAddr("127.12.0.1")
	var fresh, reset uint64
	var ie *Endpoint
	for range n {
		a = a.Next()
		_, e, allocs := initiatorMainMode(t, resp, func() *Endpoint {
			e, err := NewEndpoint(pskConfig(), netip.AddrPortFrom(a, 848), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			return e
		})
		fresh += allocs
		ie = e
	}
	// runtime.MemStats counts every goroutine's allocations: another
	// test's goroutine still running (a CI run under load once read 58.0x)
	// can only add to a round, so the least of three rounds is the
	// Endpoint's own count.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var r float64
	for round := range 3 {
		reset = 0
		for range n {
			a = a.Next()
			_, _, allocs := initiatorMainMode(t, resp, func() *Endpoint {
				ie.Reset(netip.AddrPortFrom(a, 848))
				return ie
			})
			reset += allocs
		}
		if got := float64(reset) / n; round == 0 || got < r {
			r = got
		}
	}
	f := float64(fresh) / n
	t.Logf("%.1f allocations per initiator's main mode from a new Endpoint, %.2f from one reset (the least of 3 rounds)", f, r)
	if r > 58 {
		t.Fatalf("%.2f allocations per initiator's main mode from an Endpoint reset, want at most 58", r)
	}
}

// proves: issue 18 (an Endpoint reused by the load generator) — an
// Endpoint reset holds nothing of its SAs: no SA, no timer, no
// identity, its counters at zero; a datagram of an SA it held is of no
// SA now; its next main mode is from the new address (the identity the
// responder sees) and establishes as from a new Endpoint, with keys of
// its own.
func TestEndpointResetIsNew(t *testing.T) {
	resp, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	first := netip.MustParseAddrPort("127.13.0.1:848")
	old, ie, _ := initiatorMainMode(t, resp, func() *Endpoint {
		e, err := NewEndpoint(pskConfig(), first, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
	stale, err := old.EncryptPhase2(isakmp.ExchangePull, 77, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	if ie.Established() != 1 || ie.NextTimer().IsZero() {
		t.Fatal("the first main mode left no SA or timer")
	}
	second := netip.MustParseAddrPort("127.13.0.2:848")
	ie.Reset(second)
	if len(ie.sas) != 0 || len(ie.pending) != 0 || len(ie.perPeer) != 0 || ie.halfOpen.n != 0 || len(ie.timers) != 0 ||
		ie.byID.Len() != 0 || ie.Established() != 0 || !ie.NextTimer().IsZero() || ie.Stats != (Stats{}) || ie.probes != (tableProbes{}) {
		t.Fatal("the Endpoint reset holds state of its SAs")
	}
	if out := ie.Handle(addrR, stale, t0); len(out.Events) != 0 || ie.Stats.UnknownSA != 1 {
		t.Fatalf("a datagram of an SA dropped: %+v, %d of no SA", out, ie.Stats.UnknownSA)
	}
	sa, _, _ := initiatorMainMode(t, resp, func() *Endpoint { return ie })
	rs := resp.Lookup(sa.Cookies())
	if rs == nil || rs.Info().PeerID.String() != "ID_IPV4_ADDR 127.13.0.2/32" || rs.Peer() != second {
		t.Fatalf("the responder sees %v from %v", rs.Info().PeerID, rs.Peer())
	}
	if sa == old || sa.icky == old.icky || string(sa.Keys().SKEYIDa) == string(old.Keys().SKEYIDa) {
		t.Fatal("the second main mode is the first's")
	}
	if ie.Established() != 1 {
		t.Fatalf("%d SAs established after the second main mode", ie.Established())
	}
}
