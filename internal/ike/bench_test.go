package ike

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// mainModeOnce runs one complete main mode between two fresh endpoints in
// memory and fails b if it does not establish.
func mainModeOnce(b *testing.B, cfgI, cfgR *Config) {
	ei, _ := NewEndpoint(cfgI, addrI, Limits{})
	er, _ := NewEndpoint(cfgR, addrR, Limits{})
	_, out, err := ei.Initiate(addrR, t0)
	if err != nil {
		b.Fatal(err)
	}
	established := 0
	for _, ev := range Exchange(ei, er, ei, out, t0) {
		if _, ok := ev.Event.(Established); ok {
			established++
		}
	}
	if established != 2 {
		b.Fatalf("established %d sides", established)
	}
}

// BenchmarkMainMode measures one complete main mode, both sides, per suite;
// BenchmarkMainModeCeiling measures the public-key work alone that the same
// exchange cannot avoid: two DH key pairs and agreements, and for signature
// suites two signatures and two verifications.
func benchSuites() []Suite {
	return []Suite{
		{KeyBits: 128, Hash: SHA256, Group: 14, Auth: AuthPSK},
		{KeyBits: 256, Hash: SHA256, Group: 19, Auth: AuthPSK},
		{KeyBits: 256, Hash: SHA384, Group: 20, Auth: AuthPSK},
		{KeyBits: 128, Hash: SHA256, Group: 14, Auth: AuthRSA},
		{KeyBits: 256, Hash: SHA256, Group: 19, Auth: AuthECDSA256},
		{KeyBits: 256, Hash: SHA384, Group: 20, Auth: AuthECDSA384},
	}
}

func BenchmarkMainMode(b *testing.B) {
	for _, s := range benchSuites() {
		creds := benchCreds(b, s.Auth)
		cfg := &Config{Suites: []Suite{s}, Creds: creds}
		b.Run(s.String(), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				mainModeOnce(b, cfg, cfg)
			}
		})
	}
}

func BenchmarkMainModeCeiling(b *testing.B) {
	for _, s := range benchSuites() {
		creds := benchCreds(b, s.Auth)
		g, _ := GroupByID(s.Group)
		h := make([]byte, 32)
		b.Run(s.String(), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				pa, ka, _ := g.GenerateKey(rand.Reader)
				pb, kb, _ := g.GenerateKey(rand.Reader)
				if _, err := pa.Shared(kb); err != nil {
					b.Fatal(err)
				}
				if _, err := pb.Shared(ka); err != nil {
					b.Fatal(err)
				}
				if s.Auth.signature() {
					for j := 0; j < 2; j++ {
						sig, err := sign(rand.Reader, s.Auth, creds.Key, h)
						if err != nil {
							b.Fatal(err)
						}
						if err := verify(s.Auth, creds.Key.Public(), h, sig); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
}

func benchCreds(b *testing.B, a AuthMethod) Credentials {
	switch a {
	case AuthPSK:
		return Credentials{PSK: pskFor("benchmark key")}
	case AuthRSA:
		return pki(b).creds("rsa")
	}
	c := pki(b).creds(a.String())
	if c.Key == nil {
		panic(fmt.Sprint("no test key for ", a))
	}
	return c
}

// BenchmarkResponderMainMode is a key server's share of one main mode:
// messages 1, 3 and 5 of a new member handled by the responder's Endpoint
// (in memory, no sockets; the member's own steps are not timed), against
// "crypto", the cryptography the same exchange cannot avoid on the
// responder, timed alike: an ECP-256 key pair and agreement, six
// HMAC-SHA-256 (SKEYID, SKEYID_d/a/e, HASH_I checked, HASH_R) and the
// AES-256-CBC decryption of message 5 and encryption of message 6, of
// their real sizes (issue 18: the KS's CPU per registration). The
// responder keeps every SA, as a key server does.
func BenchmarkResponderMainMode(b *testing.B) {
	cfgR := &Config{Suites: []Suite{ksSuite()}, Creds: Credentials{PSK: pskFor("k")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	cfgI := &Config{Suites: []Suite{ksSuite()}, Creds: Credentials{PSK: pskFor("k")}, DOI: isakmp.DOIGDOI}
	// One exchange for the sizes of messages 5 and 6.
	var mm5, mm6 int
	{
		er, _ := NewEndpoint(cfgR, addrR, Limits{})
		ei, _ := NewEndpoint(cfgI, addrI, Limits{})
		_, out, _ := ei.Initiate(addrR, t0)
		for n := 1; len(out.Send) > 0; n++ {
			to, from := er, addrI
			if n%2 == 0 {
				to, from = ei, addrR
			}
			switch n {
			case 5:
				mm5 = len(out.Send[0].Data) - isakmp.HeaderLen
			case 6:
				mm6 = len(out.Send[0].Data) - isakmp.HeaderLen
			}
			out = to.Handle(from, out.Send[0].Data, t0)
		}
		if mm5 == 0 || mm6 == 0 {
			b.Fatal("main mode did not complete")
		}
	}
	// endpoint-100k: the same against a responder already holding
	// 100,000 members' established SAs, each with its timer, as a key
	// server at issue 18's scale (the tables' cache misses).
	for _, held := range []int{0, 100000} {
		name := "endpoint"
		if held > 0 {
			name = fmt.Sprintf("endpoint-%dk", held/1000)
		}
		b.Run(name, func(b *testing.B) { benchResponder(b, cfgR, cfgI, held) })
	}
	b.Run("crypto", func(b *testing.B) {
		g, _ := GroupByID(19)
		_, peer, _ := g.GenerateKey(rand.Reader)
		key := make([]byte, 32)
		in, out := make([]byte, mm5), make([]byte, mm6)
		iv := make([]byte, 16)
		b.ReportAllocs()
		for b.Loop() {
			priv, _, err := g.GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := priv.Shared(peer); err != nil {
				b.Fatal(err)
			}
			for range 6 {
				prf(new(scratch), SHA256, key, in[:64])
			}
			if _, err := decrypt(key, iv, in); err != nil {
				b.Fatal(err)
			}
			if _, err := encrypt(key, iv, out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchResponder times messages 1, 3 and 5 of new members handled by one
// responder Endpoint holding held established SAs (fillEstablished, each
// with a timer in the heap) before the first.
func benchResponder(b *testing.B, cfgR, cfgI *Config, held int) {
	er, _ := NewEndpoint(cfgR, addrR, Limits{})
	fillEstablished(er, held)
	for _, sa := range er.sas {
		sa.gen++
		sa.timerAt = t0.Add(time.Hour + time.Duration(sa.icky[3])*time.Second).UnixNano()
		er.timers.push(timerEntry{at: time.Unix(0, sa.timerAt), sa: sa, gen: sa.gen})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		from := memberAddr(i)
		i++
		ei, _ := NewEndpoint(cfgI, from, Limits{})
		_, out, _ := ei.Initiate(addrR, t0)
		b.StartTimer()
		for range 3 {
			o := er.Handle(from, out.Send[0].Data, t0)
			b.StopTimer()
			if len(o.Send) != 1 {
				b.Fatalf("responder sent %d datagrams", len(o.Send))
			}
			out = ei.Handle(addrR, o.Send[0].Data, t0)
			b.StartTimer()
		}
		b.StopTimer()
		if len(ei.SAs()) != 1 {
			b.Fatal("not established")
		}
		b.StartTimer()
	}
}

// BenchmarkResponderMessage1 is a key server's handling of a new member's
// message 1 (the responder SA made and filed, message 2 built) while it
// holds 100,000 established SAs with their timers: main mode's step
// without Diffie-Hellman, where the tables' probes weigh most (issue 18).
// Each half-open SA is removed, untimed, after its message 2.
func BenchmarkResponderMessage1(b *testing.B) {
	er, _ := NewEndpoint(pskConfig(), addrR, Limits{})
	fillEstablished(er, 100000)
	for _, sa := range er.sas {
		sa.gen++
		sa.timerAt = t0.Add(time.Hour + time.Duration(sa.icky[3])*time.Second).UnixNano()
		er.timers.push(timerEntry{at: time.Unix(0, sa.timerAt), sa: sa, gen: sa.gen})
	}
	m1 := mm1(b)
	var out Output
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		pkt := withCookie(m1, uint64(i)<<20|7)
		from := memberAddr(i)
		i++
		clear(out.Send)
		clear(out.Events)
		out.Send, out.Events = out.Send[:0], out.Events[:0]
		b.StartTimer()
		er.HandleInto(&out, from, pkt, t0)
		b.StopTimer()
		if len(out.Send) != 1 || er.halfOpen.Len() != 1 {
			b.Fatalf("%d answers, %d half-open", len(out.Send), er.halfOpen.Len())
		}
		er.remove(er.halfOpen.head)
		b.StartTimer()
	}
}
