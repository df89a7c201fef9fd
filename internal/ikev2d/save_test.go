package ikev2d

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// countingStore is a ks.Store counting what is written.
type countingStore struct {
	mu                   sync.Mutex
	saveGroups, saveKeys int
	membersWritten       int
	lastMembers          int
}

func (c *countingStore) LoadGroups() ([]*ks.GroupState, error) { return nil, nil }
func (c *countingStore) SaveGroup(gs *ks.GroupState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saveGroups++
	c.membersWritten += len(gs.Members)
	c.lastMembers = len(gs.Members)
	return nil
}
func (c *countingStore) SaveKeys(*ks.GroupState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saveKeys++
	return nil
}
func (c *countingStore) ReserveSeq(_ string, n uint32) (uint32, uint32, error) { return 1, n, nil }
func (c *countingStore) counts() (groups, keys, members, last int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveGroups, c.saveKeys, c.membersWritten, c.lastMembers
}

// proves: O4, S6 (issue 17, review finding 5: a registration does not
// copy and rewrite the whole group on the KS's loop: 200 members
// registering write O(N) members in all, the members are written off the
// loop at most once per ks.SaveInterval, and the keys (Sender-IDs moved)
// before each answer); issue 18: each member is written once, in the
// delta of the members changed since the last save (ks.Server.DeltaState))
func TestRegistrationSavesNotProportionalToMembers(t *testing.T) {
	const n = 200
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
			Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.%d.%d:0", 30+i/250, 1+i%250))}, Dataplane: dp})
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
	var members int
	kr.Do(ctx, func() { members = len(kr.Server().MemberAddrs("G2")) })
	if members != n {
		t.Fatalf("%d members registered, want %d", members, n)
	}
	// The KS's clock has not moved: the members registered after the
	// first are written together once it has.
	clock.Add(int64(2 * ks.SaveInterval))
	kr.Do(ctx, func() {}) // the loop wakes, its timer sees the new time within a second
	waitFor(t, "the queued member save", func() bool { _, _, written, _ := st.counts(); return written >= n })
	groups, keys, written, _ := st.counts()
	t.Logf("200 registrations: %d SaveGroup (%d members in all), %d SaveKeys", groups, written, keys)
	if written > n {
		t.Fatalf("%d members written for %d registrations: members are written again that did not change", written, n)
	}
	if keys < n {
		t.Fatalf("%d SaveKeys for %d registrations that were given Sender-IDs: keys not written before the answer", keys, n)
	}
}
