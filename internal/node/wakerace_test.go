package node

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: S2 (issue 18, review of 386d51c: a goroutine posting (as lookupSource or Do do) while the loop leaves
// direct mode can set a past read deadline on the socket after leaveDirect
// cleared it: the reader goroutine then gets a timeout and returns, and the
// socket was never read again: 15 of 150 runs deaf before the fix)
func TestRefreshDuringWakeKeepsSocketRead(t *testing.T) {
	ksAddr := netip.MustParseAddr("127.0.0.1")
	g := ksGroup(t, ksAddr)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 213)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deaf := 0
	const iters = 150
	for it := range iters {
		ctx, cancel := context.WithCancel(context.Background())
		kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
			KS: []ks.GroupConfig{g}})
		if err != nil {
			t.Fatal(err)
		}
		ran := make(chan error, 1)
		go func() { ran <- kn.Run(ctx) }()
		kn.Do(ctx, func() {})
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !stop.Load() {
				kn.post(&command{f: func() {}})
			}
		}()
		first := kn.Addrs()[0]
		second := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.214"), 0)
		kn.Do(ctx, func() {
			if _, _, err := kn.Refresh([]netip.AddrPort{kn.socks[0].local, second}); err != nil {
				t.Error(err)
			}
		})
		stop.Store(true)
		<-done
		var io *sockIO
		kn.Do(ctx, func() { io = &kn.socks[0].io })
		before := io.readDatagrams.Load()
		conn.WriteToUDPAddrPort([]byte("ping"), first)
		deadline := time.Now().Add(time.Second)
		for io.readDatagrams.Load() == before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if io.readDatagrams.Load() == before {
			deaf++
			t.Logf("iteration %d: %s no longer read after Refresh", it, first)
		}
		cancel()
		<-ran
	}
	if deaf > 0 {
		t.Fatalf("%d of %d: the first socket went deaf", deaf, iters)
	}
}
