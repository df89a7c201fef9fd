package ikev2

import (
	"net/netip"
	"testing"
	"time"
)

// fuzzSeeds are real messages: an IKE_SA_INIT request, its response, an
// IKE_AUTH request and response, an INFORMATIONAL request and response.
func fuzzSeeds(t testing.TB) [][]byte {
	a, err := NewEndpoint(pskConfig(), addrA, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewEndpoint(pskConfig(), addrB, Limits{})
	_, out, _ := a.Initiate(addrB, t0)
	var seeds [][]byte
	from, to := a, b
	var si *SA
	for len(out.Send) > 0 {
		seeds = append(seeds, out.Send[0].Data)
		next := to.Handle(from.local, out.Send[0].Data, t0)
		for _, ev := range next.Events {
			if e, ok := ev.Event.(Established); ok && e.Info.Initiator {
				si = ev.SA
			}
		}
		out, from, to = next, to, from
	}
	if si == nil {
		t.Fatal("seed exchange failed")
	}
	out, _ = a.Liveness(si, t0)
	seeds = append(seeds, out.Send[0].Data, b.Handle(addrA, out.Send[0].Data, t0).Send[0].Data)
	return seeds
}

// FuzzEndpointHandle feeds hostile datagrams to a responder endpoint that
// holds an established SA: as they are, and with the header rewritten to
// the SA's SPIs and next Message ID so they reach its decryption. No input
// may panic, answer with more than one datagram, change the established SA,
// or leave more half-open SAs than the limit. (proves: G3, S1, S2)
func FuzzEndpointHandle(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		limits := Limits{MaxHalfOpen: 4, MaxHalfOpenPerPeer: 2}
		ca, cb := pskConfig(), pskConfig()
		ca.NATT, cb.NATT = true, true // the port-4500 path too
		a, b := pair(t, ca, cb, limits)
		_, out, err := a.Initiate(addrB, t0)
		if err != nil {
			t.Fatal(err)
		}
		si, sr := established(t, Exchange(a, b, a, out, t0))
		inputs := [][]byte{data}
		if len(data) >= 28 {
			d := append([]byte{}, data...)
			copy(d[0:8], si.spii[:])
			copy(d[8:16], sr.spir[:])
			d[19] = d[19]&^0x20 | 0x08 // a request from the initiator
			d[20], d[21], d[22], d[23] = 0, 0, 0, byte(sr.peerMID)
			d[24], d[25], d[26], d[27] = byte(len(d)>>24), byte(len(d)>>16), byte(len(d)>>8), byte(len(d))
			inputs = append(inputs, d)
		}
		for _, in := range inputs {
			for _, src := range []netip.AddrPort{addrA, netip.AddrPortFrom(addrA.Addr(), NATTPort), addrB} {
				out := b.Handle(src, in, t0)
				if len(out.Send) > 1 {
					t.Fatalf("%d datagrams for one input", len(out.Send))
				}
				for _, ev := range out.Events {
					t.Fatalf("unauthenticated input caused %#v", ev.Event)
				}
			}
		}
		b.Tick(t0.Add(time.Minute))
		if sr.State() != StateEstablished || sr.Peer() != addrA || b.HalfOpen() > limits.MaxHalfOpen {
			t.Fatalf("state %s, half-open %d", sr.State(), b.HalfOpen())
		}
	})
}
