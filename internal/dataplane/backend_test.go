package dataplane_test

import (
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// tmd's MemoryBackend is a key source for the engine, and its change
// notification refreshes the engine: a TEK handed to the backend seals the
// next packet, and the SA's counters count it.
func TestBackendNotifyRefreshes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := tmd.NewMemoryBackend()
	e, err := dataplane.NewUnplugged(b, []string{"g"}, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	b.Notify(func() { e.Refresh() })
	if err := b.InstallPolicy("g", dataplane.GroupPolicy(), sadb.FailClose); err != nil {
		t.Fatal(err)
	}
	pkt := dataplane.UDP(5000, "covered")
	if got := e.Decide(pkt); got != "drop" {
		t.Fatalf("fail-close policy, no TEK: %s, want drop", got)
	}
	if err := b.AddSA(dataplane.GroupTEK(0x100, 1, t0)); err != nil {
		t.Fatal(err)
	}
	if got := e.Decide(pkt); got != "esp" {
		t.Fatalf("after the backend's notification: %s, want esp", got)
	}
	c, ok := e.SACounters("g", 0x100)
	if !ok || c.EncapsPackets != 1 || c.EncapsBytes != uint64(len(pkt)) {
		t.Errorf("SA counters %+v %v", c, ok)
	}
	_ = tmd.SACounters(c) // tmd's counters have the same shape
}
