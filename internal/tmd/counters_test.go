package tmd

import (
	"context"
	"testing"
)

// countingBackend is a MemoryBackend whose data plane has counted packets.
type countingBackend struct {
	*MemoryBackend
	c SACounters
}

func (b countingBackend) QuerySA(group string, spi uint32) (SACounters, error) {
	if _, err := b.MemoryBackend.QuerySA(group, spi); err != nil {
		return SACounters{}, err
	}
	return b.c, nil
}

// TestCountersThroughAPI: the counters op answers each TEK's counters as
// the backend reports them and the engine's counters (also in status), and
// the client returns them (what `show crypto ipsec sa` prints).
//
// proves: E1, D1 (issue 12: the data plane's counters reach the show commands)
func TestCountersThroughAPI(t *testing.T) {
	path := sockPath(t)
	want := SACounters{EncapsPackets: 5, EncapsBytes: 420, DecapsPackets: 4, DecapsBytes: 336, ReplayDrops: 1, AuthFailures: 2}
	dp := &DataPlaneCounters{Device: "gvtun", Counters: []Counter{{Name: "no_sa", Help: "h", Value: 3}}}
	startWith(t, path, Options{Backend: countingBackend{NewMemoryBackend(), want}, DataPlane: func() *DataPlaneCounters { return dp }})
	c := dial(t, path, "isakmpd")
	ctx := context.Background()
	if sas, got, err := c.Counters(ctx); err != nil || len(sas) != 0 || got == nil || got.Device != "gvtun" {
		t.Fatalf("counters of an empty database: %+v %+v %v", sas, got, err)
	}
	if err := c.InstallTEK(liveTEK("g", 0x1234)); err != nil {
		t.Fatal(err)
	}
	sas, got, err := c.Counters(ctx)
	if err != nil || len(sas) != 1 || sas[0].Group != "g" || sas[0].SPI != 0x1234 || sas[0].SACounters != want {
		t.Fatalf("counters: %+v, %v; want g/0x1234 %+v", sas, err, want)
	}
	if got == nil || len(got.Counters) != 1 || got.Counters[0].Value != 3 {
		t.Fatalf("engine counters %+v", got)
	}
	st, err := c.Status(ctx)
	if err != nil || st.DataPlane == nil || st.DataPlane.Counters[0].Name != "no_sa" {
		t.Fatalf("status without the data plane: %+v %v", st, err)
	}
}

// Without a data plane tmd answers zero counters and no data_plane.
func TestCountersWithoutDataPlane(t *testing.T) {
	path := sockPath(t)
	start(t, path, nil)
	c := dial(t, path, "isakmpd")
	if err := c.InstallTEK(liveTEK("g", 7)); err != nil {
		t.Fatal(err)
	}
	sas, dp, err := c.Counters(context.Background())
	if err != nil || len(sas) != 1 || sas[0].SACounters != (SACounters{}) || dp != nil {
		t.Fatalf("counters %+v %+v %v", sas, dp, err)
	}
	if st, err := c.Status(context.Background()); err != nil || st.DataPlane != nil {
		t.Fatalf("status %+v %v", st, err)
	}
}
