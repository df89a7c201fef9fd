package ikev2d

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/store"
)

// proves: G4, O4 (issue 17: persistence for G-IKEv2 groups: a KS router
// restarted on the same state file keeps its keys, its members and its
// Rekey SA; its next GSA_REKEY carries a Message ID above every one sent
// before the restart, so the member that registered before it accepts it
// rather than dropping it as a replay)
func TestRouterRestartKeepsRekeySA(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ikev2d.db")
	group := ksGroup(t)
	startKS := func() (*Router, *store.Store, context.CancelFunc, chan struct{}) {
		st, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{group}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { kr.Run(c); close(done) }()
		return kr, st, cancel, done
	}
	kr, st, stop, done := startKS()
	dp := sadb.NewMemory()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.4:0")}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	run(t, gr)
	status := func() (s MemberStatus) { gr.Do(ctx, func() { s = gr.Members()[0] }); return }
	waitFor(t, "registration", func() bool { return status().Registered })
	for i := 0; i < 2; i++ {
		var rerr error
		kr.Do(ctx, func() { rerr = kr.Rekey("G2") })
		if rerr != nil {
			t.Fatal(rerr)
		}
		waitFor(t, "rekey before the restart", func() bool { return status().Rekeys == uint64(i+1) })
	}
	var before uint32
	kr.Do(ctx, func() { before = kr.Server().Seq("G2") })
	stop()
	<-done
	st.Close()

	kr, st, stop, done = startKS()
	defer func() { stop(); <-done; st.Close() }()
	var members int
	var seq uint32
	kr.Do(ctx, func() {
		s, _ := kr.Server().State("G2", time.Now())
		members, seq = len(s.Members), kr.Server().Seq("G2")
	})
	if members != 1 || seq < before {
		t.Fatalf("after the restart: %d members, seq %d (was %d)", members, seq, before)
	}
	var rerr error
	kr.Do(ctx, func() { rerr = kr.Rekey("G2") })
	if rerr != nil {
		t.Fatal(rerr)
	}
	waitFor(t, "the restarted KS's rekey accepted", func() bool { return status().Rekeys == 3 })
	var spis []uint32
	kr.Do(ctx, func() {
		s, _ := kr.Server().State("G2", time.Now())
		for _, k := range s.TEKs {
			spis = append(spis, k.SPI)
		}
	})
	if !slices.Contains(tekSPIs(dp, "G2"), spis[0]) {
		t.Fatalf("the member holds %v, the restarted KS's TEK is %v", tekSPIs(dp, "G2"), spis)
	}
	if s := status().Stats; s.Replayed != 0 {
		t.Fatalf("replays counted: %+v", s)
	}
}
