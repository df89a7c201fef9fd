package ks

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S6 (refused registrations' lines, rate-limited per peer on the
// key server's clock) — 30 registrations of one peer, each for another
// group number the KS does not serve, write GM_REJECTING_SA_PAYLOAD 10
// times; another peer's refusal is still written; a second later on the
// injected clock (Options.Now, the node's and ikev2d's) the first peer's
// next line says suppressed=20, and LogSuppressed counts them.
func TestRefusalLinesLimitedPerPeerOnTheClock(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Now: func() time.Time { return now }})
	a := Peer{Addr: netip.MustParseAddrPort("10.0.0.1:848")}
	b := Peer{Addr: netip.MustParseAddrPort("10.0.0.2:848")}
	for i := range 30 {
		if _, err := s.Join(a, isakmp.GroupID(uint32(100+i)), now); err == nil {
			t.Fatal("a group the KS does not serve joined")
		}
	}
	s.Join(b, isakmp.GroupID(99), now)
	if got := strings.Count(buf.String(), "GM_REJECTING_SA_PAYLOAD: Registration from 10.0.0.1 "); got != 10 {
		t.Fatalf("%d lines of a's 30 refusals, want 10:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "Registration from 10.0.0.2 ") {
		t.Fatalf("b's refusal not written after a's:\n%s", buf.String())
	}
	if s.LogSuppressed() != 20 {
		t.Fatalf("suppressed %d, want 20", s.LogSuppressed())
	}
	now = now.Add(time.Second)
	buf.Reset()
	s.Join(a, isakmp.GroupID(7777), now)
	if !strings.Contains(buf.String(), "Registration from 10.0.0.1 ") || !strings.Contains(buf.String(), "suppressed=20") {
		t.Fatalf("a's line a second later (the KS's clock): %q", buf.String())
	}
}
