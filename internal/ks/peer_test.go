package ks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1 (issue 18: allocations per registration) — a peer described
// by its phase-1 ID (Peer.ID) is named by that ID's text in the member
// list and in a refusal's log line, the address when it has neither ID
// nor Identity, as when the node formatted the text for every message;
// a registration's message 2 (JoinPayload) then allocates nothing: the
// identity is not formatted for it.
func TestPeerIDFormattedWhenNeeded(t *testing.T) {
	s := server(t)
	id := &isakmp.ID{IDType: isakmp.IDIPv4Addr, Data: []byte{10, 0, 0, 9}}
	withID := Peer{Addr: netip.MustParseAddrPort("10.0.0.9:848"), ID: id}
	bare := peer("10.0.0.10")
	for _, p := range []Peer{withID, bare} {
		if _, err := s.JoinPayload(p, isakmp.GroupID(7), now); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.KeysPayload(p, isakmp.GroupID(7), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := s.Member("G", withID.Addr.Addr()); m.Identity != id.String() {
		t.Fatalf("a member by its ID: identity %q, want %q", m.Identity, id.String())
	}
	if m, _ := s.Member("G", bare.Addr.Addr()); m.Identity != "10.0.0.10" {
		t.Fatalf("a member without ID: identity %q, want its address", m.Identity)
	}
	if !raceEnabled {
		gid := isakmp.GroupID(7)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := s.JoinPayload(withID, gid, now); err != nil {
				t.Fatal(err)
			}
		}); n > 0 {
			t.Fatalf("JoinPayload: %.0f allocations, want none", n)
		}
	}

	var log bytes.Buffer
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r := New(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	err := r.AddGroup(GroupConfig{Name: "R", ID: 8, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		Authorize: func(Peer) error { return errors.New("not on the list") },
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
			Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Peer{withID, bare} {
		if _, err := r.JoinPayload(p, isakmp.GroupID(8), now); err == nil {
			t.Fatal("an unauthorized peer joined")
		}
	}
	want1 := "unauthorized identity: 10.0.0.9 (" + id.String() + ")"
	want2 := "unauthorized identity: 10.0.0.10 (10.0.0.10)"
	if !strings.Contains(log.String(), want1) || !strings.Contains(log.String(), want2) {
		t.Fatalf("refusals logged as\n%s\nwant %q and %q", log.String(), want1, want2)
	}
}
