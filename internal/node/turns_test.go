package node

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/version"
)

func turnsNode(t *testing.T, w *testnet.Writes, addrs ...string) (*Node, *slog.Logger) {
	t.Helper()
	tw := syslog.NewTurnWriter(w, time.Hour) // only the loop's end of a turn writes
	log := slog.New(syslog.NewTextHandler(tw, nil))
	ksAddr := netip.MustParseAddr(addrs[0])
	var listen []netip.AddrPort
	for _, a := range addrs {
		listen = append(listen, netip.AddrPortFrom(netip.MustParseAddr(a), 0))
	}
	n, err := New(Options{Listen: listen, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}, Logger: log, Turns: tw})
	if err != nil {
		t.Fatal(err)
	}
	return n, log
}

// proves: O3 (logs) and issue 18 — what the KS's loop logs while it handles
// one wait's input (a batch of registrations, each logging
// KS_REGS_COMPLETE) is written with one write, before the loop waits again
// (no line is held while the KS is idle); a line logged while the loop
// waits is written at once; and a loop that panics writes the lines of
// its turn before it dies.
func TestLoopWritesATurnsLogLinesBeforeItWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One address: the loop reads its socket itself (readDirect); two:
	// reader goroutines hand it datagrams and it waits in its select.
	for _, tc := range []struct {
		name   string
		addrs  []string
		direct bool
	}{{"direct", []string{"127.0.0.1"}, true}, {"select", []string{"127.0.0.1", "127.0.0.2"}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var w testnet.Writes
			n, log := turnsNode(t, &w, tc.addrs...)
			go n.Run(ctx)
			var direct bool
			if err := n.Do(ctx, func() { direct = n.direct != nil }); err != nil {
				t.Fatal(err)
			}
			if direct != tc.direct {
				t.Fatalf("the loop reads its socket itself: %v, want %v", direct, tc.direct)
			}
			const msg = "KS completed successful registration"
			if err := n.Do(ctx, func() {
				for i := range 20 {
					log.Info(msg, "i", i)
				}
			}); err != nil {
				t.Fatal(err)
			}
			// Nothing else arrives: the loop's next wait is far away, and
			// only its end of the turn writes (the hold is an hour).
			withMsg := func() (writes, lines int) {
				for _, s := range w.Each() {
					if k := strings.Count(s, msg); k > 0 {
						writes, lines = writes+1, lines+k
					}
				}
				return writes, lines
			}
			deadline := time.Now().Add(5 * time.Second)
			for _, k := withMsg(); k == 0 && time.Now().Before(deadline); _, k = withMsg() {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			if writes, lines := withMsg(); writes != 1 || lines != 20 {
				t.Fatalf("the turn's 20 lines: %d of them in %d writes, want 20 in one, before the loop waited", lines, writes)
			}
			// The loop waits: a line of another goroutine is written at once.
			log.Warn("while the loop waits")
			got := w.Each()
			if len(got) == 0 || !strings.Contains(got[len(got)-1], "while the loop waits") {
				t.Fatal("a line logged while the loop waits was not written at once")
			}
		})
	}

	// A loop that panics.
	var w2 testnet.Writes
	n2, log2 := turnsNode(t, &w2, "127.0.0.1")
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		n2.Run(ctx)
	}()
	n2.Do(ctx, func() {}) // running
	before := len(w2.Each())
	go n2.Do(ctx, func() {
		log2.Error("the last line before the panic")
		panic("test: the loop panics")
	})
	select {
	case r := <-recovered:
		if r == nil {
			t.Fatal("Run returned without the panic")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not panic")
	}
	if got := w2.Each(); len(got) != before+1 || !strings.Contains(got[before], "the last line before the panic") {
		t.Fatalf("the panicking turn's line was not written: %q", got[before:])
	}
}
