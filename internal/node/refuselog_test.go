package node

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S6 (an authenticated peer is hostile input too) — a member that
// authenticated its phase 1 and then sends 200 GROUPKEY-PULL message 1s
// for a group the KS does not serve gets each refused with its
// notification and counted (pulls_refused 200), but the KS's log takes
// at most 10 lines of each kind at once (ks's GM_REJECTING_SA_PAYLOAD and
// node's "refusing GROUPKEY-PULL", rate-limited per line: internal/
// ratelog), and the next line a second later says how many it
// suppressed. Before, each message wrote both lines.
func TestRefusedPullsLogRateLimited(t *testing.T) {
	var out syncBuf
	r := newKSRegistrarLog(t, slog.New(slog.NewTextHandler(&out, nil)))
	gmAP, gmSA := r.phase1(t)
	const floods = 200
	count := func(s string) int { return strings.Count(out.String(), s) }
	pull := func() {
		t.Helper()
		_, m, err := gdoi.NewPull(gmSA, isakmp.GroupID(4321), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		replies := r.toKS(gmAP, m)
		if len(replies) != 1 {
			t.Fatalf("a refused pull answered with %d datagrams, want its notification", len(replies))
		}
		msg, err := isakmp.ParseMessage(replies[0])
		if err != nil || msg.Header.Exchange != isakmp.ExchangeInformational {
			t.Fatalf("answer to a refused pull: %v, %v", msg, err)
		}
	}
	for range floods {
		pull()
	}
	if got := r.kn.stats.pullsRefused; got != floods {
		t.Fatalf("pulls_refused %d, want %d", got, floods)
	}
	// log_records_suppressed counts both limiters' suppressions.
	if got, want := r.kn.LogCounters()[0].Value, uint64(2*floods-count("%GDOI-4-GM_REJECTING_SA_PAYLOAD")-count("refusing GROUPKEY-PULL")); got != want {
		t.Fatalf("log_records_suppressed %d, want %d", got, want)
	}
	rejecting, refusing := count("%GDOI-4-GM_REJECTING_SA_PAYLOAD"), count("refusing GROUPKEY-PULL")
	t.Logf("%d refused pulls: %d GM_REJECTING_SA_PAYLOAD lines, %d refusing GROUPKEY-PULL", floods, rejecting, refusing)
	if rejecting < 1 || rejecting > 10 || refusing < 1 || refusing > 10 {
		t.Fatalf("%d refused pulls wrote %d GM_REJECTING_SA_PAYLOAD and %d refusing GROUPKEY-PULL lines, want 1-10 each:\n%s", floods, rejecting, refusing, out.String())
	}
	time.Sleep(1100 * time.Millisecond) // the buckets refill one line a second
	pull()
	last := out.String()[strings.LastIndex(strings.TrimSuffix(out.String(), "\n"), "\n")+1:]
	if !strings.Contains(last, "refusing GROUPKEY-PULL") || !strings.Contains(last, "suppressed=") {
		t.Fatalf("the line after a second does not say what was suppressed: %q", last)
	}
	if !strings.Contains(out.String(), "GM_REJECTING_SA_PAYLOAD") || !strings.Contains(out.String(), "suppressed="+strconv.Itoa(floods-rejecting)) {
		t.Fatalf("no GM_REJECTING_SA_PAYLOAD line with suppressed=%d:\n%s", floods-rejecting, out.String())
	}
}
