package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

func gmState(t *testing.T, n *Node) MemberState {
	var m MemberState
	n.Do(context.Background(), func() { m = n.Members()[0] })
	return m
}

func ksMembers(t *testing.T, n *Node) []ks.Member {
	var ms []ks.Member
	n.Do(context.Background(), func() { ms = n.ks.Snapshot(n.Now())[0].Members })
	return ms
}

// proves: T1 — over three simulated days of unicast rekeys with
// acknowledgements, every GM always holds a valid TEK, receives every
// rekey before its keys expire (so it never needs to re-register), and
// the KS records an acknowledgement from each GM for each rekey.
func TestUnicastRekeysOverDays(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	start0 := clk.Now()
	ksAddr := netip.MustParseAddr("127.0.0.6")
	grp := ksGroup(t, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now})
	var gms []*Node
	for i := 0; i < 5; i++ {
		gms = append(gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.0.%d:0", 60+i))},
			IKE: ikeCfg("k", version.Current), Now: clk.Now, GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}}))
	}
	for _, g := range gms {
		waitFor(t, "first registration", g, func() bool { return g.Members()[0].State == "registered" })
	}
	for clk.Now().Sub(start0) < 72*time.Hour {
		clk.Add(30 * time.Second)
		now := clk.Now()
		kn.Do(ctx, func() {})
		for _, g := range gms {
			g.Do(ctx, func() {})
		}
		// Let rekeys and ACKs cross loopback before time moves on.
		deadline := time.Now().Add(5 * time.Second)
		for {
			var left int
			var info string
			kn.Do(ctx, func() {
				left = kn.delivery.InFlight()
				for _, f := range kn.delivery.Flights() {
					info += fmt.Sprintf("seq %d queue %d pending %d next %s; ", f.Push.Seq, f.Queued, f.Pending, f.Next.Sub(clk.Now()))
				}
				info += fmt.Sprintf("stats %+v acks %+v", kn.stats, kn.delivery.Stats())
			})
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("at +%s deliveries stuck: %s", clk.Now().Sub(start0), info)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, g := range gms {
			valid := false
			for _, tk := range g.Dataplane().TEKs() {
				if now.Before(tk.Expires) {
					valid = true
				}
			}
			if !valid {
				t.Fatalf("at +%s a GM holds no valid TEK", now.Sub(start0))
			}
		}
	}
	var rekeys int
	kn.Do(ctx, func() { rekeys = kn.ks.Snapshot(kn.Now())[0].Rekeys })
	if rekeys < 72 {
		t.Fatalf("%d rekeys in 72 h with 1-2 h TEKs", rekeys)
	}
	for _, g := range gms {
		m := gmState(t, g)
		if m.Registrations != 1 || m.Rekeys.Received != rekeys || m.Rekeys.Rejected != 0 {
			t.Fatalf("GM: %d registrations, %d of %d rekeys, %d rejected", m.Registrations, m.Rekeys.Received, rekeys, m.Rekeys.Rejected)
		}
	}
	for _, m := range ksMembers(t, kn) {
		if m.AcksReceived != rekeys || m.AcksMissed != 0 {
			t.Fatalf("KS: member %s acked %d of %d rekeys", m.Address, m.AcksReceived, rekeys)
		}
	}
}

// proves: T1 — a unicast rekey reaches 200 GMs over loopback and every one
// of them acknowledges it (RFC 8263).
func TestRekeyTo200GMs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.7")
	grp := ksGroup(t, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true, Retransmit: time.Second}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{grp}})
	var gms []*Node
	for i := 0; i < 200; i++ {
		gms = append(gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, 7, byte(i + 1)}), 0)},
			IKE: ikeCfg("k", version.Current), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}}))
	}
	for _, g := range gms {
		waitFor(t, "registration", g, func() bool { return g.Members()[0].State == "registered" })
	}
	kn.Do(ctx, func() {
		if err := kn.sendRekey("GETVPN", time.Now()); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "every ACK", kn, func() bool {
		for _, m := range kn.ks.Snapshot(kn.Now())[0].Members {
			if m.AcksReceived != 1 {
				return false
			}
		}
		return kn.delivery.InFlight() == 0
	})
	for _, g := range gms {
		if m := gmState(t, g); m.Rekeys.Received != 1 || m.Rekeys.AcksSent != 1 {
			t.Fatalf("GM rekey stats %+v", m.Rekeys)
		}
	}
}

// proves: T1 — a GM whose ACKs never reach the KS is dropped from the
// rekey list after three unacknowledged rekeys, and re-registers (and is
// back on the list) before its keys run out.
func TestSilentGMIsDroppedAndReregisters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	ksAddr := netip.MustParseAddr("127.0.0.8")
	grp := ksGroup(t, ksAddr)
	grp.TEKs = grp.TEKs[:1]
	grp.Rekey = ks.RekeyPolicy{Unicast: true, Retransmit: 2 * time.Second, Retransmits: 1}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now})
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.80:0")}, IKE: ikeCfg("k", version.Current),
		Now: clk.Now, GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	dropAcks(t, gmn, true)
	for i := 0; i < 3; i++ {
		kn.Do(ctx, func() { kn.sendRekey("GETVPN", clk.Now()) })
		waitFor(t, "the rekey to reach the GM", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == i+1 })
		for j := 0; j < 3; j++ { // let the retransmission and the give-up run in fake time
			clk.Add(2 * time.Second)
			kn.Do(ctx, func() {})
		}
		waitFor(t, "the delivery to end", kn, func() bool { return kn.delivery.InFlight() == 0 })
	}
	m := ksMembers(t, kn)[0]
	if !m.Removed || m.AcksMissed != 3 {
		t.Fatalf("after 3 unacknowledged rekeys: %+v", m)
	}
	// proves: O2 (issue 14 item 4: `show crypto gdoi ks members` counts the
	// rekeys sent to each member and their retransmissions).
	if m.RekeysSent != 3 || m.RekeyRetries != 3 {
		t.Fatalf("after 3 unicast rekeys with 1 retransmission each: %d sent, %d retries", m.RekeysSent, m.RekeyRetries)
	}
	// Off the list, it gets no more rekeys; before its TEK runs out it
	// re-registers and is back.
	for i := 0; i < 400 && gmState(t, gmn).Registrations < 2; i++ {
		clk.Add(15 * time.Second)
		kn.Do(ctx, func() {})
		gmn.Do(ctx, func() {})
		waitFor(t, "registration to settle", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	}
	if gmState(t, gmn).Registrations != 2 || ksMembers(t, kn)[0].Removed {
		t.Fatalf("GM did not re-register: %+v / %+v", gmState(t, gmn), ksMembers(t, kn)[0])
	}
}

// proves: T1 — replayed, forged (another signer) and corrupted rekeys are
// rejected and counted; a retransmitted one is recognised as a duplicate.
func TestReplayedAndForgedRekeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := netip.MustParseAddr("127.0.0.9")
	grp := ksGroup(t, ksAddr)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{grp}})
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.90:0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	var pushes [][]byte
	for i := 0; i < 2; i++ {
		kn.Do(ctx, func() {
			kn.sendRekey("GETVPN", time.Now())
			pushes = append(pushes, kn.delivery.Flights()[kn.delivery.InFlight()-1].Push.Data)
		})
		waitFor(t, "rekey", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == i+1 })
	}
	inject := func(b []byte) {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gmn.Addrs()[0]))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.Close()
	}
	inject(pushes[0]) // seq 1 after seq 2: a replay
	waitFor(t, "replay counted", gmn, func() bool { return gmn.Members()[0].Rekeys.Replayed == 1 })
	inject(pushes[1]) // seq 2 again: a retransmission
	waitFor(t, "duplicate counted", gmn, func() bool { return gmn.Members()[0].Rekeys.Duplicate == 1 })
	bad := append([]byte{}, pushes[1]...)
	bad[len(bad)-5] ^= 0x40
	inject(bad)
	waitFor(t, "corruption counted", gmn, func() bool { return gmn.Members()[0].Rekeys.Rejected == 1 })
	// Forged: the right KEK (a GM knows it) but another signing key.
	k := gmn.KEKStore().KEKs()[0]
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, err := gdoi.SealPush(&gdoi.Rekey{Seq: 99, SA: &isakmp.GroupSA{}, KD: &isakmp.KD{}}, gdoi.KEK{SPI: k.SPI, Key: k.Key}, other, isakmp.SigAlgECDSA256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inject(forged)
	waitFor(t, "forgery counted", gmn, func() bool { return gmn.Members()[0].Rekeys.Rejected == 2 })
	if m := gmState(t, gmn); m.Rekeys.Received != 2 || m.Seq != 2 {
		t.Fatalf("the GM accepted something it should not have: %+v", m)
	}
}

// proves: T2 — with time-based anti-replay and day-long keys, the KS still
// rekeys every 7200 s to resynchronise pseudotime, and the GMs' pseudotime
// tracks the KS's.
func TestTBARResyncOverADay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	start0 := clk.Now()
	ksAddr := netip.MustParseAddr("127.0.0.12")
	grp := ksGroup(t, ksAddr)
	grp.TEKs = grp.TEKs[:1]
	grp.TEKs[0].Lifetime = 24 * time.Hour
	grp.TEKs[0].Replay, grp.TEKs[0].ReplayWindow = isakmp.ReplayTime, 5
	grp.KEKLifetime = 86400 * time.Second
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{grp}, Now: clk.Now})
	gmn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.120:0")}, IKE: ikeCfg("k", version.Current),
		Now: clk.Now, GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	for clk.Now().Sub(start0) < 20*time.Hour {
		clk.Add(time.Minute)
		kn.Do(ctx, func() {})
		waitFor(t, "deliveries", kn, func() bool { return kn.delivery.InFlight() == 0 })
		gmn.Do(ctx, func() {})
	}
	var snap ks.GroupSnapshot
	kn.Do(ctx, func() { snap = kn.ks.Snapshot(clk.Now())[0] })
	if want := int(20 * time.Hour / ks.TBARResync); snap.Rekeys < want {
		t.Fatalf("%d rekeys in 20 h, want at least %d TBAR resyncs", snap.Rekeys, want)
	}
	tek := gmn.Dataplane().TEKs()[len(gmn.Dataplane().TEKs())-1]
	if d := tek.PseudotimeNow(clk.Now()) - snap.Pseudotime; d < -time.Second || d > time.Second {
		t.Fatalf("GM pseudotime off the KS's by %s", d)
	}
}
