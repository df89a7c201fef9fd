package ikeudp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// proves: groundwork (IKEv1 over real UDP) — two servers on loopback
// complete main mode over real sockets.
func TestMainModeOverLoopbackUDP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 14, Auth: ike.AuthPSK}
	cfg := &ike.Config{Suites: []ike.Suite{s}, Creds: ike.Credentials{
		PSK: func(netip.Addr) ([]byte, bool) { return []byte("loopback secret"), true }}}
	a, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), cfg, ike.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), cfg, ike.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	go b.Run(ctx)
	if err := a.Initiate(ctx, b.Addr()); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*Server{a, b} {
		select {
		case ev := <-srv.Events():
			if _, ok := ev.Event.(ike.Established); !ok {
				t.Fatalf("event %#v", ev.Event)
			}
		case <-ctx.Done():
			t.Fatal("no event")
		}
	}
}
