package ike

import (
	"crypto/rand"
	"fmt"
	"testing"
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
