package ks_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/isakmp"
)

// A KS restarted from its state file goes on with the group's TBAR
// pseudotime rather than starting it again at 0 at the next registration:
// the rekeys it sends after the restart carry the pseudotime the GMs
// already count in, so members rekeyed first stay inside the TBAR window
// of those rekeyed later (issue 13's bench lost packets to TBAR after a
// KS kill -9 and restart).
// proves: T2, O4 (issue 13: a KS restart loses nothing, TBAR included)
func TestRestartKeepsPseudotime(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	peer := func(a string) ks.Peer { return ks.Peer{Addr: netip.AddrPortFrom(netip.MustParseAddr(a), 848)} }
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg := ks.GroupConfig{Name: "T", ID: 9, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: 24 * time.Hour, Replay: isakmp.ReplayTime, ReplayWindow: 5,
			Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}
	s := ks.New(ks.Options{})
	sNow := now
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Keys(peer("10.0.0.1"), isakmp.GroupID(9), 1, sNow); err != nil { // starts the pseudotime
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	sNow = later
	st, err := s.State("T", later)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "ks.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.SaveGroup(st); err != nil {
		t.Fatal(err)
	}
	loaded, err := db.LoadGroups()
	if err != nil || len(loaded) != 1 {
		t.Fatalf("%d groups, %v", len(loaded), err)
	}
	r := ks.New(ks.Options{})
	rNow := later
	if err := r.AddGroup(cfg, later); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(loaded[0], later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Keys(peer("10.0.0.2"), isakmp.GroupID(9), 1, rNow); err != nil {
		t.Fatal(err)
	}
	if pt := r.Snapshot(rNow)[0].Pseudotime; pt != time.Hour {
		t.Fatalf("pseudotime after the restart %s, want 1h (it started at the first registration, an hour before)", pt)
	}
}
