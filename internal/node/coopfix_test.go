package node

import (
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

func memberList(n int) []ks.MemberVersion {
	l := make([]ks.MemberVersion, n)
	for i := range l {
		l[i] = ks.MemberVersion{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Version: version.Current}
	}
	return l
}

// proves: C1/C3 (issue 16: a 100,000-member list in flight to a peer is
// not queued again: while its parts are still going out over several
// announcement periods and members keep registering, the announcements
// carry the generation in flight, the peer does not ask for the whole
// list, and the members registered meanwhile follow as one delta; a
// FULL-SYNC request while the list is in flight is not answered by a
// second copy)
func TestCOOPMemberListInFlightNotSentTwice(t *testing.T) {
	var snd, rcv memberSync
	list := memberList(100_000)
	gen := uint64(7)
	sent := 0
	push := func() { // coopSend: queue only when nothing is in flight
		if len(snd.queue) == 0 {
			snd.queue = snd.outgoing(list, gen)
			sent += len(snd.queue)
		}
	}
	deliver := func(k int) { // coopParts: k parts reach the peer
		for i := 0; i < k && len(snd.queue) > 0; i++ {
			p := snd.queue[0]
			snd.queue = snd.queue[1:]
			if !rcv.receive(p.Gen, p) {
				t.Fatalf("part %d/%d dropped", p.Part, p.Parts)
			}
		}
	}
	plain := func() { // a periodic announcement, then the parts of one turn
		push()
		rcv.receive(snd.announceGen(gen), nil)
		deliver(coopPartsPerTurn)
		if rcv.askFull() {
			// The peer's next announcement asks; the sender takes it.
			snd.fullRequested(gen)
			push()
		}
	}
	push() // the session's first announcement: the whole list queued
	first := len(snd.queue)
	plain()
	if first < 700 {
		t.Fatalf("%d parts for 100,000 members", first)
	}
	for turns := 0; len(snd.queue) > 0 && snd.queue[0].Kind == isakmp.MembersFull; turns++ {
		if turns > 50 {
			t.Fatalf("the whole list is still going out after %d periods: %d parts sent for a list of %d", 2*turns, sent, first)
		}
		deliver(60) // the loop's turns between two periods
		// Members register while the list is in flight, which outlasts
		// several announcement periods.
		list = append(list, ks.MemberVersion{Addr: netip.AddrFrom4([4]byte{11, 0, byte(gen >> 8), byte(gen)}), Version: version.Current})
		gen++
		plain()
		plain()
	}
	// Then the delta of the members registered meanwhile.
	for i := 0; i < 10 && len(snd.queue) > 0; i++ {
		deliver(len(snd.queue))
		plain()
	}
	if len(rcv.have) != len(list) || rcv.gen != gen {
		t.Fatalf("peer holds %d members at generation %d, want %d at %d", len(rcv.have), rcv.gen, len(list), gen)
	}
	if sent > first+3 {
		t.Fatalf("%d parts sent for a list of %d parts and one delta: the list went out again", sent, first)
	}

	// A second SA with the peer (both initiated at once: they switch to
	// the one of lowest cookie) after the list went out: nothing again.
	snd.newSession()
	rcv.newSession()
	sent = 0
	plain()
	plain()
	if sent != 0 || rcv.gen != gen || len(rcv.have) != len(list) {
		t.Fatalf("an SA switch after a completed list: %d parts sent again, the peer at generation %d of %d", sent, rcv.gen, gen)
	}

	// A FULL-SYNC request that crosses a whole list in flight is answered
	// by it, not by a second copy: a fresh pair (a restarted KS), whose
	// receiver asks at once since it holds nothing.
	snd, rcv = memberSync{}, memberSync{}
	snd.newSession()
	rcv.newSession()
	push()
	deliver(10)
	if !rcv.askFull() {
		t.Fatal("a peer holding nothing does not ask for the list on a new SA")
	}
	if snd.fullRequested(gen) {
		t.Fatal("a full-list request while the list is in flight was queued again")
	}
	deliver(len(snd.queue))
	push()
	if sent != first || len(snd.queue) != 0 || len(rcv.have) != len(list) {
		t.Fatalf("%d parts sent after the request, want %d", sent, first)
	}
	// A restarted peer (holding nothing) on a new SA after a completed
	// list: it asks, and gets the list again.
	rcv = memberSync{}
	snd.newSession()
	rcv.newSession()
	sent = 0
	plain()
	plain()
	deliver(len(snd.queue))
	if sent != first || len(rcv.have) != len(list) {
		t.Fatalf("a restarted peer: %d parts sent, holds %d members", sent, len(rcv.have))
	}
}
