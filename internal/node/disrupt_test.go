package node

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// tekTimes is each GM's TEKs of the group: SPI -> SendFrom.
func (l *restartLab) tekTimes(g *Node) map[uint32]time.Time {
	out := map[uint32]time.Time{}
	g.Do(l.ctx, func() {
		for _, t := range g.Dataplane().TEKs() {
			out[t.SPI] = t.SendFrom
		}
	})
	return out
}

func (l *restartLab) ksTEKs() []uint32 {
	var spis []uint32
	l.ks.Do(l.ctx, func() {
		for _, tk := range l.ks.ks.Snapshot(l.ks.Now())[0].TEKs {
			spis = append(spis, tk.SPI)
		}
	})
	return spis
}

// `crypto gdoi ks rekey replace-now`: the GMs delete the old TEKs and use
// the new ones at once (SPEC P4), not after the rekey's activation delay,
// which left them nothing to send with for 30 s (issue 13's bench lost
// every packet of that time).
// proves: P4, E2 (issue 13: replace-now sends with the new TEKs at once)
func TestReplaceNowSendsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLab(t, ctx, netip.MustParseAddr("127.0.0.180"), 2, 5)
	old := l.ksTEKs()
	l.ks.Do(ctx, func() {
		if _, err := l.ks.sendReplaceRekey("GETVPN", true, l.clk.Now()); err != nil {
			t.Error(err)
		}
	})
	if _, ok := l.pump(10*time.Second, func() bool {
		for _, g := range l.gms {
			if _, has := l.tekTimes(g)[old[0]]; has {
				return false
			}
		}
		return true
	}); !ok {
		t.Fatal("the GMs kept the old TEKs after replace-now")
	}
	now := l.clk.Now()
	for i, g := range l.gms {
		times := l.tekTimes(g)
		if len(times) == 0 {
			t.Fatalf("gm%d holds no TEK", i+1)
		}
		for spi, from := range times {
			if from.After(now) {
				t.Errorf("gm%d: new TEK %#x sends only from %s (now %s)", i+1, spi, from, now)
			}
		}
	}
}

// After `clear crypto gdoi ks members` a GM that re-registers early holds
// the new TEKs for receiving but keeps sending with its temporary SA until
// three quarters of the way to its expiry, after every other member
// re-registered (with a margin): sending
// with the new keys at once lost every packet to the members that had not
// (issue 13's bench).
// proves: R2, E2 (issue 13: removal with temporary SAs loses nothing)
func TestRemovalReregistrationHoldsSending(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLab(t, ctx, netip.MustParseAddr("127.0.0.181"), 2, 6)
	old := l.ksTEKs()
	l.ks.Do(ctx, func() {
		if _, err := l.ks.sendRemoval("GETVPN", false, l.clk.Now()); err != nil {
			t.Error(err)
		}
	})
	// The removal reaches both; gm1 re-registers at once (as `clear
	// crypto gdoi` would make it; its timer would within the window).
	l.pump(time.Second, func() bool { return false })
	var expires time.Time
	l.gms[0].Do(ctx, func() {
		for _, tk := range l.gms[0].Dataplane().TEKs() {
			if tk.SPI == old[0] {
				expires = tk.Expires
			}
		}
		l.gms[0].regs[0].m.Wake(l.clk.Now())
	})
	if expires.IsZero() || expires.Sub(l.clk.Now()) > 200*time.Second {
		t.Fatalf("no temporary SA at gm1 (expires %s)", expires)
	}
	regs := gmState(t, l.gms[0]).Registrations
	if _, ok := l.pump(10*time.Second, func() bool { return gmState(t, l.gms[0]).Registrations > regs }); !ok {
		t.Fatal("gm1 did not re-register")
	}
	now := l.clk.Now()
	fresh := l.ksTEKs()
	times := l.tekTimes(l.gms[0])
	for _, spi := range fresh {
		from, ok := times[spi]
		if !ok {
			t.Fatalf("gm1 lacks the new TEK %#x", spi)
		}
		if want := now.Add(expires.Sub(now) * 3 / 4); from.Before(want.Add(-time.Second)) || from.After(want.Add(time.Second)) {
			t.Errorf("new TEK %#x sends from %s, want three quarters of the way to the temporary SA's expiry %s (now %s)", spi, from, want, now)
		}
	}
	if from := times[old[0]]; from.After(now) {
		t.Errorf("the temporary SA does not send: from %s", from)
	}
}
