package ks

import (
	"errors"
	"testing"
	"time"
)

// failKeys is a memStore whose SaveKeys and SaveGroup fail while fail is
// set (a full or read-only disk at the write before send).
type failKeys struct {
	*memStore
	fail bool
}

func (f *failKeys) SaveKeys(g *GroupState) error {
	if f.fail {
		return errors.New("disk full")
	}
	return f.memStore.SaveKeys(g)
}

func (f *failKeys) SaveGroup(g *GroupState) error {
	if f.fail {
		return errors.New("disk full")
	}
	return f.memStore.SaveGroup(g)
}

// failedSaveSim is a sim whose delivery writes to a failKeys store.
func failedSaveSim(t *testing.T, cfg GroupConfig, t0 time.Time) (*sim, *failKeys) {
	st := &failKeys{memStore: newMemStore()}
	x := newSim(t, cfg, nil, t0)
	x.d = NewDelivery(x.srv, st)
	if _, err := x.d.Restore(t0); err != nil {
		t.Fatal(err)
	}
	return x, st
}

// The rekey that announces a replaced signing key is not sent when its
// write before send fails; the next rekey still announces it, signed with
// the key the members hold and encrypted under the KEK they hold. Before
// the fix the server switched to the new key (and a new KEK) while
// building the unsent rekey, so every later rekey was rejected.
//
// proves: T1 (issue 15: a rekey whose write before send fails leaves the KS's keys as the members hold them)
func TestFailedSaveKeepsAnnouncement(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	cfg := groupConfig(t, RekeyPolicy{Unicast: true})
	oldKey := cfg.SigningKey
	x, st := failedSaveSim(t, cfg, t0)
	x.join(0, 2)
	kek0 := currentKEK(x)
	cfg2 := cfg
	cfg2.SigningKey = rsaKey(t)
	if err := x.srv.UpdatePolicy(cfg2); err != nil {
		t.Fatal(err)
	}
	st.fail = true
	if _, err := x.d.Rekey("G", x.now); err == nil {
		t.Fatal("the rekey was sent though its keys were not saved")
	}
	if k := currentKEK(x); k.SPI != kek0.SPI {
		t.Fatalf("after a failed rekey the KS holds KEK %x, which no member has (they hold %x)", k.SPI[:4], kek0.SPI[:4])
	}
	st.fail = false
	p := x.rekey()
	if p.KEK.SPI != kek0.SPI {
		t.Errorf("after a failed rekey, the next is encrypted under KEK %x, which no member holds (they hold %x)", p.KEK.SPI[:4], kek0.SPI[:4])
	}
	if _, ok := verifies(t, p.Data, p.KEK, oldKey); !ok {
		t.Error("after a failed announcement, the next rekey is not signed with the key the members hold: every member rejects it")
	}
	if !p.NewKEK {
		t.Fatal("the next rekey does not announce the new key")
	}
}

// A rekey, policy-replace rekey or GM removal whose write before send
// fails supersedes no delivery in flight and takes no member off the
// rekey list; its reserved sequence number stays used up.
//
// proves: T1, R1 (issue 15: a failed write before send changes neither the deliveries in flight nor the members)
func TestFailedSaveChangesNothing(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	x, st := failedSaveSim(t, groupConfig(t, RekeyPolicy{Unicast: true}), t0)
	x.st = st.memStore
	x.join(0, 2)
	x.silent[member(1).Addr()] = true
	first := x.rekey()
	teks := x.srv.Snapshot(x.now)[0].TEKs
	st.fail = true
	if _, err := x.d.Rekey("G", x.now); err == nil {
		t.Fatal("a rekey was sent though its keys were not saved")
	}
	if _, _, err := x.d.ReplaceRekey("G", true, x.now); err == nil {
		t.Fatal("a policy-replace rekey was sent though its keys were not saved")
	}
	if _, _, err := x.d.Remove("G", false, x.now); err == nil {
		t.Fatal("a removal was sent though its keys were not saved")
	}
	if fl := x.d.Flights(); len(fl) != 1 || fl[0].Push.Seq != first.Seq {
		t.Fatalf("failed rekeys superseded the delivery in flight (seq %d): %+v", first.Seq, fl)
	}
	for i := 0; i < 2; i++ {
		if m := x.member(member(i)); m.Removed {
			t.Fatalf("a removal that was never sent took member %s off the rekey list", m.Address)
		}
	}
	now := x.srv.Snapshot(x.now)[0].TEKs
	if len(now) != len(teks) || now[0].SPI != teks[0].SPI {
		t.Fatalf("failed rekeys changed the TEKs: %+v, was %+v", now, teks)
	}
	st.fail = false
	second := x.rekey()
	if second.Seq <= first.Seq+3 {
		t.Fatalf("rekey after three failed ones has seq %d: the numbers they reserved (after %d) were used again", second.Seq, first.Seq)
	}
	x.run(x.now.Add(time.Minute))
}
