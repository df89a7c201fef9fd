package node

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/kswriter"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/isakmp"
)

// registerSIDs makes one GROUPKEY-PULL registration through the node's
// KS policy (what gdoi.Serve asks for message 4) and returns the 16-bit
// and wider sender IDs it got, or the error.
func registerSIDs(t *testing.T, p *pullPolicy, peer netip.Addr, now time.Time) ([]uint32, error) {
	t.Helper()
	p.now = now
	_, kd, err := p.Keys(ike.Info{Peer: netip.AddrPortFrom(peer, 848)}, isakmp.GroupID(1234), 1)
	if err != nil {
		return nil, err
	}
	sp := kd.Packet(isakmp.KDSID, nil)
	if sp == nil {
		t.Fatal("no SID key packet")
	}
	var ids []uint32
	for _, a := range sp.Attributes {
		if a.Type == isakmp.SIDValue {
			v, _ := a.Uint()
			ids = append(ids, uint32(v))
		}
	}
	return ids, nil
}

// proves: O4 (issue 18 F4, review of the restart margin: a KS killed
// without its periodic save after thousands of registrations, more than
// any margin, restarted from what its store holds, never hands out again
// an ID that left it under the same key): the node writes a key's raised
// sender-ID mark, keys only, before the answer leaves, once a block
func TestKSCrashAfterRegistrationsRepeatsNoSenderID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.db")
	grp := ksGroup(t, netip.MustParseAddr("127.0.0.13"))
	now := time.Now()
	seen := map[uint32]netip.Addr{}
	var timed []*timedStore
	for life := 0; life < 3; life++ {
		st, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv := ks.New(ks.Options{})
		if err := srv.AddGroup(grp, now); err != nil {
			t.Fatal(err)
		}
		saved, err := st.LoadGroups()
		if err != nil {
			t.Fatal(err)
		}
		for _, gs := range saved {
			if err := srv.Restore(gs, now); err != nil {
				t.Fatal(err)
			}
		}
		// The writer's goroutine never runs: no periodic save lands.
		ts := &timedStore{Store: st}
		timed = append(timed, ts)
		p := &pullPolicy{ks: srv, saver: kswriter.New(ts, nil)}
		for i := 0; i < 5000; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(life), byte(i >> 8), byte(i)})
			ids, err := registerSIDs(t, p, a, now)
			if err != nil {
				t.Fatalf("life %d registration %d: %v", life, i, err)
			}
			for _, id := range ids {
				if o, ok := seen[id]; ok {
					t.Fatalf("life %d: sender ID %d handed out to %s and again to %s under the same key", life, id, o, a)
				}
				seen[id] = a
			}
		}
		st.Close() // killed: nothing but the synchronous writes is on disk
		now = now.Add(time.Second)
	}
	for i, ts := range timed {
		// 5,000 one-ID registrations: a write per block, the blocks
		// growing from 16 IDs after the restart to 1,024 (ks
		// sidReserveBlock): six for the first 1,008 IDs, then one per
		// 1,024.
		if ts.n < 9 || ts.n > 11 {
			t.Errorf("life %d: %d keys-only writes for 5,000 registrations, want 10 (one a block)", i, ts.n)
		}
		t.Logf("life %d: %d keys-only writes, %v each on average, %v at most", i, ts.n, ts.total/time.Duration(max(ts.n, 1)), ts.max)
	}
}

// timedStore times SaveKeys.
type timedStore struct {
	ks.Store
	n          int
	total, max time.Duration
}

func (s *timedStore) SaveKeys(g *ks.GroupState) error {
	t0 := time.Now()
	err := s.Store.SaveKeys(g)
	d := time.Since(t0)
	s.n++
	s.total += d
	s.max = max(s.max, d)
	return err
}

// failingStore refuses every write.
type failingStore struct{ ks.Store }

func (failingStore) SaveKeys(*ks.GroupState) error { return errors.New("disk full") }

// proves: O4 (issue 18 F4: an ID above the written mark never leaves:
// when the mark's write fails the registration is refused, and the next
// registration writes again)
func TestSIDReservationWriteFailureRefuses(t *testing.T) {
	srv := ks.New(ks.Options{})
	if err := srv.AddGroup(ksGroup(t, netip.MustParseAddr("127.0.0.13")), time.Now()); err != nil {
		t.Fatal(err)
	}
	p := &pullPolicy{ks: srv, saver: kswriter.New(failingStore{}, nil)}
	for i := 0; i < 2; i++ {
		if ids, err := registerSIDs(t, p, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), time.Now()); err == nil {
			t.Fatalf("registration %d answered with IDs %v though the mark was not written", i, ids)
		}
	}
}
