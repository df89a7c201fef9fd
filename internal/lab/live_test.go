package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// proves: O2 (issue 13: the lab's live traffic status) — without traffic
// the status line reports the members' states only, and a member whose
// control plane is down (kill -9) shows as down, not as registered; the
// flows are every ordered pair up to 16 members, each member's next 7
// beyond.
func TestLiveStatusMemberStates(t *testing.T) {
	if LiveFlows(16) != 16*15 || LiveFlows(20) != 20*7 || LiveFlows(2) != 2 {
		t.Errorf("flows: 16 members %d, 20 members %d, 2 members %d", LiveFlows(16), LiveFlows(20), LiveFlows(2))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 3, Port: 28848, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	v := NewLive(0)
	if err := v.Start(ctx, l, 100*time.Millisecond); err != nil { // no data plane: states only
		t.Fatal(err)
	}
	if err := v.Start(ctx, l, 0); err == nil {
		t.Errorf("started twice")
	}
	st, err := v.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.String(); st.Pairs != 0 || !strings.HasSuffix(s, "] members: 3 registered") {
		t.Errorf("status %q", s)
	}
	key := st.Key()
	if err := l.KillGM(2); err != nil {
		t.Fatal(err)
	}
	if st, err = v.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if s := st.String(); !strings.HasSuffix(s, "members: 2 registered, 1 down") || st.Key() == key {
		t.Errorf("after gm3's kill -9: status %q (key %q, was %q)", s, st.Key(), key)
	}
	if ss := v.Stop(ctx); ss != nil {
		t.Errorf("Stop without traffic: %v", ss)
	}
}
