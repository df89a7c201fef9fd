package ikev2d

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/version"
)

// restoredStore is a countingStore whose LoadGroups hands back a group of
// n members (a restarted KS).
type restoredStore struct {
	countingStore
	g *ks.GroupState
}

func (r *restoredStore) LoadGroups() ([]*ks.GroupState, error) { return []*ks.GroupState{r.g}, nil }

// ksWithMembers runs a KS router whose group G2 has n members.
func ksWithMembers(t *testing.T, n int) (*Router, *restoredStore) {
	t.Helper()
	now := time.Now()
	g := &ks.GroupState{Name: "G2", ID: 90, UpdatedAt: now}
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Members = append(g.Members, ks.MemberState{Address: a, Port: 500, Identity: a.String(), Version: version.Current.String(),
			Registered: now, LastRegister: now, Registrations: 1, SenderIDs: []uint32{uint32(i + 1)}, SIDBits: 24})
	}
	st := &restoredStore{g: g}
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	return kr, st
}

// A registration given Sender-IDs writes the group's keys before its
// answer (write before send); that write built ks.Server.State, a copy of
// every member, per registration: O(members) on the KS's loop for each.
// It now builds the keys alone (KeysState): the write before the answer
// holds the loop as long with 100,000 members as with 1,000, and a
// registration still completes against the large group, its keys written
// before the answer.
// proves: O4 (issue 18: ikev2d's registration cost does not grow with the members)
func TestRegistrationSaveDoesNotGrowWithMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 members: skipped with -short, runs in make test")
	}
	ctx := context.Background()
	saveTime := func(kr *Router) time.Duration {
		best := time.Hour
		for range 5 {
			kr.Do(ctx, func() {
				start := time.Now()
				if err := kr.ks.save("G2", kr.o.Now(), false); err != nil {
					t.Error(err)
				}
				best = min(best, time.Since(start))
			})
		}
		return best
	}
	small, _ := ksWithMembers(t, 1_000)
	large, st := ksWithMembers(t, 100_000)
	ts, tl := saveTime(small), saveTime(large)
	t.Logf("the write before a registration's answer: %v with 1,000 members, %v with 100,000", ts, tl)
	if tl > 4*ts+2*time.Millisecond {
		t.Errorf("the write before a registration's answer takes %v with 100,000 members, %v with 1,000: it grows with the members", tl, ts)
	}

	_, keysBefore, _, _ := st.counts()
	dp := sadb.NewMemory()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: large.Addrs(), Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.40.1:0")}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	run(t, gr)
	start := time.Now()
	waitFor(t, "a registration with 100,000 members", func() bool { return len(dp.TEKs()) > 0 })
	_, keysAfter, _, _ := st.counts()
	var n, bits int
	large.Do(ctx, func() { n, bits = large.Server().MemberCount("G2"), large.Server().SIDBits("G2") })
	t.Logf("registration 100,001 in %v", time.Since(start))
	if n != 100_001 || keysAfter <= keysBefore {
		t.Fatalf("%d members, %d keys writes before the registration and %d after", n, keysBefore, keysAfter)
	}
	for _, tk := range dp.TEKs() {
		if len(tk.SenderIDs) == 0 || tk.SIDBits != bits {
			t.Fatalf("TEK %#x: sender IDs %v of %d bits, want the group's %d", tk.SPI, tk.SenderIDs, tk.SIDBits, bits)
		}
		for _, id := range tk.SenderIDs {
			// The restored members hold 24-bit IDs 1..100,000: a new
			// ID (fresh keys, chosen width) is no prefix of any.
			if id<<(24-bits) <= 100_000 {
				t.Fatalf("sender ID %d of %d bits is a prefix of a restored member's", id, bits)
			}
		}
	}
}
