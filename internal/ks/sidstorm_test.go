package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1, S5 (issue 18 F4, review: one authenticated member pulling again and
// again with 16 sender IDs each time drove 9 early rekeys of a 1,000-member
// group in 200 s; the early rekey now follows distinct members' need, and
// a member gets at most SIDsPerMemberPerKeys IDs under the same keys:
// refused past it, counted, until the keys change)
func TestOneMemberDoesNotDriveEarlyRekeys(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ten := netip.MustParsePrefix("10.0.0.0/8")
	cfg := GroupConfig{Name: "W", ID: 12, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}
	s := New(Options{})
	if err := s.AddGroup(cfg, now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ { // a group of honest members
		if _, _, err := s.Keys(Peer{Addr: netip.AddrPortFrom(memberAddr(i), 848)}, isakmp.GroupID(12), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := s.NextRekey("W")
	evil := Peer{Addr: netip.MustParseAddrPort("10.99.0.1:848")}
	clock := now
	rekeys, granted, refused := 0, 0, 0
	for i := 0; i < 20_000; i++ { // 20,000 pulls over one phase-1 SA
		clock = clock.Add(10 * time.Millisecond)
		if at := s.NextRekey("W"); !at.After(clock) {
			if _, err := s.Rekey("W", clock); err != nil {
				t.Fatal(err)
			}
			rekeys++
		}
		_, _, err := s.Keys(evil, isakmp.GroupID(12), 16, clock)
		var rf *gdoi.Refusal
		switch {
		case err == nil:
			granted++
		case errors.As(err, &rf):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if !scheduled.After(clock) {
		t.Fatalf("the scheduled rekey (%v) falls within the test's %v", scheduled.Sub(now), clock.Sub(now))
	}
	if rekeys != 0 {
		t.Errorf("one member's 20,000 registrations in %v drove %d early rekeys of the whole group", clock.Sub(now), rekeys)
	}
	if granted*MaxSIDsPerMember > SIDsPerMemberPerKeys {
		t.Errorf("one member got %d registrations of 16 sender IDs under one key (bound %d IDs)", granted, SIDsPerMemberPerKeys)
	}
	if got := s.SIDRefusedMemberBound(); got != uint64(refused) || refused == 0 {
		t.Errorf("SIDRefusedMemberBound %d, refused %d", got, refused)
	}
	// Honest members still register, and the bound starts again with new keys.
	if _, _, err := s.Keys(Peer{Addr: netip.AddrPortFrom(memberAddr(5000), 848)}, isakmp.GroupID(12), 1, clock); err != nil {
		t.Fatalf("an honest member after the storm: %v", err)
	}
	if _, err := s.Rekey("W", clock); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Keys(evil, isakmp.GroupID(12), 16, clock); err != nil {
		t.Fatalf("the member after a rekey: %v", err)
	}
}
