package ikev2d

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
)

// lockedBuf is a bytes.Buffer the router's loop writes while the test
// reads.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proves: S6 (an authenticated peer is hostile input too) — a member
// that authenticates (IKE_SA_INIT, GSA_AUTH) 40 times, each time for
// another group number the KS does not serve, is refused and counted each
// time (Key server refused 40), but the router (its clock held still)
// logs "G-IKEv2 registration refused" 10 times, rate-limited per peer;
// another peer's refusal right after is still logged; a member that
// registers and then sends 40 leaves (GSA_REGISTRATION with
// N(REGISTRATION_FAILED)) is logged 10 times too; show crypto ikev2
// statistics' log_records_suppressed counts what was left out.
func TestRefusedRegistrationsLogRateLimited(t *testing.T) {
	local := netip.MustParseAddr("127.0.0.1")
	t0 := time.Now()
	var logs lockedBuf
	r, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}},
		Options{Listen: []netip.AddrPort{netip.AddrPortFrom(local, 0)}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	to := r.Addrs()[0]
	type member struct {
		conn *net.UDPConn
		ep   *ikev2.Endpoint
	}
	newMember := func(addr netip.Addr) *member {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ep, err := ikev2.NewEndpoint(&ikev2.Config{Creds: psk(), AuthExchange: wire.ExchangeGSAAuth}, conn.LocalAddr().(*net.UDPAddr).AddrPort(), ikev2.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return &member{conn, ep}
	}
	// exchange sends out and reads answers until the endpoint reports an
	// event, which it returns.
	exchange := func(m *member, out ikev2.Output) ikev2.Event {
		t.Helper()
		buf := make([]byte, 65536)
		for {
			for _, p := range out.Send {
				m.conn.WriteToUDPAddrPort(p.Data, p.To)
			}
			m.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := m.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no answer from the router %s: %v\n%s", to, err, logs.String())
			}
			out = m.ep.Handle(from, buf[:n], time.Now())
			if len(out.Events) > 0 {
				for _, p := range out.Send {
					m.conn.WriteToUDPAddrPort(p.Data, p.To)
				}
				return out.Events[0].Event
			}
		}
	}
	register := func(m *member, group uint32, payloads ...wire.Payload) (*ikev2.SA, ikev2.Event) {
		t.Helper()
		sa, out, err := m.ep.InitiateWith(to, append([]wire.Payload{wire.GroupKeyID(group)}, payloads...), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sa, exchange(m, out)
	}
	flooder := newMember(local)
	const attempts = 40
	for i := range attempts {
		if _, ev := register(flooder, 7000+uint32(i)); ev == nil {
			t.Fatalf("attempt %d: no event", i)
		} else if _, ok := ev.(ikev2.Established); ok {
			t.Fatalf("attempt %d: established for a group the KS does not serve", i)
		}
	}
	other := newMember(netip.MustParseAddr("127.0.0.2"))
	if _, ev := register(other, 6999); ev == nil {
		t.Fatal("no event")
	}
	var refused uint64
	r.Do(context.Background(), func() { refused = r.ks.Refused })
	lines := strings.Count(logs.String(), "G-IKEv2 registration refused")
	t.Logf("%d refused registrations, %d lines", refused, lines)
	if refused != attempts+1 || lines != 11 || !strings.Contains(logs.String(), "peer=127.0.0.2:") {
		t.Fatalf("%d refused, %d lines logged, want %d and 10 of one peer's and the other peer's:\n%s", refused, lines, attempts+1, logs.String())
	}

	// A member of the group leaving again and again (from an address of
	// its own: the budget is per peer, refusals and leaves alike).
	leaver := newMember(netip.MustParseAddr("127.0.0.3"))
	sa, ev := register(leaver, 90, gikev2.Request{Group: 90, SAg: gikev2.SupportedSAg()}.Payloads()[1:]...)
	if _, ok := ev.(ikev2.Established); !ok {
		t.Fatalf("registration for the served group: %#v\n%s", ev, logs.String())
	}
	for range attempts {
		out, err := leaver.ep.Request(sa, wire.ExchangeGSARegistration, gikev2.Request{Group: 90, Leave: wire.NotifyRegistrationFailed}.Payloads(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := exchange(leaver, out).(ikev2.Response); !ok {
			t.Fatal("a leave not answered")
		}
	}
	var left uint64
	var stats string
	r.Do(context.Background(), func() { left, stats = r.ks.Left, r.showStats() })
	if leaves := strings.Count(logs.String(), "G-IKEv2 member left"); left != attempts || leaves != 10 {
		t.Fatalf("%d leaves counted, %d lines logged, want %d and 10:\n%s", left, leaves, attempts, logs.String())
	}
	if want := fmt.Sprintf("  %-26s %d\n", "log_records_suppressed", attempts-10+attempts-10); !strings.Contains(stats, want) {
		t.Fatalf("show statistics does not count the suppressed lines (%q):\n%s", want, stats)
	}
}
