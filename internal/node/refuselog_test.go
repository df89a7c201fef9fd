package node

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S6 (an authenticated peer is hostile input too) — a member that
// authenticated its phase 1 and then sends 200 GROUPKEY-PULL message 1s,
// each for another group number the KS does not serve, gets each refused
// with its notification and counted (pulls_refused 200), but the KS's log
// takes at most 10 lines of each kind at once (ks's
// GM_REJECTING_SA_PAYLOAD and node's "refusing GROUPKEY-PULL"; plus one a
// second the test took), rate-limited per peer whatever the group number
// (internal/ratelog Keyed); another member's refusal right after is still
// logged, both lines; the flooding member's next lines a second later say
// how many were suppressed, and log_records_suppressed counts them all.
// Before, each message wrote both lines.
func TestRefusedPullsLogRateLimited(t *testing.T) {
	var out syncBuf
	r := newKSRegistrarLog(t, slog.New(slog.NewTextHandler(&out, nil)))
	start := time.Now()
	gmAP, gmSA := r.phase1(t)
	pull := func(ap netip.AddrPort, sa *ike.SA, group uint32) {
		t.Helper()
		_, m, err := gdoi.NewPull(sa, isakmp.GroupID(group), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		replies := r.toKS(ap, m)
		if len(replies) != 1 {
			t.Fatalf("a refused pull answered with %d datagrams, want its notification", len(replies))
		}
		msg, err := isakmp.ParseMessage(replies[0])
		if err != nil || msg.Header.Exchange != isakmp.ExchangeInformational {
			t.Fatalf("answer to a refused pull: %v, %v", msg, err)
		}
	}
	const floods = 200
	count := func(s string) int { return strings.Count(out.String(), s) }
	for i := range floods {
		pull(gmAP, gmSA, 5000+uint32(i))
	}
	if got := r.kn.stats.pullsRefused; got != floods {
		t.Fatalf("pulls_refused %d, want %d", got, floods)
	}
	rejecting, refusing := count("%GDOI-4-GM_REJECTING_SA_PAYLOAD"), count("refusing GROUPKEY-PULL")
	limit := 10 + int(time.Since(start)/time.Second)
	t.Logf("%d refused pulls: %d GM_REJECTING_SA_PAYLOAD lines, %d refusing GROUPKEY-PULL", floods, rejecting, refusing)
	if rejecting < 1 || rejecting > limit || refusing < 1 || refusing > limit {
		t.Fatalf("%d refused pulls wrote %d GM_REJECTING_SA_PAYLOAD and %d refusing GROUPKEY-PULL lines, want 1-%d each:\n%s", floods, rejecting, refusing, limit, out.String())
	}
	if got, want := r.kn.LogCounters()[0].Value, uint64(2*floods-rejecting-refusing); got != want {
		t.Fatalf("log_records_suppressed %d, want %d", got, want)
	}
	otherAP, otherSA := r.phase1(t)
	pull(otherAP, otherSA, 4321)
	for _, l := range []string{"GM_REJECTING_SA_PAYLOAD: Registration from " + otherAP.Addr().String(), "refusing GROUPKEY-PULL\" peer=" + otherAP.String()} {
		if !strings.Contains(out.String(), l) {
			t.Fatalf("another member's refusal after the flood not logged (%q):\n%s", l, out.String())
		}
	}
	time.Sleep(1100 * time.Millisecond) // the buckets refill one line a second
	pull(gmAP, gmSA, 4321)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, want := range []string{"GM_REJECTING_SA_PAYLOAD: Registration from " + gmAP.Addr().String(), "refusing GROUPKEY-PULL\" peer=" + gmAP.String()} {
		last := ""
		for _, l := range lines {
			if strings.Contains(l, want) {
				last = l
			}
		}
		if !strings.Contains(last, "suppressed=") {
			t.Fatalf("the flooding member's line a second later does not say what was suppressed: %q", last)
		}
	}
}
