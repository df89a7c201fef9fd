package ike

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// Fuzz targets of phase-1 message handling (SPEC S4, issue 11): an
// Endpoint holding an established SA (PSK or ECDSA certificates) and a
// negotiation in progress gets arbitrary datagrams, from its peer's
// address or another, and its timers run. Whatever arrives, nothing
// panics, the tables stay bounded, and the established SA is still there:
// nothing unauthenticated removes it (SPEC S2).
//
//	go test -fuzz FuzzEndpointResponder ./internal/ike/
//	go test -fuzz FuzzEndpointInitiator ./internal/ike/

// detRand makes each iteration's handshake the same, so that the seeds
// carry the cookies of the SAs the iteration builds.
type detRand struct{ r *rand.ChaCha8 }

func (d detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

var fuzzLimits = Limits{MaxHalfOpen: 8, MaxHalfOpenPerPeer: 4}

// fuzzSuites: a PSK suite and an ECDSA certificate suite.
var fuzzSuites = []Suite{
	{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK},
	{KeyBits: 256, Hash: SHA384, Group: 19, Auth: AuthECDSA256},
}

var addr3 = netip.MustParseAddrPort("127.0.0.3:500")

type fuzzWorld struct {
	i, r   *Endpoint
	si, sr *SA      // the established SAs
	msgs   [][]byte // MM1..MM6 as sent
	mm1To3 []byte   // message 1 of the initiator's negotiation toward addr3
}

func fuzzCreds(tb testing.TB, a AuthMethod) Credentials {
	c := Credentials{PSK: pskFor("k")}
	if a != AuthPSK {
		c = pki(tb).creds(a.String())
		c.PSK = pskFor("k")
	}
	return c
}

// newFuzzWorld runs main mode between addrI and addrR with deterministic
// randomness, then starts another one from addrI toward addr3.
func newFuzzWorld(tb testing.TB, s Suite) *fuzzWorld {
	mk := func() *Config {
		return &Config{Suites: []Suite{s}, Creds: fuzzCreds(tb, s.Auth), Rand: detRand{rand.NewChaCha8([32]byte{7})}}
	}
	w := &fuzzWorld{}
	var err error
	if w.i, err = NewEndpoint(mk(), addrI, fuzzLimits); err != nil {
		tb.Fatal(err)
	}
	if w.r, err = NewEndpoint(mk(), addrR, fuzzLimits); err != nil {
		tb.Fatal(err)
	}
	_, out, err := w.i.Initiate(addrR, t0)
	if err != nil {
		tb.Fatal(err)
	}
	a, b := w.i, w.r
	for len(out.Send) > 0 {
		var next Output
		for _, p := range out.Send {
			w.msgs = append(w.msgs, p.Data)
			o := b.Handle(a.sh.local, p.Data, t0)
			next.Send = append(next.Send, o.Send...)
		}
		out, a, b = next, b, a
	}
	if len(w.i.SAs()) != 1 || len(w.r.SAs()) != 1 {
		tb.Fatalf("fuzz world: main mode did not complete (%d messages)", len(w.msgs))
	}
	w.si, w.sr = w.i.SAs()[0], w.r.SAs()[0]
	_, out, err = w.i.Initiate(addr3, t0)
	if err != nil {
		tb.Fatal(err)
	}
	w.mm1To3 = out.Send[0].Data
	return w
}

// fuzzSeeds adds, for both suites, real datagrams: MM1..MM6, a message 2
// for the negotiation toward addr3, protected Informationals (DPD, a
// notification) of the peer, unprotected notifications with the SA's
// cookies, a GROUPKEY-PULL-like phase-2 message and the 32-octet datagram
// of issue 11 item 4b, and an unsolicited R-U-THERE-ACK. The peer's own protected Delete is left out: it
// is authenticated, and would rightly remove the SA.
func fuzzSeeds(f *testing.F, toResponder bool) {
	for k, s := range fuzzSuites {
		w := newFuzzWorld(f, s)
		peer, self := w.si, w.sr
		if !toResponder {
			peer, self = w.sr, w.si
		}
		var seeds [][]byte
		seeds = append(seeds, w.msgs...)
		if dpd, err := peer.protected([]isakmp.Payload{peer.dpdNotify(isakmp.NotifyRUThere, 1)}); err == nil {
			seeds = append(seeds, dpd)
		}
		// An R-U-THERE-ACK nothing asked for (issue 14 item 2: keepalive).
		if ack, err := peer.protected([]isakmp.Payload{peer.dpdNotify(isakmp.NotifyRUThereAck, 1)}); err == nil {
			seeds = append(seeds, ack)
		}
		if n, err := peer.Notify(isakmp.NotifyInvalidIDInformation, nil); err == nil {
			seeds = append(seeds, n)
		}
		if p2, err := peer.EncryptPhase2(isakmp.ExchangePull, 0x99, []isakmp.Payload{&isakmp.Hash{Data: make([]byte, 32)}, &isakmp.Nonce{Data: make([]byte, 16)}}); err == nil {
			seeds = append(seeds, p2)
		}
		for _, nt := range []isakmp.NotifyType{isakmp.NotifyInvalidCookie, isakmp.NotifyNoProposalChosen, isakmp.NotifyInvalidPayloadType} {
			seeds = append(seeds, forged(self, isakmp.ExchangeInformational, &isakmp.Notify{DOI: isakmp.DOIIPsec, Protocol: isakmp.ProtoISAKMP, NotifyType: nt,
				SPI: append(self.icky[:], self.rcky[:]...)}))
		}
		seeds = append(seeds, forged(self, isakmp.ExchangeIdentityProt, &isakmp.RawPayload{PayloadType: 99}))
		if !toResponder {
			// A message 2 for the negotiation toward addr3.
			r3, _ := NewEndpoint(&Config{Suites: []Suite{s}, Creds: fuzzCreds(f, s.Auth)}, addr3, Limits{})
			if o := r3.Handle(addrI, w.mm1To3, t0); len(o.Send) == 1 {
				seeds = append(seeds, o.Send[0].Data)
			}
		}
		for _, sd := range seeds {
			f.Add(uint8(k), uint8(0), sd)
			f.Add(uint8(k), uint8(3), sd)
		}
	}
}

// fuzzEndpoint delivers data to e (one side of w) as the flags say and
// checks the invariants.
func fuzzEndpoint(t *testing.T, w *fuzzWorld, e *Endpoint, sa *SA, peer netip.AddrPort, flags uint8, data []byte) {
	from := peer
	if flags&1 != 0 {
		from = netip.MustParseAddrPort("192.0.2.66:500")
	}
	if flags&2 != 0 {
		from = addr3
	}
	now := t0
	for n := range 1 + int(flags>>2&3) { // once to four times
		out := e.Handle(from, data, now)
		for _, p := range out.Send {
			if len(p.Data) > 65535 {
				t.Fatalf("a datagram of %d octets", len(p.Data))
			}
		}
		if flags&16 != 0 && n == 0 {
			now = now.Add(time.Minute) // timers run in between
			e.Tick(now)
		}
	}
	e.Tick(now.Add(time.Hour))
	icky, rcky := sa.Cookies()
	if e.Lookup(icky, rcky) != sa || sa.State() != StateEstablished {
		t.Fatalf("the established SA was removed or changed: state %s", sa.State())
	}
	if len(e.sas) > fuzzLimits.MaxHalfOpen+2 || e.halfOpen.Len() > fuzzLimits.MaxHalfOpen ||
		len(e.pending) > fuzzLimits.MaxHalfOpen+1 || len(e.timers) > 2*(len(e.sas)+len(e.pending))+64 {
		t.Fatalf("tables: %d SAs, %d half-open, %d pending, %d timers", len(e.sas), e.halfOpen.Len(), len(e.pending), len(e.timers))
	}
	checkHalfOpen(t, e)
}

// proves: S4, S1, S2 (issue 11) — phase-1 message handling of a responder
// (the key server's side) survives any datagram.
func FuzzEndpointResponder(f *testing.F) {
	fuzzSeeds(f, true)
	f.Fuzz(func(t *testing.T, suite, flags uint8, data []byte) {
		w := newFuzzWorld(t, fuzzSuites[int(suite)%len(fuzzSuites)])
		fuzzEndpoint(t, w, w.r, w.sr, addrI, flags, data)
	})
}

// proves: S4, S1, S2 (issue 11) — phase-1 message handling of an
// initiator (a group member) survives any datagram, from its key server's
// address or another, while it also negotiates with a third address.
func FuzzEndpointInitiator(f *testing.F) {
	fuzzSeeds(f, false)
	f.Fuzz(func(t *testing.T, suite, flags uint8, data []byte) {
		w := newFuzzWorld(t, fuzzSuites[int(suite)%len(fuzzSuites)])
		fuzzEndpoint(t, w, w.i, w.si, addrR, flags, data)
	})
}
