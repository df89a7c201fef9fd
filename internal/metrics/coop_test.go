package metrics_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/metrics"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/version"
)

// fixed is a node that always reports one snapshot.
type fixed node.Snapshot

func (f fixed) State(context.Context) (node.Snapshot, error) { return node.Snapshot(f), nil }

// TestScrapeCOOP: a key server with two cooperative groups (secondary in
// one, electing in the other) and a lone group exports each group's role
// (1 for it, 0 for the others), priority, peers (up, priority, the
// version each announced) and announcement counters by drop reason, and
// promtool accepts the scrape.
//
// proves: C1, V3 (issue 16: COOP role and counters as Prometheus series, accepted by promtool check metrics)
func TestScrapeCOOP(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	p1, p2 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	s := node.Snapshot{Now: now, Version: version.Current,
		KS: []ks.GroupSnapshot{
			{Name: "A", Secondary: true, Redundancy: &ks.Redundancy{Priority: 10, Peers: []netip.Addr{p1, p2}}},
			{Name: "B", Secondary: true, Redundancy: &ks.Redundancy{Priority: 20, Peers: []netip.Addr{p1}}},
			{Name: "LONE"},
		},
		COOP: map[string]node.COOPStatus{
			"A": {Priority: 10, Role: coop.Secondary, Primary: p1, LastSync: now.Add(-time.Minute), MembersGen: 3,
				Stats: coop.Stats{Sent: 9, Accepted: 8, Replayed: 2, Unknown: 1, Invalid: 4, Incompatible: 5, Exhausted: 6, Elections: 1},
				Peers: []coop.PeerStatus{{Addr: p1, Reachable: true, Role: coop.Primary, Priority: 100, Version: version.Base, Seq: 8, LastHeard: now}, {Addr: p2}}},
			"B": {Priority: 20, Role: coop.Electing, Peers: []coop.PeerStatus{{Addr: p1}}},
		},
		COOPCounters: []ike.Counter{{Name: "ann_sent", Value: 9}},
	}
	body := scrape(t, serve(t, metrics.DefaultLimits, metrics.NewCollector(fixed(s), nil, 0)))
	fams := families(t, body)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"groupvpn_gdoi_ks_role", map[string]string{"group": "A", "role": "secondary"}, 1},
		{"groupvpn_gdoi_ks_role", map[string]string{"group": "A", "role": "primary"}, 0},
		{"groupvpn_gdoi_ks_role", map[string]string{"group": "B", "role": "electing"}, 1},
		{"groupvpn_gdoi_ks_role", map[string]string{"group": "LONE", "role": "primary"}, 1},
		{"groupvpn_gdoi_ks_role", map[string]string{"group": "LONE", "role": "secondary"}, 0},
		{"groupvpn_coop_local_priority", map[string]string{"group": "A"}, 10},
		{"groupvpn_coop_peers", map[string]string{"group": "A"}, 2},
		{"groupvpn_coop_peers_reachable", map[string]string{"group": "A"}, 1},
		{"groupvpn_coop_peer_up", map[string]string{"group": "A", "peer": "192.0.2.2"}, 1},
		{"groupvpn_coop_peer_up", map[string]string{"group": "A", "peer": "192.0.2.3"}, 0},
		{"groupvpn_coop_peer_priority", map[string]string{"group": "A", "peer": "192.0.2.2"}, 100},
		{"groupvpn_coop_peer_version_info", map[string]string{"group": "A", "peer": "192.0.2.2", "version": "1.0.1"}, 1},
		{"groupvpn_coop_announcements_sent_total", map[string]string{"group": "A"}, 9},
		{"groupvpn_coop_announcements_accepted_total", map[string]string{"group": "A"}, 8},
		{"groupvpn_coop_announcements_dropped_total", map[string]string{"group": "A", "reason": "replayed"}, 2},
		{"groupvpn_coop_announcements_dropped_total", map[string]string{"group": "A", "reason": "unknown_peer"}, 1},
		{"groupvpn_coop_announcements_dropped_total", map[string]string{"group": "A", "reason": "invalid"}, 4},
		{"groupvpn_coop_announcements_dropped_total", map[string]string{"group": "A", "reason": "incompatible"}, 5},
		{"groupvpn_coop_announcements_unsent_total", map[string]string{"group": "A"}, 6},
		{"groupvpn_coop_elections_total", map[string]string{"group": "A"}, 1},
		{"groupvpn_coop_members_generation", map[string]string{"group": "A"}, 3},
		{"groupvpn_coop_last_sync_timestamp_seconds", map[string]string{"group": "A"}, float64(now.Add(-time.Minute).Unix())},
	} {
		if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	// Never heard: no priority or version series; never synced: no sync time.
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"groupvpn_coop_peer_priority", map[string]string{"group": "A", "peer": "192.0.2.3"}},
		{"groupvpn_coop_peer_version_info", map[string]string{"group": "B", "peer": "192.0.2.2"}},
		{"groupvpn_coop_last_sync_timestamp_seconds", map[string]string{"group": "B"}},
		{"groupvpn_coop_local_priority", map[string]string{"group": "LONE"}},
	} {
		if v, ok := value(fams, c.name, c.labels); ok {
			t.Errorf("%s%v = %v, want absent", c.name, c.labels, v)
		}
	}
	promtool(t, body)
}
