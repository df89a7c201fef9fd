package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/metrics"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// phase1Counted is a node whose snapshot counts 20,000 phase-1 SAs and
// lists none, as node.StateCounts gives a scrape.
type phase1Counted struct{}

func (phase1Counted) State(context.Context) (node.Snapshot, error) {
	return node.Snapshot{Now: time.Now(), Phase1Count: 20000}, nil
}

// proves: O3 (issue 18, review: a scrape counts the phase-1 SAs, it does
// not copy them) — groupvpn_isakmp_sas is the snapshot's Phase1Count,
// with no SA listed in it.
func TestScrapePhase1Count(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	url := serve(t, metrics.DefaultLimits, metrics.NewCollector(phase1Counted{}, nil, 0))
	body := scrape(t, url)
	if v, ok := value(families(t, body), "groupvpn_isakmp_sas", nil); !ok || v != 20000 {
		t.Fatalf("groupvpn_isakmp_sas = %v (present %v), want 20000", v, ok)
	}
	promtool(t, body)
}
