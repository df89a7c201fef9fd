package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/dataplane"
)

// The lab's members run the ESP engine without root: after registering
// with the lab KS, each member's engine holds the TEKs its GM downloaded,
// and synthetic UDP between the hosts behind the members (on both the
// AES-GCM and the AES-CBC SA) is encapsulated by the sender, crosses the
// UDP sockets as ESP (never the plaintext marker) and is decapsulated and
// delivered by the receiver.
// proves: E1 (issue 12: the lab runs the ESP engine without root)
func TestLabDataPlaneProtectsAndDelivers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 3, Port: 22848, Dir: t.TempDir(), DataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := l.Traffic(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Print(&out)
	t.Log(out.String())
	// 3 members, 2 peers each, one packet per SA.
	if r.Sent != 12 || r.Delivered != 12 || !r.DeliveredAll {
		t.Errorf("sent %d, delivered %d", r.Sent, r.Delivered)
	}
	if r.Wire != 12 || r.WireMarker != 0 || r.WireNotESP != 0 || !r.Safe {
		t.Errorf("on the wire: %d datagrams, %d with the marker, %d not ESP", r.Wire, r.WireMarker, r.WireNotESP)
	}
	if len(r.SPIs) != 2 {
		t.Errorf("SPIs %x, want the two TEKs of the group", r.SPIs)
	}
	for _, m := range r.Members {
		if m.Stats.Encaps != 4 || m.Stats.Decaps != 4 || m.Delivered != 4 || m.Drops() != 0 || m.Link.Sent != 4 || m.Link.Received != 4 {
			t.Errorf("%s: encaps %d decaps %d delivered %d drops %d link %+v", m.Name, m.Stats.Encaps, m.Stats.Decaps, m.Delivered, m.Drops(), m.Link)
		}
	}
	if !strings.Contains(out.String(), "12 of 12 packets delivered") {
		t.Errorf("summary:\n%s", out.String())
	}
	// The member's show command reads its engine's counters: 2 packets
	// sealed and 2 opened on each SA, none dropped.
	res := l.GMs[0].Ctl.Exec(ctx, "show crypto ipsec sa")
	if !res.OK || strings.Count(res.Text, "#pkts encaps: 2, #pkts encrypt: 2, #pkts digest: 2") != 2 ||
		strings.Count(res.Text, "#pkts decaps: 2, #pkts decrypt: 2, #pkts verify: 2") != 2 ||
		!strings.Contains(res.Text, "lab-gm1 (in-memory TUN; ESP in UDP on 127.0.2.1:") {
		t.Errorf("show crypto ipsec sa on gm1:\n%s%s", res.Text, res.Error)
	}
}

// The wire check sees plaintext: a datagram carrying the marker, or one
// that is not ESP for a TEK of the group, is counted (the check above can
// fail).
func TestLabWireCheckSeesPlaintext(t *testing.T) {
	m := &dpMember{}
	spis := map[uint32]bool{0x1234: true}
	m.spis.Store(&spis)
	m.mirror(dataplane.Sent, udpPacket(HostAddr(0, false), HostAddr(1, false), 7000, Marker))
	m.mirror(dataplane.Sent, []byte{0, 0, 0x12, 0x34, 0, 0, 0, 1, 9, 9})
	m.mirror(dataplane.Received, []byte(Marker)) // counted by the sender's mirror
	if m.wireSent.Load() != 2 || m.wireMarker.Load() != 1 || m.wireNotESP.Load() != 1 {
		t.Errorf("sent %d, marker %d, not ESP %d", m.wireSent.Load(), m.wireMarker.Load(), m.wireNotESP.Load())
	}
}
