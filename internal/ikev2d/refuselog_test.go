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
// that authenticates (IKE_SA_INIT, GSA_AUTH) 40 times, each time for a
// group number the KS does not serve, is refused and counted each time
// (Key server refused 40), but the router logs "G-IKEv2 registration
// refused" at most 10 times at once, rate-limited per peer (one line a
// second more while the test runs), and show crypto gdoi statistics'
// log_records_suppressed counts what it left out.
func TestRefusedRegistrationsLogRateLimited(t *testing.T) {
	local := netip.MustParseAddr("127.0.0.1")
	var logs lockedBuf
	r, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}},
		Options{Listen: []netip.AddrPort{netip.AddrPortFrom(local, 0)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	to := r.Addrs()[0]
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ep, err := ikev2.NewEndpoint(&ikev2.Config{Creds: psk(), AuthExchange: wire.ExchangeGSAAuth}, conn.LocalAddr().(*net.UDPAddr).AddrPort(), ikev2.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	send := func(out ikev2.Output) {
		for _, p := range out.Send {
			conn.WriteToUDPAddrPort(p.Data, p.To)
		}
	}
	start := time.Now()
	const attempts = 40
	for i := range attempts {
		_, out, err := ep.InitiateWith(to, []wire.Payload{wire.GroupKeyID(7000 + uint32(i))}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		send(out)
		buf := make([]byte, 65536)
		for done := false; !done; {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var st string
				r.Do(context.Background(), func() { st = r.showStats() })
				t.Fatalf("attempt %d: no answer from the router %s: %v\n%s\n%s", i, to, err, logs.String(), st)
			}
			out := ep.Handle(from, buf[:n], time.Now())
			send(out)
			for _, ev := range out.Events {
				if _, ok := ev.Event.(ikev2.Established); ok {
					t.Fatalf("attempt %d: established for a group the KS does not serve", i)
				}
				done = true
			}
		}
	}
	var refused uint64
	var stats string
	r.Do(context.Background(), func() { refused, stats = r.ks.Refused, r.showStats() })
	lines := strings.Count(logs.String(), "G-IKEv2 registration refused")
	limit := 10 + int(time.Since(start)/time.Second)
	t.Logf("%d refused registrations, %d lines (at most %d)", refused, lines, limit)
	if refused != attempts || lines < 1 || lines > limit {
		t.Fatalf("%d refused, %d lines logged, want %d and 1-%d:\n%s", refused, lines, attempts, limit, logs.String())
	}
	if want := fmt.Sprintf("  %-26s %d\n", "log_records_suppressed", attempts-lines); !strings.Contains(stats, want) {
		t.Fatalf("show statistics does not count the suppressed lines:\n%s", stats)
	}
}
