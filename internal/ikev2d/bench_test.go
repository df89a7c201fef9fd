package ikev2d

import (
	"context"
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// BenchmarkRouterRegistration: one G-IKEv2 registration (IKE_SA_INIT and
// GSA_AUTH with the keys, ECP-256 and AES-GCM, PSK) per iteration, a new
// member router against one KS router over loopback UDP, both loops
// running: what a KS answers per second including the member's own work.
func BenchmarkRouterRegistration(b *testing.B) {
	ctx := context.Background()
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(b)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		b.Fatal(err)
	}
	run(b, kr)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dp := sadb.NewMemory()
		gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
			Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.16:0")}, Dataplane: dp})
		if err != nil {
			b.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { gr.Run(c); close(done) }()
		for len(dp.TEKs()) == 0 {
			var failed uint64
			gr.Do(ctx, func() { failed = gr.Members()[0].Failures })
			if failed > 0 {
				b.Fatal("registration failed")
			}
		}
		cancel()
		<-done
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}
