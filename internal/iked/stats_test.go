package iked

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

func counterValue(cs []ike.Counter, name string) (uint64, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// proves: S5 (issue 11 item 8: the drops iked makes before a datagram
// reaches isakmpd — short datagrams, ESP on the NAT-T port, datagrams of
// an IKE version no daemon serves — reach the daemon through the broker
// protocol's stats request, by name, with their help text, followed by
// the client's own: a datagram for an address it has no Conn on)
func TestClientStatsCarriesBrokerDrops(t *testing.T) {
	p := freePort(t, "127.0.0.1")
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
	inv := &inventory{}
	inv.set(a)
	s, path, _ := startServer(t, Options{Ports: []uint16{p}, NATTPort: p, Inventory: inv.get})
	c := dial(t, path, "isakmpd", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(Stats{}.Counters())+2 {
		t.Fatalf("stats answer has %d counters, want %d and the client's 2: %+v", len(before), len(Stats{}.Counters()), before)
	}
	for _, k := range before {
		if k.Help == "" || k.Value != 0 {
			t.Errorf("counter %+v before any traffic: want a help text and 0", k)
		}
	}

	pr := peer(t, "127.0.0.1")
	send(t, pr, []byte{0, 0, 0, 0, 1, 2, 3}, a)                          // marker, then less than a header
	send(t, pr, append([]byte{0, 0, 0x10, 1}, make([]byte, 40)...), a)   // ESP
	send(t, pr, append([]byte{0, 0, 0, 0}, ikeMsg(0x20, "IKEv2")...), a) // no ikev2d
	send(t, pr, append([]byte{0, 0, 0, 0}, ikeMsg(0x10, "IKEv1")...), a) // isakmpd has no Conn open on a
	eventually(t, "drops counted", func() bool {
		st := s.Stats()
		return st.Short == 1 && st.ESP == 1 && st.NoDaemon == 1 && c.Dropped() == 1
	})
	after, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{"received": 4, "short": 1, "esp_on_natt_port": 1, "no_daemon": 1, "forwarded": 1, "daemon_unclaimed": 1, "daemon_bad_frames": 0} {
		if got, ok := counterValue(after, name); !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", name, got, ok, want)
		}
	}
}

// proves: S5 (a stats answer carrying a counter this side does not know is
// kept by name; one that is not snake_case never parses, so it cannot
// reach a show command)
func TestStatsAnswerNames(t *testing.T) {
	b, err := AppendFrame(nil, &Frame{Type: FrameStatsAnswer, ID: 1, Counters: []FrameCounter{{Name: "future_counter_2", Value: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFrame(b)
	if err != nil || len(f.Counters) != 1 || f.Counters[0] != (FrameCounter{"future_counter_2", 7}) {
		t.Fatalf("parse = %+v, %v", f, err)
	}
	for _, bad := range []string{"", "Short", "a b", "\x1b[2J", string(make([]byte, MaxCounterName+1))} {
		if _, err := AppendFrame(nil, &Frame{Type: FrameStatsAnswer, Counters: []FrameCounter{{Name: bad}}}); err == nil {
			t.Errorf("AppendFrame accepted counter name %q", bad)
		}
	}
}
