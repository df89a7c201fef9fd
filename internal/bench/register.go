package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/iked"
	"github.com/groupvpn/groupvpn/internal/lab"
	"github.com/groupvpn/groupvpn/internal/node"
)

// RegisterReport is the result of the registration scenario.
type RegisterReport struct {
	Members  int
	Broker   bool          // the KS received and sent through iked
	Elapsed  time.Duration // from start (configs, sockets) until the last member registered
	Window   time.Duration // from the first registration to the last, as the KS stamped them
	PerSec   float64
	Ceiling  float64       // registrations/s the KS's public-key work allows on one core
	CryptoOp time.Duration // that work for one registration
}

// Register starts a KS and members GMs in this process on loopback (the
// lab's configuration: ECP-256 PSK phase 1, two TEKs) and measures how fast
// all of them register. The ceiling beside it is the KS-side public-key
// cost of one registration measured in the same run: one ECP-256 key pair
// and one agreement (PSK phase 1 has no signatures).
//
// With broker, the KS sits behind an iked broker as in the group ike
// (SPEC D1): every datagram crosses iked's UDP socket and its unix socket.
func Register(ctx context.Context, members int, port uint16, broker bool) (*RegisterReport, error) {
	op := registrationCrypto()
	start := time.Now()
	var listen func(netip.AddrPort) (node.PacketConn, error)
	if broker {
		var stop func()
		var err error
		if listen, stop, err = brokerFor(ctx, netip.AddrPortFrom(lab.KSAddr, port)); err != nil {
			return nil, err
		}
		defer stop()
	}
	l, err := registeredLab(ctx, lab.Options{Members: members, Port: port, KSListen: listen})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	total := time.Since(start)
	// The KS stamps each registration; the rate is taken between the
	// first and the last, so start-up and polling do not count.
	s, err := l.KS.Node.State(ctx)
	if err != nil {
		return nil, err
	}
	var first, last time.Time
	for _, m := range s.KS[0].Members {
		if first.IsZero() || m.Registered.Before(first) {
			first = m.Registered
		}
		if m.Registered.After(last) {
			last = m.Registered
		}
	}
	rep := &RegisterReport{Members: members, Broker: broker, Elapsed: total, Window: last.Sub(first), CryptoOp: op,
		Ceiling: float64(time.Second) / float64(op)}
	if rep.Window > 0 {
		rep.PerSec = float64(members-1) / rep.Window.Seconds()
	}
	return rep, nil
}

// Print writes the report as a table.
func (r *RegisterReport) Print(w io.Writer) {
	via := ""
	if r.Broker {
		via = ", the KS behind iked"
	}
	fmt.Fprintf(w, "scenario register: %d GMs register with one KS over loopback UDP (phase 1 ecp256/PSK + GROUPKEY-PULL, 2 TEKs%s)\n", r.Members, via)
	fmt.Fprintf(w, "  %-40s %12s\n", "start-up and all registrations", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-40s %12s\n", "first to last registration at the KS", r.Window.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-40s %12.0f\n", "registrations per second", r.PerSec)
	fmt.Fprintf(w, "  %-40s %12s\n", "ceiling: KS public-key work per reg.", r.CryptoOp.Round(time.Microsecond))
	fmt.Fprintf(w, "  %-40s %12.0f\n", "ceiling: registrations per second/core", r.Ceiling)
	fmt.Fprintf(w, "  %-40s %12.2f\n", "achieved / ceiling", r.PerSec/r.Ceiling)
	fmt.Fprintln(w, "  (the GMs run in the same process and share the CPU: each registration also costs a GM key pair and agreement)")
}

// registrationCrypto measures the KS-side public-key work of one
// registration with the lab's suite: one ECP-256 key pair and one
// agreement (PSK phase 1 has no signatures).
func registrationCrypto() time.Duration {
	g, _ := ike.GroupByID(19)
	r := testing.Benchmark(func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			priv, pub, _ := g.GenerateKey(rand.Reader)
			priv.Shared(pub)
		}
	})
	return time.Duration(r.NsPerOp())
}

// registeredLab starts a lab of members GMs without control sockets,
// releases them together (the KS faces all of them at once) and waits
// until every one is registered. Close it when done.
func registeredLab(ctx context.Context, o lab.Options) (*lab.Lab, error) {
	o.Hold, o.NoGMSockets = true, true
	l, err := lab.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := l.Release(ctx); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.Wait(ctx, io.Discard, 10*time.Minute); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// brokerFor runs an iked broker serving local in this process and returns
// what opens the KS's socket through it, and what stops both.
func brokerFor(ctx context.Context, local netip.AddrPort) (func(netip.AddrPort) (node.PacketConn, error), func(), error) {
	dir, err := os.MkdirTemp("", "gvbench-")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := iked.New(iked.Options{Ports: []uint16{local.Port()},
		Inventory: func() ([]netip.AddrPort, error) { return []netip.AddrPort{local}, nil }})
	path := filepath.Join(dir, "iked.sock")
	stop := func() { cancel(); os.RemoveAll(dir) }
	if err := srv.Start(path); err != nil {
		stop()
		return nil, nil, err
	}
	go srv.Run(ctx)
	c, err := iked.Dial(ctx, path, "isakmpd", 1)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return func(a netip.AddrPort) (node.PacketConn, error) { return c.Listen(a) }, func() { c.Close(); stop() }, nil
}
