package app

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// proves: T3, E1 (issue 12: clear packets of covered traffic from the
// network are dropped) — tmd -tun keeps its nftables table in step with
// what the engine does: the fail-close bootstrap drops everything but the
// GDOI traffic; the KS's policy with a TEK drops its permit entry; nft
// runs again only when the table's text changes; a fail-open group whose
// TEK expired (time passing, no policy change) accepts clear again; and
// the counter is read from nft at most every clearDropsEvery.
func TestTmdClearInFollowsPolicy(t *testing.T) {
	var runs []string
	reads := 0
	fake := func(stdin string, args ...string) ([]byte, error) {
		if len(args) > 0 && args[0] == "-j" {
			reads++
			return []byte(`{"nftables": [{"counter": {"name": "clear_in_drops", "packets": 7}}]}`), nil
		}
		runs = append(runs, stdin)
		return nil, nil
	}
	mem := tmd.NewMemoryBackend()
	d := &tmdDataPlane{log: slog.New(slog.NewTextHandler(io.Discard, nil)), name: "gvtun", mem: mem, groups: []string{"G"},
		clearIn: &dataplane.ClearIn{TUN: "gvtun", Local: []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")}, NFT: fake}}
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	apply := func(at time.Time) {
		t.Helper()
		if err := d.applyClearIn(at); err != nil {
			t.Fatal(err)
		}
	}
	last := func() string { return runs[len(runs)-1] }

	// Fail-close bootstrap: only GDOI with the KS passes.
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	ks := netip.MustParsePrefix("192.0.2.1/32")
	boot := []sadb.PolicyEntry{
		{Action: sadb.Bypass, IPProto: 17, Src: any4, Dst: ks, DstPort: 848},
		{Action: sadb.Bypass, IPProto: 17, Src: ks, SrcPort: 848, Dst: any4},
		{Action: sadb.Protect, Src: any4, Dst: any4},
	}
	if err := mem.InstallPolicy("G", boot, sadb.FailClose); err != nil {
		t.Fatal(err)
	}
	apply(now)
	if len(runs) != 1 || !strings.Contains(last(), "\t\tcounter counter name \"clear_in_drops\" drop comment \"G entry 3 permit\"\n") ||
		!strings.Contains(last(), "ip saddr 192.0.2.1/32 meta l4proto 17 th sport 848 accept") {
		t.Fatalf("bootstrap table (%d runs):\n%s", len(runs), strings.Join(runs, "\n---\n"))
	}
	apply(now.Add(time.Second))
	if len(runs) != 1 {
		t.Fatalf("nft ran again with nothing changed: %d runs", len(runs))
	}

	// Registered: the KS's policy and a TEK; fail-open from now on.
	site := netip.MustParsePrefix("10.1.0.0/16")
	if err := mem.AddSA(sadb.TEK{Group: "G", SPI: 0x1234, Src: site, Dst: site, SendFrom: now, Expires: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := mem.InstallPolicy("G", []sadb.PolicyEntry{{Action: sadb.Protect, Src: site, Dst: site, SPI: 0x1234}}, sadb.FailOpen); err != nil {
		t.Fatal(err)
	}
	apply(now.Add(2 * time.Second))
	if len(runs) != 2 || !strings.Contains(last(), "ip saddr 10.1.0.0/16 ip daddr 10.1.0.0/16 counter counter name \"clear_in_drops\" drop comment \"G entry 1 permit\"") ||
		strings.Contains(last(), "192.0.2.1") {
		t.Fatalf("registered table (%d runs):\n%s", len(runs), last())
	}
	// The TEK expired, nothing replaced it: fail-open passes clear, and
	// so does the table, with no policy change to trigger it.
	apply(now.Add(2 * time.Minute))
	if len(runs) != 3 || strings.Contains(last(), " drop ") {
		t.Fatalf("after the TEK expired (%d runs):\n%s", len(runs), last())
	}

	// The counter, read from nft, at most every clearDropsEvery.
	for range 3 {
		if n, ok := d.clearDrops(); !ok || n != 7 {
			t.Fatalf("clear drops %d, %v", n, ok)
		}
	}
	if reads != 1 {
		t.Fatalf("nft read the counter %d times for 3 requests in a row, want 1", reads)
	}
	d.dropsAt = d.dropsAt.Add(-clearDropsEvery)
	d.clearDrops()
	if reads != 2 {
		t.Fatalf("nft read the counter %d times, want 2 once clearDropsEvery passed", reads)
	}
}
