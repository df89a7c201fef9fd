package coop

import (
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
)

// FuzzElector feeds arbitrary sequences of announcements (from configured
// and unconfigured addresses, any role, priority, version and sequence
// number) and ticks at arbitrary times to one key server.
//
// proves: C1 (issue 16: no input sequence panics the election; sends go
// only to configured peers with increasing sequence numbers; every
// announcement is accepted or counted as a drop; a primary never keeps
// its role while a better primary is reachable; Tick always leaves a
// deadline in the future; per-peer state stays at the configured peers)
func FuzzElector(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 100, 2, 0, 1, 0, 0, 30})                          // a primary announces, then ticks
	f.Add([]byte{0, 1, 1, 200, 2, 0, 1, 1, 0, 0, 0, 1, 1, 200, 2, 0, 1, 0}) // replay
	f.Add([]byte{0, 3, 2, 255, 2, 0, 1, 1, 0, 0, 90, 1, 0, 0})              // unconfigured, then long silence
	f.Add([]byte{1, 0, 0, 25, 0, 2, 2, 255, 2, 0, 1, 1, 0, 0, 250})
	f.Add([]byte{0, 1, 2, 100, 2, 0, 1, 5, 6, 1, 30, 5, 7, 7, 1})     // primary, then removed and added back
	f.Add([]byte{5, 0x81, 1, 30, 7, 1, 0, 1, 2, 100, 2, 0, 1, 1, 60}) // a refused list, a session
	f.Fuzz(func(t *testing.T, b []byte) {
		local := addr("10.0.0.5")
		peers := []netip.Addr{addr("10.0.0.1"), addr("10.0.0.9"), addr("10.0.0.7")}
		froms := append(peers, addr("192.0.2.1"), local)
		e, err := New(Config{Group: "G", Local: local, Priority: 100, Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		lastSeq := map[netip.Addr]uint32{}
		var receives uint64
		check := func(res Result, tick bool) {
			for _, s := range res.Send {
				if e.peers[s.To] == nil {
					t.Fatalf("sent to %v, not a peer", s.To)
				}
				if s.Ann.Seq <= lastSeq[s.To] {
					t.Fatalf("sequence %d to %v after %d", s.Ann.Seq, s.To, lastSeq[s.To])
				}
				lastSeq[s.To] = s.Ann.Seq
				if s.Ann.Role != e.Role() && len(res.Events) == 0 {
					t.Fatalf("announced %v as %v", s.Ann.Role, e.Role())
				}
			}
			if tick && !res.Timer.After(now) {
				t.Fatalf("Tick at %v left the deadline %v", now, res.Timer)
			}
			if len(e.peers) != len(e.order) || len(e.Peers()) != len(e.order) || len(e.order) > len(peers) {
				t.Fatalf("%d peers held, %d configured", len(e.peers), len(e.order))
			}
			st := e.Stats()
			if st.Accepted+st.Replayed+st.Unknown+st.Invalid+st.Incompatible != receives {
				t.Fatalf("stats %+v do not account for %d announcements", st, receives)
			}
			switch e.Role() {
			case Primary:
				if e.Primary() != local {
					t.Fatalf("primary following %v", e.Primary())
				}
				if bp := e.bestPrimary(); bp != nil && better(bp.Priority, bp.Addr, 100, local) {
					t.Fatalf("still primary beside the better primary %v", bp.Addr)
				}
			case Secondary:
				if p := e.Primary(); !p.IsValid() || e.peers[p] == nil {
					t.Fatalf("secondary following %v, not a peer", p)
				}
			case Electing:
				if p := e.Primary(); p.IsValid() {
					t.Fatalf("electing but following %v", p)
				}
			default:
				t.Fatalf("role %v", e.Role())
			}
		}
		check(e.Start(now), true)
		if e.Role() != Electing {
			t.Fatalf("started as %v", e.Role())
		}
		for len(b) >= 2 {
			op, arg := b[0], b[1]
			b = b[2:]
			if op%8 == 5 {
				var set []netip.Addr
				for i, p := range peers {
					if arg&(1<<i) != 0 {
						set = append(set, p)
					}
				}
				if arg&0x80 != 0 {
					set = append(set, local) // refused
				}
				res, err := e.SetPeers(set, now)
				if (err != nil) != (arg&0x80 != 0) {
					t.Fatalf("SetPeers(%v): %v", set, err)
				}
				for _, p := range peers {
					if e.peers[p] == nil {
						delete(lastSeq, p)
					}
				}
				check(res, false)
				continue
			}
			if op%8 == 7 {
				if p := e.peers[froms[int(arg)%len(froms)]]; p != nil {
					lastSeq[p.Addr] = 0
				}
				check(e.Session(froms[int(arg)%len(froms)], now), false)
				continue
			}
			if op%2 == 1 || len(b) < 5 {
				now = now.Add(time.Duration(arg) * time.Second)
				check(e.Tick(now), true)
				continue
			}
			ann := Announcement{Role: Role(b[0] % 4), Priority: b[1], Version: version.Version{Major: 1, Minor: b[2] % 2, Mini: b[3]},
				Seq: uint32(b[4]), ReplyRequest: b[3]%2 == 1}
			b = b[5:]
			now = now.Add(time.Duration(arg) * 100 * time.Millisecond)
			receives++
			check(e.Receive(froms[int(op/2)%len(froms)], ann, now), false)
		}
	})
}
