package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
)

// pushLab is a KS with unicast, acknowledged rekeys and one registered GM.
func pushLab(t *testing.T, ctx context.Context, ksAddr, gmAddr string, gmLog ...*syncBuf) (kn, gmn *Node) {
	t.Helper()
	a := netip.MustParseAddr(ksAddr)
	grp := ksGroup(t, a)
	grp.Rekey = ks.RekeyPolicy{Unicast: true}
	kn = start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(a, 0)}, IKE: ikeCfg("k", version.Current), KS: []ks.GroupConfig{grp}})
	o := Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(gmAddr + ":0")}, IKE: ikeCfg("k", version.Current),
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}}
	if len(gmLog) > 0 {
		o.Logger = slog.New(slog.NewTextHandler(gmLog[0], nil))
	}
	gmn = start(t, ctx, o)
	waitFor(t, "registration", gmn, func() bool { return gmn.Members()[0].State == "registered" })
	return kn, gmn
}

// rekey sends a rekey and returns its datagram once the GM applied it.
func rekey(t *testing.T, ctx context.Context, kn, gmn *Node) []byte {
	t.Helper()
	var data []byte
	want := gmState(t, gmn).Rekeys.Received + 1
	kn.Do(ctx, func() {
		if err := kn.sendRekey("GETVPN", time.Now()); err != nil {
			t.Fatal(err)
		}
		data = kn.delivery.Flights()[kn.delivery.InFlight()-1].Push.Data
	})
	waitFor(t, "the rekey", gmn, func() bool { return gmn.Members()[0].Rekeys.Received == want })
	return data
}

// proves: S5 (issue 11 item 9) — a GM answers a replayed copy of its
// latest rekey with an ACK to the key server it registered with, never to
// the datagram's (forged) source: the replayer receives nothing, the KS
// receives the ACK (and counts it as one for no rekey in flight).
func TestReplayedPushAckedOnlyToTheKS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kn, gmn := pushLab(t, ctx, "127.0.0.140", "127.0.0.141")
	data := rekey(t, ctx, kn, gmn)
	waitFor(t, "the delivery to finish", kn, func() bool { return kn.delivery.InFlight() == 0 })

	replayer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.142:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer replayer.Close()
	if _, err := replayer.WriteToUDPAddrPort(data, gmn.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the duplicate", gmn, func() bool { return gmn.Members()[0].Rekeys.Duplicate == 1 })
	replayer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 2048)
	if k, from, err := replayer.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("the GM answered the replayer: %d octets from %s", k, from)
	}
	waitFor(t, "the ACK at the KS", kn, func() bool { return kn.delivery.Stats().Unknown == 1 })
}

// proves: S5 (issue 11 item 9) — a GM checks a rekey's sequence number
// before its signature: a push with a stale sequence number and a signature
// by another key is counted as a replay (dropped before the costly
// verification), not as a bad signature; one with a fresh sequence number
// and the same bad signature is rejected and changes nothing.
func TestStalePushDroppedBeforeItsSignature(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kn, gmn := pushLab(t, ctx, "127.0.0.143", "127.0.0.144")
	rekey(t, ctx, kn, gmn)
	rekey(t, ctx, kn, gmn)
	k := gmn.KEKStore().KEKs()[0]
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint32) {
		b, err := gdoi.SealPush(&gdoi.Rekey{Seq: seq}, gdoi.KEK{SPI: k.SPI, Key: k.Key}, forger, k.SigAlg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gmn.Addrs()[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(b)
	}
	last := gmState(t, gmn).Seq
	send(last - 1)
	waitFor(t, "the stale push", gmn, func() bool { return gmn.Members()[0].Rekeys.Replayed == 1 })
	if m := gmState(t, gmn); m.Rekeys.Rejected != 0 {
		t.Fatalf("a stale push went to signature verification: %+v", m.Rekeys)
	}
	send(last + 1)
	waitFor(t, "the forged push", gmn, func() bool { return gmn.Members()[0].Rekeys.Rejected == 1 })
	if m := gmState(t, gmn); m.Seq != last || m.Rekeys.Received != 2 {
		t.Fatalf("a forged push changed the GM's state: %+v", m)
	}
}

func counter(cs []ike.Counter, name string) uint64 {
	for _, c := range cs {
		if c.Name == name {
			return c.Value
		}
	}
	return 0
}

// proves: S5 (issue 11 item 8) — the phase-1 counters are summed over every
// socket and keep what a socket closed by a refresh had counted: they never
// go backwards.
func TestCountersSurviveRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, alias := netip.MustParseAddrPort("127.0.0.150:0"), netip.MustParseAddrPort("127.0.0.151:0")
	n := start(t, ctx, Options{Listen: []netip.AddrPort{a, alias}, IKE: ikeCfg("k", version.Current)})
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.152:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, to := range n.Addrs() {
		c.WriteToUDPAddrPort([]byte("junk"), to)
	}
	waitFor(t, "both malformed datagrams counted", n, func() bool { return counter(n.ISAKMPCounters(), "malformed") == 2 })
	n.Do(ctx, func() {
		if _, _, err := n.Refresh(n.Addrs()[:1]); err != nil {
			t.Error(err)
		}
	})
	c.WriteToUDPAddrPort([]byte("junk"), n.Addrs()[0])
	waitFor(t, "the third", n, func() bool { return counter(n.ISAKMPCounters(), "malformed") == 3 })
}

// proves: T1 (issue 11 item 10) — a rekey started while another is in
// flight supersedes it: only the newest is retransmitted, so a member that
// has not acknowledged either sees sequence numbers rise and counts no
// replay.
func TestNewRekeySupersedesTheOneInFlight(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kn, gmn := pushLab(t, ctx, "127.0.0.145", "127.0.0.146")
	dropAcks(t, gmn, true)
	rekey(t, ctx, kn, gmn)
	rekey(t, ctx, kn, gmn)
	var seqs []uint32
	kn.Do(ctx, func() {
		for _, f := range kn.delivery.Flights() {
			seqs = append(seqs, f.Push.Seq)
		}
		kn.rekeyTick(time.Now().Add(time.Minute)) // retransmissions due
	})
	if len(seqs) != 1 || seqs[0] != gmState(t, gmn).Seq {
		t.Fatalf("deliveries in flight: seq %v", seqs)
	}
	waitFor(t, "the retransmission", gmn, func() bool { return gmn.Members()[0].Rekeys.Duplicate == 1 })
	settle(t, gmn) // anything else the KS sent has arrived
	if m := gmState(t, gmn); m.Rekeys.Replayed != 0 {
		t.Fatalf("the GM counted %d replays", m.Rekeys.Replayed)
	}
}

// proves: S6 (issue 11 item 7, node side) — the log lines hostile rekeys
// cause at a GM are rate-limited: 200 replayed rekeys are all counted but
// write at most a burst of lines (ratelog: 10 at once, 1 a second).
func TestHostileRekeysLogBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gmLog syncBuf
	kn, gmn := pushLab(t, ctx, "127.0.0.147", "127.0.0.148", &gmLog)
	old := rekey(t, ctx, kn, gmn)
	rekey(t, ctx, kn, gmn)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gmn.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 200; i++ {
		c.Write(old)
		if i%50 == 49 {
			waitFor(t, "the replays", gmn, func() bool { return gmn.Members()[0].Rekeys.Replayed == i+1 })
		}
	}
	if n := strings.Count(gmLog.String(), "GM_REKEY_REPLAY"); n > 20 {
		t.Fatalf("200 replayed rekeys wrote %d log lines", n)
	}
}
