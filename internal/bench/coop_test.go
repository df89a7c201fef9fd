package bench

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// proves: C3 (issue 16: member lists beyond 8,000 synchronise) — a primary
// sends a list of 10,000 members to two secondaries as real ANNs sealed in
// their KS-KS SAs over real UDP; each opens every part and ends holding
// every member with its version, in well under the smoke test's bound.
func TestCOOPSyncSmoke(t *testing.T) {
	ctx := context.Background()
	r, err := COOPSync(ctx, COOPSyncOptions{KeyServers: 3, Members: 10_000, Base: netip.MustParseAddr("127.0.4.1")})
	if err != nil {
		t.Fatal(err)
	}
	// 10,000 members at 9 octets each, twice (two secondaries), plus the
	// headers of 72 parts each: a bound on the octets, not a figure.
	if r.Parts != 72 || r.Octets < 2*9*10_000 || r.Octets > 2*(9*10_000+72*200) {
		t.Errorf("%d parts, %d octets for 10,000 members to 2 secondaries", r.Parts, r.Octets)
	}
	t.Logf("3 KSs, 10,000 members: %d parts, %d octets, sync %s (ceiling %s, crypto %s)", r.Parts, r.Octets, r.Sync, r.Ceiling, r.Crypto)
}

// BenchmarkCOOPSync10000 synchronises 10,000 members to one secondary.
func BenchmarkCOOPSync10000(b *testing.B) {
	for b.Loop() {
		r, err := COOPSync(context.Background(), COOPSyncOptions{KeyServers: 2, Members: 10_000, Base: netip.MustParseAddr("127.0.4.11")})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Octets), "octets/op")
		b.ReportMetric(float64(r.Sync.Nanoseconds()), "sync-ns/op")
		b.ReportMetric(float64(r.Ceiling.Nanoseconds()), "ceiling-ns/op")
	}
}

// proves: C3 (issue 16: member lists beyond 8,000 synchronise between the
// real key servers) — 10,000 members in ks1's state reach a starting
// secondary through the lab's nodes (their KS-KS IKE SA, their own
// announcements over real UDP): it lists all 10,000 in `show crypto gdoi
// feature gm-removal`, ks1 having sent each part once (72 parts of 140).
func TestCOOPNodesSmoke(t *testing.T) {
	start := time.Now()
	r, err := COOPNodes(context.Background(), 2, 10_000, 21897, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 KSs, 10,000 members through the nodes: %d datagrams, %d octets, sync %s, transfer %s (ceiling %s); %s in all",
		r.Datagrams, r.Octets, r.Sync, r.Transfer, r.Ceiling, time.Since(start).Round(time.Millisecond))
	if r.Datagrams < 72 || r.Octets < 9*10_000 || r.Octets > 2*(9*10_000+72*200) {
		t.Errorf("ks1 sent %d datagrams, %d octets for 10,000 members to one secondary", r.Datagrams, r.Octets)
	}
}
