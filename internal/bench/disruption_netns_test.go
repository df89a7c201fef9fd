package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// The short version of `groupvpn bench disruption --netns`: a KS and 3 GM
// routers in network namespaces, every GM running `groupvpn tmd -tun` (a
// real TUN device, ESP on raw sockets) and `groupvpn isakmpd` as processes,
// a host behind each; every ordered pair of hosts exchanges numbered UDP
// packets through the GMs while the KS runs the script's events that fit
// in real time: replace-now and removal-now (outage within the
// re-registration window plus a registration), a real SIGKILL of the KS's
// isakmpd and its restart from its state file (0 lost; the members accept
// the restarted KS's rekey), and a SIGKILL of gm1's isakmpd while its tmd
// forwards on (0 lost). The scheduled rekeys, the policy replace and the
// removal with temporary SAs take minutes of real time: `groupvpn bench
// disruption --netns` runs them.
// proves: E2, O4 (issue 13: no loss through restarts, with real processes and TUN devices)
func TestDisruptionNetnsShort(t *testing.T) {
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "sysctl", "nft")
	if testing.Short() {
		t.Skip("about a minute")
	}
	bin := testnet.Binary(t)
	t.Cleanup(testnet.RemoveBinary)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	r, err := disruptionNetns(t, ctx, NetnsDisruptionOptions{Members: 3, Bin: bin, Tag: "gvdt", Events: []int{4, 5, 6, 7}, Out: &progress})
	t.Log(progress.String())
	if r != nil {
		var out strings.Builder
		r.Print(&out)
		t.Log(out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 4 {
		t.Fatalf("%d events, want 4", len(r.Events))
	}
	for _, e := range r.Events {
		if !e.Met {
			t.Errorf("event %d, %s: %s", e.Num, e.Name, e.Why)
		}
		if tot := flowmeter.Total(e.Flows); tot.Sent < 100 {
			t.Errorf("event %d: %d packets sent", e.Num, tot.Sent)
		}
	}
	if r.Unknown != 0 {
		t.Errorf("%d unknown payloads delivered", r.Unknown)
	}
}
