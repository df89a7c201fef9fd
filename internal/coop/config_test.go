package coop

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: C1 (the configuration a KS runs the election with) — zero
// timers and version become the defaults, a v4-mapped local address is
// unmapped, and what was set is kept; a dead interval not longer than the
// period is refused.
func TestConfigDefaults(t *testing.T) {
	e, err := New(Config{Group: "G", Local: netip.MustParseAddr("::ffff:192.0.2.1"), Priority: 10,
		Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	c := e.Config()
	if c.Period != DefaultPeriod || c.Dead != DefaultDeadPeriods*DefaultPeriod || c.ElectionWait != DefaultElectionWait ||
		c.Version != version.Current || c.Local != netip.MustParseAddr("192.0.2.1") || c.Priority != 10 || c.Group != "G" {
		t.Errorf("Config() = %+v", c)
	}
	e, err = New(Config{Local: netip.MustParseAddr("192.0.2.1"), Priority: 1, Period: 5 * time.Second, ElectionWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c := e.Config(); c.Period != 5*time.Second || c.Dead != DefaultDeadPeriods*5*time.Second || c.ElectionWait != time.Second {
		t.Errorf("Config() with a period = %+v", c)
	}
	if _, err := New(Config{Local: netip.MustParseAddr("192.0.2.1"), Priority: 1, Period: 10 * time.Second, Dead: 10 * time.Second}); err == nil {
		t.Error("a dead interval equal to the period was accepted")
	}
}
