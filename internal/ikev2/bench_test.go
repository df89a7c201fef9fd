package ikev2

import (
	"testing"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// BenchmarkHandshake runs IKE_SA_INIT + IKE_AUTH in memory between two
// endpoints (both sides' work: two DH key pairs and shared secrets, key
// derivation, two AUTH computations and checks, four SK operations).
func BenchmarkHandshake(b *testing.B) {
	for _, c := range []struct {
		name  string
		suite Suite
	}{
		{"psk-gcm128-ecp256", Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA2256, Group: 19}},
		{"psk-cbc256-modp2048", Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegHMACSHA2256128, PRF: wire.PRFHMACSHA2256, Group: 14}},
	} {
		b.Run(c.name, func(b *testing.B) {
			x, err := NewEndpoint(pskConfig(c.suite), addrA, Limits{})
			if err != nil {
				b.Fatal(err)
			}
			y, _ := NewEndpoint(pskConfig(c.suite), addrB, Limits{MaxHalfOpen: 1 << 20, MaxHalfOpenPerPeer: 1 << 20})
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, out, err := x.Initiate(addrB, t0)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(Exchange(x, y, x, out, t0)); n != 2 {
					b.Fatalf("%d events", n)
				}
			}
		})
	}
}
