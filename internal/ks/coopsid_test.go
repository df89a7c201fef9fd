package ks

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// hear makes each KS hear the other's announced KS set, as the node does
// from their ANNs (SetPeerView).
func hear(a, b *Server) {
	for _, p := range [][2]*Server{{a, b}, {b, a}} {
		other := p[1].byName["G"].cfg.Address
		p[0].SetPeerView("G", []PeerKS{{Addr: other, Reachable: true, KSSet: p[1].KSSetDigest("G")}}, nil)
	}
}

// registerSIDs registers 20 GMs with each KS and returns, for each
// sender ID handed out, which KS gave it, failing on a duplicate across
// KSs; refusals are counted.
func registerSIDs(t *testing.T, kss []*Server) (seen map[uint32]int, refused int) {
	t.Helper()
	seen = map[uint32]int{}
	for i, s := range kss {
		for j := 0; j < 20; j++ {
			_, kd, err := s.Keys(peer(netip.AddrFrom4([4]byte{10, byte(i), 0, byte(j)}).String()), isakmp.GroupID(7), 1, now)
			var ref *gdoi.Refusal
			if errors.As(err, &ref) {
				refused++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range kd.Packet(isakmp.KDSID, nil).Attributes[1:] {
				v, _ := a.Uint()
				if who, dup := seen[uint32(v)]; dup && who != i {
					t.Fatalf("sender ID %d handed out by KS %d and KS %d", v, i, who)
				}
				seen[uint32(v)] = i
			}
		}
	}
	return seen, refused
}

// proves: C1 (issue 16: sender IDs disjoint across KSs, RFC 6054): the
// reviewer's scenario, a rolling change where the primary lists a third
// KS and the secondary does not yet (strides 3 and 2 would both hand out
// ID 4): once they have heard each other's KS set, neither hands out
// any, and the refusal is counted.
func TestSenderIDsDisjointWhilePeerListsDiffer(t *testing.T) {
	pri, sec := coopPair(t)
	pri.byName["G"].cfg.Redundancy.Peers = append(pri.byName["G"].cfg.Redundancy.Peers, netip.MustParseAddr("192.0.2.3"))
	sa, kd, seq, _ := pri.Announce("G", now)
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err != nil {
		t.Fatal(err)
	}
	hear(pri, sec)
	seen, refused := registerSIDs(t, []*Server{pri, sec})
	if len(seen) != 0 || refused != 40 {
		t.Fatalf("while the KS sets differ: %d IDs handed out, %d of 40 registrations refused", len(seen), refused)
	}
	if got := pri.SIDRefusedKSSet() + sec.SIDRefusedKSSet(); got != 40 {
		t.Fatalf("SIDRefusedKSSet = %d, want 40", got)
	}
	if n := sec.byName["G"].members.len(); n != 0 {
		t.Fatalf("a refused GM was recorded as a member (%d)", n)
	}
}

// proves: C1 (issue 16: sender IDs disjoint across KSs, RFC 6054): when
// the secondary's configuration catches up (the same three KSs) and the
// KSs hear each other again, sender IDs flow from both, disjoint; a
// peer never heard does not block registrations.
func TestSenderIDsFlowAfterKSSetsAgree(t *testing.T) {
	pri, sec := coopPair(t)
	// Never heard: each serves on its own view (the same here).
	if seen, refused := registerSIDs(t, []*Server{pri, sec}); refused != 0 || len(seen) != 40 {
		t.Fatalf("peers not heard yet: %d IDs, %d refused", len(seen), refused)
	}
	pri, sec = coopPair(t)
	third := netip.MustParseAddr("192.0.2.3")
	pri.byName["G"].cfg.Redundancy.Peers = append(pri.byName["G"].cfg.Redundancy.Peers, third)
	sa, kd, seq, _ := pri.Announce("G", now)
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err != nil {
		t.Fatal(err)
	}
	hear(pri, sec)
	if _, refused := registerSIDs(t, []*Server{pri, sec}); refused != 40 {
		t.Fatalf("disagreeing: %d refused, want 40", refused)
	}
	sec.byName["G"].cfg.Redundancy.Peers = append(sec.byName["G"].cfg.Redundancy.Peers, third)
	hear(pri, sec)
	seen, refused := registerSIDs(t, []*Server{pri, sec})
	if refused != 0 || len(seen) != 40 {
		t.Fatalf("after agreement: %d IDs handed out, %d refused", len(seen), refused)
	}
}
