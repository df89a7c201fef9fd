package node

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// lose4 is a GM socket on a network that loses the KS's first GROUPKEY-PULL
// message 4 (the second GROUPKEY-PULL message of a Message ID to arrive).
type lose4 struct {
	*net.UDPConn
	mu   sync.Mutex
	seen map[uint32]int
	lost int
}

func (c *lose4) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		k, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil || k < isakmp.HeaderLen || isakmp.ExchangeType(b[18]) != isakmp.ExchangePull {
			return k, from, err
		}
		c.mu.Lock()
		mid := binary.BigEndian.Uint32(b[20:24])
		c.seen[mid]++
		drop := c.seen[mid] == 2 && c.lost == 0
		if drop {
			c.lost++
		}
		c.mu.Unlock()
		if !drop {
			return k, from, err
		}
	}
}

func (c *lose4) losses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// lostMessage4Lab is a KS (unicast rekeys, on the lab's clock) and one GM
// whose first message 4 the network loses, started (not yet registered).
func lostMessage4Lab(t *testing.T, ctx context.Context, ksAddr netip.Addr, gmAddr string) (*restartLab, *lose4) {
	l := &restartLab{t: t, ctx: ctx, clk: &fakeClock{now: time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)},
		path: filepath.Join(t.TempDir(), "ks.db"), grp: ksGroup(t, ksAddr)}
	l.grp.TEKs = l.grp.TEKs[:1]
	l.startKS(netip.AddrPortFrom(ksAddr, 0))
	l.addr = l.ks.Addrs()[0]
	var conn *lose4
	listen := func(a netip.AddrPort) (PacketConn, error) {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, err
		}
		conn = &lose4{UDPConn: c, seen: map[uint32]int{}}
		return conn, nil
	}
	l.gms = append(l.gms, start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(gmAddr)},
		IKE: ikeCfg("k", version.Current), Now: l.clk.Now, ListenPacket: listen,
		GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{l.addr}, SIDs: 1}}}))
	waitFor(t, "the first message 4 lost", l.gms[0], func() bool { return conn.losses() == 1 })
	return l, conn
}

func ksCounter(t *testing.T, n *Node, name string) uint64 {
	var v uint64
	n.Do(context.Background(), func() { v = counter(n.KSCounters(), name) })
	return v
}

// proves: issue 18 (a served GROUPKEY-PULL keeps what its message 4 is
// made of, not its octets) and R2 (a member whose answer is lost holds
// valid keys again within its retransmission) — over real UDP, the network
// loses the KS's first message 4; the GM sends message 3 again after its
// pull timeout and the KS answers with message 4 built again
// (pulls_answered_again): the GM registers over that same exchange, once,
// with the group's TEKs and the sender ID the KS recorded, and the KS
// counts one registration of it.
func TestLostMessage4AnsweredAgain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _ := lostMessage4Lab(t, ctx, netip.MustParseAddr("127.0.0.190"), "127.0.9.10:0")
	took, ok := l.pump(15*time.Second, l.current)
	if !ok {
		t.Fatalf("GM not registered %s after its message 4 was lost: %+v", took, gmState(t, l.gms[0]))
	}
	t.Logf("registered %s (simulated) after the lost message 4", took)
	if again, gone := ksCounter(t, l.ks, "pulls_answered_again"), ksCounter(t, l.ks, "pulls_answer_gone"); again != 1 || gone != 0 {
		t.Fatalf("pulls_answered_again %d, pulls_answer_gone %d; want 1 and 0", again, gone)
	}
	ms := ksMembers(t, l.ks)
	if len(ms) != 1 || ms[0].Registrations != 1 {
		t.Fatalf("KS members %+v, want one registered once", ms)
	}
	if m := gmState(t, l.gms[0]); m.Registrations != 1 || m.Failures != 0 {
		t.Fatalf("GM %+v, want one registration and no failure", m)
	}
	var sids []uint32
	l.gms[0].Do(ctx, func() {
		for _, tk := range l.gms[0].Dataplane().TEKs() {
			sids = append(sids, tk.SenderIDs...)
		}
	})
	if len(sids) == 0 || sids[0] != ms[0].SenderIDs[0] {
		t.Fatalf("GM sends with sender IDs %v, the KS recorded %v", sids, ms[0].SenderIDs)
	}
}

// proves: issue 18, R2 and T4 (no member is handed keys that are no longer
// the group's; it holds valid keys again within the window) — the network
// loses the KS's first message 4 and the KS rekeys before the GM's message
// 3 comes again: that message 4 is not built again with the replaced keys
// (pulls_answer_gone), and once its retransmissions end the GM registers
// with a new exchange and holds the group's current TEKs.
func TestLostMessage4NotAnsweredAfterARekey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _ := lostMessage4Lab(t, ctx, netip.MustParseAddr("127.0.0.191"), "127.0.9.11:0")
	l.ks.Do(ctx, func() {
		if err := l.ks.sendRekey("GETVPN", l.clk.Now()); err != nil {
			t.Error(err)
		}
	})
	took, ok := l.pump(60*time.Second, l.current)
	if !ok {
		t.Fatalf("GM without the group's keys %s after its message 4 was lost and the KS rekeyed: %+v", took, gmState(t, l.gms[0]))
	}
	t.Logf("holds the group's TEKs %s (simulated) after the rekey", took)
	if again, gone := ksCounter(t, l.ks, "pulls_answered_again"), ksCounter(t, l.ks, "pulls_answer_gone"); again != 0 || gone == 0 {
		t.Fatalf("pulls_answered_again %d, pulls_answer_gone %d; want 0 and at least 1", again, gone)
	}
}
