package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// proves: S7 (issue 11 item 1) — the GM-side operator commands through the
// control socket: `clear crypto gdoi [group NAME]` makes a GM register
// again at once over a new phase-1 SA (the old one is deleted once the new
// one is up) while its installed TEKs stay; an unknown group is refused;
// `clear crypto isakmp` deletes the phase-1 SAs with a Delete the peers
// act on (they drop the SA too).
func TestClearCommandsOnAGM(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 2, Port: 22848, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gm := l.GMs[0]
	before := state(t, ctx, gm)
	if len(before.Phase1) != 1 {
		t.Fatalf("GM holds %d phase-1 SAs", len(before.Phase1))
	}
	r := gm.Ctl.Exec(ctx, "clear crypto gdoi group LAB")
	if !r.OK || !strings.Contains(r.Text, "Re-registering group LAB") {
		t.Fatalf("clear crypto gdoi group LAB: %+v", r)
	}
	if n := len(state(t, ctx, gm).TEKs); n != len(before.TEKs) {
		t.Fatalf("clear crypto gdoi removed TEKs: %d, had %d", n, len(before.TEKs))
	}
	eventually(t, "re-registration over a new phase 1", func() bool {
		s := state(t, ctx, gm)
		return s.GM[0].Registrations == 2 && s.GM[0].State == "registered" && len(s.Phase1) == 1 &&
			s.Phase1[0].ICookie != before.Phase1[0].ICookie
	})
	if r := gm.Ctl.Exec(ctx, "clear crypto gdoi group NOPE"); r.OK || !strings.Contains(r.Error, "not a member of group NOPE") {
		t.Fatalf("clear crypto gdoi group NOPE: %+v", r)
	}
	if r := gm.Ctl.Exec(ctx, "clear crypto gdoi | json"); !r.OK || !strings.Contains(r.Text, `"LAB"`) {
		t.Fatalf("clear crypto gdoi | json: %+v", r)
	}
	eventually(t, "the second re-registration", func() bool {
		s := state(t, ctx, gm)
		return s.GM[0].Registrations == 3 && s.GM[0].State == "registered"
	})

	// clear crypto isakmp on the KS: every GM learns of it by the Delete.
	r = l.KS.Ctl.Exec(ctx, "clear crypto isakmp")
	if !r.OK || !strings.Contains(r.Text, "2 phase-1 SAs deleted") {
		t.Fatalf("clear crypto isakmp on the KS: %+v", r)
	}
	eventually(t, "the GMs dropping their SAs", func() bool {
		for _, g := range l.GMs {
			if len(state(t, ctx, g).Phase1) != 0 {
				return false
			}
		}
		return len(state(t, ctx, l.KS).Phase1) == 0
	})
	if s := state(t, ctx, gm); s.GM[0].State != "registered" || len(s.TEKs) == 0 {
		t.Fatalf("the GM lost its registration with its phase 1: %+v", s.GM[0])
	}
	// On a GM, after a new registration built a phase 1 again.
	gm.Ctl.Exec(ctx, "clear crypto gdoi")
	eventually(t, "a new phase 1", func() bool { return len(state(t, ctx, gm).Phase1) == 1 })
	if r := gm.Ctl.Exec(ctx, "clear crypto isakmp"); !r.OK || !strings.Contains(r.Text, "1 phase-1 SAs deleted") {
		t.Fatalf("clear crypto isakmp on a GM: %+v", r)
	}
	if n := len(state(t, ctx, gm).Phase1); n != 0 {
		t.Fatalf("GM still holds %d phase-1 SAs", n)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
