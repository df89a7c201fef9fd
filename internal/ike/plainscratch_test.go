package ike

import (
	"testing"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1 (issue 18: a PSK message 5 or 6 decrypted in the Endpoint's
// scratch, not a buffer per registration) — after main modes with several
// initiators through one responder, each scratch reused by the next,
// every SA on both sides holds its peer's identity as sent (nothing of
// the decrypted message aliased in the scratch), and neither scratch
// keeps a decrypted octet once a message was handled.
func TestPSKMainModeDecryptsInScratch(t *testing.T) {
	er, err := NewEndpoint(pskConfig(), addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var inits []*Endpoint
	for i := range 5 {
		ei, err := NewEndpoint(pskConfig(), memberAddr(i), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, out, err := ei.Initiate(addrR, t0)
		if err != nil {
			t.Fatal(err)
		}
		Exchange(ei, er, ei, out, t0)
		if len(ei.SAs()) != 1 {
			t.Fatalf("initiator %d: main mode did not complete", i)
		}
		if ei.sh.scratch.plain != [maxPlain]byte{} {
			t.Fatalf("initiator %d: message 6's plaintext left in the scratch", i)
		}
		inits = append(inits, ei)
	}
	if er.sh.scratch.plain != [maxPlain]byte{} {
		t.Fatal("message 5's plaintext left in the responder's scratch")
	}
	for i, ei := range inits {
		si := ei.SAs()[0]
		sr := er.Lookup(si.Cookies())
		if sr == nil || !sameID(sr.Info().PeerID, isakmp.AddrID(memberAddr(i).Addr())) || !sameID(si.Info().PeerID, isakmp.AddrID(addrR.Addr())) {
			t.Fatalf("main mode %d: peer identities %v and %v after the scratch was reused", i, sr.Info().PeerID, si.Info().PeerID)
		}
	}
}
