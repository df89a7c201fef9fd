package system_test

// Issue 16, members registering before the election (the proof helper's
// finding): during the election wait each key server hands out keys of its
// own; once ks2 adopts ks1's, the members registered with ks2 must send
// with ks1's TEKs at once (the members of ks1 never had ks2's) and ks2's
// own TEKs must be retired within a bound, never deleted at once.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
)

// coopfixWait is the election wait of this test: long enough for every
// member to register (with its first-listed key server) before it ends.
const coopfixWait = 12 * time.Second

// proves: C1/C3 (issue 16: members registering before the election get
// that KS's own keys; after the election every pair of hosts delivers
// within 4 s — the secondary's forward activates at once — no member is
// ever without a valid TEK, and after the forward's DTD every member
// holds the primary's TEK set alone)
func TestCoopMembersBeforeElection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCoopNet(t, ctx, "gvcf", 4, "", true)
	// Start both key servers again from nothing, with a longer election
	// wait, so that the members register during it.
	for _, k := range c.ks {
		k.mustSrc("stopsrc", "-s", "isakmpd")
	}
	for _, k := range c.ks {
		waitUntil(t, k.name+": isakmpd stopped", 10*time.Second, func() bool {
			_, st := k.status("isakmpd")
			return strings.HasPrefix(st, "stopped") || strings.HasPrefix(st, "inoperative")
		})
		old, err := os.ReadFile(k.conf)
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.Replace(string(old), "timers election-wait 2", fmt.Sprintf("timers election-wait %d", coopfixWait/time.Second), 1)
		if conf == string(old) {
			t.Fatal("no election-wait line to change")
		}
		k.write(conf)
		files, _ := filepath.Glob(filepath.Join(k.dir, "isakmpd.db*"))
		for _, f := range files {
			os.Remove(f)
		}
	}
	started := time.Now()
	for _, k := range c.ks {
		k.mustSrc("startsrc", "-g", "ike")
	}
	c.startMembers()
	registered := time.Since(started)
	if registered >= coopfixWait {
		t.Fatalf("the members took %s to register: not within the election wait %s", registered, coopfixWait)
	}
	// Each side registered with its first key server's own keys.
	_, a := keysOf(c.gm[0])
	_, b := keysOf(c.gm[3])
	if len(a) == 0 || slices.Equal(a, b) {
		t.Fatalf("before the election gm1 holds TEKs %v, gm4 %v: want each key server's own", a, b)
	}
	if p, desc := c.agreed([2]bool{true, true}); p >= 0 {
		t.Fatalf("a primary before the election wait ended: %s", desc)
	}
	t.Logf("4 members registered %s after the key servers started (election wait %s): gm1 on %v, gm4 on %v", registered.Round(time.Millisecond), coopfixWait, a, b)
	c.startTraffic(ctx, 50*time.Millisecond)

	p, _ := c.waitAgreed(t, [2]bool{true, true}, coopfixWait+3*coopDead)
	elected := time.Now()
	if p != 0 {
		t.Fatalf("ks%d primary; want ks1 (priority 100)", p+1)
	}
	t.Logf("ks1 primary %s after the key servers started", elected.Sub(started).Round(time.Millisecond))

	// Within 4 s of the election every pair delivers: the members of ks2
	// send with ks1's TEKs (which the members of ks1 hold) at once.
	const settle = 4 * time.Second
	time.Sleep(settle + 10*time.Second)
	ss := c.meter.Window(elected.Add(settle), time.Now().Add(-time.Second))
	checkFlows(t, ss, fmt.Sprintf("from %s after the election for 9 s", settle))

	// The bound: ks2's own TEKs are deactivated RekeyDTD after the forward
	// reached its members; then every member holds ks1's TEK set alone.
	bound := elected.Add(ks.RekeyDTD + 5*time.Second)
	time.Sleep(time.Until(bound))
	ss = c.stopTraffic(elected.Add(settle))
	checkFlows(t, ss, fmt.Sprintf("from %s after the election to the bound", settle))
	want := ""
	for _, g := range c.gm {
		ts, err := tmdTEKs(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		var valid []string
		for _, k := range ts {
			if !k.Expires.Before(now) && (k.Deactivate.IsZero() || now.Before(k.Deactivate)) {
				valid = append(valid, fmt.Sprintf("%08x", k.SPI))
			}
		}
		slices.Sort(valid)
		set := strings.Join(valid, ",")
		if want == "" {
			want = set
		}
		if set != want || len(valid) != 1 {
			t.Errorf("%s holds the valid TEKs %s %s after the election; gm1 %s", g.name, set, time.Since(elected).Round(time.Second), want)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("%d TEK samples, %d without a valid TEK; one TEK set (%s) on every member %s after the election", c.samples, len(c.noTEK), want, time.Since(elected).Round(time.Second))
	if len(c.noTEK) > 0 {
		t.Errorf("members without a valid TEK: %v", c.noTEK)
	}
}
