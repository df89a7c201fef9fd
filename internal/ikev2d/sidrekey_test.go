package ikev2d

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: E1, O4 (issue 18 review: a rekey's write before send held the
// keys alone, so members registered since the last save of the members,
// who carry their Sender-IDs into the rekey's keys, were unknown to a KS
// restarted after a crash, which gave their IDs out again under those
// keys) — the rekey writes the members with its keys.
func TestRekeyWritesMembersWithKeys(t *testing.T) {
	const n = 3
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	st := &countingStore{}
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Store: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	for i := 0; i < n; i++ {
		dp := sadb.NewMemory()
		gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
			Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.31.%d:0", 1+i))}, Dataplane: dp})
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { gr.Run(c); close(done) }()
		waitFor(t, fmt.Sprintf("registration %d", i), func() bool { return len(dp.TEKs()) > 0 })
		cancel()
		<-done
	}
	// The KS's clock has not moved: no periodic save of the members yet.
	groups, _, _, _ := st.counts()
	var rerr error
	kr.Do(ctx, func() { rerr = kr.Rekey("G2") })
	if rerr != nil {
		t.Fatal(rerr)
	}
	after, _, _, last := st.counts()
	if after == groups || last != n {
		t.Fatalf("the rekey's write: %d SaveGroup (%d before), last with %d members; want one with the %d members", after, groups, last, n)
	}
}
