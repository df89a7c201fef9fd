package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/gikev2"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ikev2"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/isakmp"
)

// GIKEv2RegisterReport is the result of the G-IKEv2 registration
// scenario (issue 17): the same shape as RegisterReport, and the GDOI
// figure of the same run beside it.
type GIKEv2RegisterReport struct {
	Members int
	Suite   string        // the IKE SA suite negotiated
	Elapsed time.Duration // from start (sockets, endpoints) until the last member registered
	Window  time.Duration // from the first registration to the last, as the KS stamped them
	PerSec  float64
	// Ceiling is the registrations per second the KS's cryptography
	// allows on one core: CryptoOp is one registration's DH (ECP-256 key
	// pair and agreement), AUTH (PSK: the peer's checked, ours computed)
	// and prf+ (SKEYSEED and SK_*, GSK_w), measured in the same run.
	Ceiling  float64
	CryptoOp time.Duration
	// Retransmits counts the requests the members sent again (a lost or
	// late datagram: the KS's socket overflowed, or it was busy).
	Retransmits int
	GDOI        *RegisterReport // the GDOI scenario with as many members; nil when not run
}

// gikev2BenchGroup is the benchmark group: IDg 1234, two AES-GCM-16/128
// TEKs as the lab's, unicast rekeys signed with ECDSA P-256.
const gikev2BenchGroup = 1234

var gikev2BenchPSK = []byte("bench register gikev2")

// RegisterGIKEv2 starts a G-IKEv2 key server (internal/ikev2 endpoint,
// internal/gikev2 GCKS over a ks.Server) and members members (each an
// internal/ikev2 endpoint and a gikev2.Member) in this process, each on
// its own UDP socket on 127.0.0.0/8, and measures how fast all of them
// register: IKE_SA_INIT, GSA_AUTH (IDg, GROUP_SENDER; PSK), then
// GSA_REGISTRATION answered with GSA and KD (the keys wrapped under
// GSK_w), unwrapped by the member. The KS listens on 127.0.0.1:port, the
// members on 127.2.x.y:port. With gdoi, the GDOI scenario (Register) runs
// after it with as many members on port+1.
func RegisterGIKEv2(ctx context.Context, members int, port uint16, gdoi bool) (*GIKEv2RegisterReport, error) {
	return registerGIKEv2(ctx, members, port, gdoi, gikev2RegistrationCrypto())
}

// registerGIKEv2 is RegisterGIKEv2 with the ceiling's measurement given
// (testing.Benchmark cannot run inside a benchmark: it would wait for the
// benchmark lock).
func registerGIKEv2(ctx context.Context, members int, port uint16, gdoi bool, op time.Duration) (*GIKEv2RegisterReport, error) {
	if members < 1 || members > 60000 {
		return nil, fmt.Errorf("bench register gikev2: members %d out of range (1-60000)", members)
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ksAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	k, err := newGIKEv2KS(ksAddr)
	if err != nil {
		return nil, err
	}
	defer k.conn.Close()
	ksDone := make(chan error, 1)
	go func() { ksDone <- k.run(ctx) }()

	// The members start together: the KS faces all of them at once.
	gms := make([]*gikev2GM, 0, members)
	defer func() {
		for _, gm := range gms {
			gm.conn.Close()
		}
	}()
	for i := range members {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, byte((i + 1) >> 8), byte(i + 1)}), port)
		gm, err := newGIKEv2GM(addr, ksAddr)
		if err != nil {
			return nil, err
		}
		gms = append(gms, gm)
	}
	release := make(chan struct{})
	errs := make(chan error, members)
	retrans := make([]int, members)
	var wg sync.WaitGroup
	for i, gm := range gms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			n, err := gm.register(ctx)
			retrans[i] = n
			if err != nil {
				err = fmt.Errorf("member %s: %w", gm.ep.Local().Addr(), err)
			}
			errs <- err
		}()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return nil, err
		}
	}
	total := time.Since(start)
	cancel()
	if err := <-ksDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	first, last, suite := k.window()
	rep := &GIKEv2RegisterReport{Members: members, Suite: suite, Elapsed: total, Window: last.Sub(first), CryptoOp: op,
		Ceiling: float64(time.Second) / float64(op)}
	for _, n := range retrans {
		rep.Retransmits += n
	}
	if rep.Window > 0 {
		rep.PerSec = float64(members-1) / rep.Window.Seconds()
	}
	if gdoi {
		g, err := Register(context.WithoutCancel(ctx), members, port+1, false)
		if err != nil {
			return nil, fmt.Errorf("the GDOI scenario beside it: %w", err)
		}
		rep.GDOI = g
	}
	return rep, nil
}

// Print writes the report as a table.
func (r *GIKEv2RegisterReport) Print(w io.Writer) {
	fmt.Fprintf(w, "scenario register --protocol gikev2: %d GMs register with one KS over loopback UDP (IKE_SA_INIT %s/PSK + GSA_AUTH + GSA_REGISTRATION, 2 TEKs)\n", r.Members, r.Suite)
	fmt.Fprintf(w, "  %-44s %12s\n", "start-up and all registrations", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-44s %12s\n", "first to last registration at the KS", r.Window.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-44s %12.0f\n", "registrations per second", r.PerSec)
	fmt.Fprintf(w, "  %-44s %12s\n", "ceiling: KS DH + AUTH + prf+ per reg.", r.CryptoOp.Round(time.Microsecond))
	fmt.Fprintf(w, "  %-44s %12.0f\n", "ceiling: registrations per second/core", r.Ceiling)
	fmt.Fprintf(w, "  %-44s %12.2f\n", "achieved / ceiling", r.PerSec/r.Ceiling)
	fmt.Fprintf(w, "  %-44s %12d\n", "requests retransmitted by members", r.Retransmits)
	fmt.Fprintln(w, "  (the GMs run in the same process and share the CPU: each registration also costs a GM key pair, agreement and key unwrap)")
	if g := r.GDOI; g != nil {
		fmt.Fprintf(w, "beside it, GDOI in the same run:\n")
		g.Print(w)
		fmt.Fprintf(w, "G-IKEv2 / GDOI registrations per second: %.2f\n", r.PerSec/g.PerSec)
	}
}

// gikev2RegistrationCrypto measures the KS-side cryptography of one
// G-IKEv2 registration with the default suite (AES-GCM-16-256,
// PRF-HMAC-SHA-256, ECP-256) on one core: one ECP-256 key pair and
// agreement, SKEYSEED and SK_* (prf+), the PSK AUTH of the member checked
// and ours computed (prf(prf(PSK, "Key Pad for IKEv2"), octets) each, over
// octets of a typical message's size, and prf(SK_p, ID)), and GSK_w
// (prf+ of SK_d). The SK payloads' AES-GCM and the RFC 5649 key wrap of
// three keys are left out (microseconds against the DH).
func gikev2RegistrationCrypto() time.Duration {
	r := testing.Benchmark(gikev2CryptoOp)
	return time.Duration(r.NsPerOp())
}

// gikev2CryptoOp is the body of gikev2RegistrationCrypto's measurement.
func gikev2CryptoOp(b *testing.B) {
	g, _ := ike.GroupByID(19)
	suite := ikev2.DefaultSuites[0]
	ni, nr := make([]byte, 32), make([]byte, 32)
	rand.Read(ni)
	rand.Read(nr)
	octets := make([]byte, 400) // the IKE_SA_INIT message + nonce + prf(SK_p, ID)
	id := []byte{1, 0, 0, 0, 127, 2, 0, 1}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		priv, pub, _ := g.GenerateKey(rand.Reader)
		gir, err := priv.Shared(pub)
		if err != nil {
			b.Fatal(err)
		}
		k, err := ikev2.DeriveKeys(suite, ni, nr, gir, [8]byte{1}, [8]byte{2})
		if err != nil {
			b.Fatal(err)
		}
		for range 2 { // the member's AUTH checked, ours computed
			k.PRF(k.PRF(gikev2BenchPSK, []byte("Key Pad for IKEv2")), octets, k.PRF(k.SKpi, id))
		}
		if _, err := gikev2.UnicastKWK(k, gikev2.DefaultKWA); err != nil {
			b.Fatal(err)
		}
	}
}

// gikev2KS is the key server of the scenario: one goroutine owns the
// ikev2.Endpoint, the ks.Server and the GCKS, reading its socket.
type gikev2KS struct {
	conn  *net.UDPConn
	ep    *ikev2.Endpoint
	srv   *ks.Server
	gcks  *gikev2.GCKS
	mu    sync.Mutex
	first time.Time
	last  time.Time
	suite string
}

func newGIKEv2KS(addr netip.AddrPort) (*gikev2KS, error) {
	now := time.Now()
	srv := ks.New(ks.Options{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sel := []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}
	tek := ks.TEKPolicy{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Replay: isakmp.ReplayCounter, ReplayWindow: 64, Selectors: sel}
	tek2 := tek
	tek2.Selectors = []ks.Selector{{Src: netip.MustParsePrefix("192.168.0.0/16"), Dst: netip.MustParsePrefix("192.168.0.0/16")}}
	if err := srv.AddGroup(ks.GroupConfig{Name: "bench", ID: gikev2BenchGroup, Address: addr.Addr(), SigningKey: key,
		TEKs: []ks.TEKPolicy{tek, tek2}, Rekey: ks.RekeyPolicy{Unicast: true}}, now); err != nil {
		return nil, fmt.Errorf("bench register gikev2: %w", err)
	}
	k := &gikev2KS{srv: srv, gcks: gikev2.NewGCKS(srv, nil)}
	cfg := &ikev2.Config{
		Creds:        ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return gikev2BenchPSK, true }},
		AuthExchange: wire.ExchangeGSAAuth,
		// RFC 9838 §2.3.4: an unknown group is refused in GSA_AUTH, before
		// the IKE SA is established; the keys follow in GSA_REGISTRATION
		// (docs/gikev2.md: OnAuth does not see the SA's keys yet).
		OnAuth: func(_ *ikev2.Identity, _ *x509.Certificate, ps []wire.Payload) ([]wire.Payload, error) {
			r, err := gikev2.ParseRequest(ps)
			if err == nil && r.Group != gikev2BenchGroup {
				return nil, &ikev2.Refusal{Notify: wire.NotifyInvalidGroupID, Err: fmt.Errorf("no group %d", r.Group)}
			}
			if err != nil {
				return nil, &ikev2.Refusal{Notify: gikev2.Refusal(err)[0].(*wire.Notify).NotifyType, Err: err}
			}
			return nil, nil
		}}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("bench register gikev2: %w", err)
	}
	conn.SetReadBuffer(4 << 20)
	// Every member comes from its own address: the per-peer half-open
	// bound does not bite; the total must hold all of them at once.
	if k.ep, err = ikev2.NewEndpoint(cfg, addr, ikev2.Limits{MaxHalfOpen: 1 << 16}); err != nil {
		conn.Close()
		return nil, err
	}
	k.conn = conn
	return k, nil
}

func (k *gikev2KS) window() (first, last time.Time, suite string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.first, k.last, k.suite
}

// run serves until ctx ends.
func (k *gikev2KS) run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { k.conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 65536)
	for {
		// At most a second, and ctx checked after the deadline is set:
		// the AfterFunc's deadline can land just before this one
		// replaces it, and the endpoint's next timer can be hours away.
		deadline := k.ep.NextTimer()
		if limit := time.Now().Add(time.Second); deadline.IsZero() || deadline.After(limit) {
			deadline = limit
		}
		k.conn.SetReadDeadline(deadline)
		if err := ctx.Err(); err != nil {
			return err
		}
		n, from, err := k.conn.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var out ikev2.Output
		switch {
		case err == nil:
			out = k.ep.Handle(from, append([]byte(nil), buf[:n]...), now)
		case errors.Is(err, os.ErrDeadlineExceeded):
			out = k.ep.Tick(now)
		default:
			return fmt.Errorf("bench register gikev2: KS socket: %w", err)
		}
		if err := k.deliver(out, now); err != nil {
			return err
		}
	}
}

// deliver sends out and answers the GSA_REGISTRATION requests among its
// events (the owner's part of the exchange).
func (k *gikev2KS) deliver(out ikev2.Output, now time.Time) error {
	for len(out.Send) > 0 || len(out.Events) > 0 {
		for _, p := range out.Send {
			k.conn.WriteToUDPAddrPort(p.Data, p.To) // a loss is retransmitted
		}
		evs := out.Events
		out = ikev2.Output{}
		for _, ev := range evs {
			req, ok := ev.Event.(ikev2.Request)
			if !ok || req.Exchange != wire.ExchangeGSARegistration {
				continue
			}
			info := ev.SA.Info()
			kwk, err := gikev2.UnicastKWK(ev.SA.Keys(), gikev2.DefaultKWA)
			if err != nil {
				return err
			}
			r, err := gikev2.ParseRequest(req.Payloads)
			var ps []wire.Payload
			if err == nil {
				ps, err = k.gcks.Register(ks.Peer{Addr: info.Peer, Identity: info.Peer.Addr().String()}, r, kwk, now)
			}
			if err != nil {
				ps = gikev2.Refusal(err)
			}
			o, err := k.ep.Respond(ev.SA, ps, now)
			if err != nil {
				return err
			}
			out.Send = append(out.Send, o.Send...)
			out.Events = append(out.Events, o.Events...)
			k.mu.Lock()
			if k.first.IsZero() {
				k.first = now
			}
			k.last, k.suite = now, info.Suite.String()
			k.mu.Unlock()
		}
	}
	return nil
}

// gikev2GM is one member of the scenario: its own socket and endpoint,
// driven by the goroutine that registers it.
type gikev2GM struct {
	conn *net.UDPConn
	ep   *ikev2.Endpoint
	m    *gikev2.Member
	ks   netip.AddrPort
}

func newGIKEv2GM(addr, ksAddr netip.AddrPort) (*gikev2GM, error) {
	m := gikev2.NewMember(gikev2.MemberConfig{Name: "bench", ID: gikev2BenchGroup, Sender: true, SenderIDs: 1})
	cfg := &ikev2.Config{
		Creds:        ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return gikev2BenchPSK, true }},
		AuthExchange: wire.ExchangeGSAAuth,
		AuthRequest:  m.AuthRequest().Payloads(),
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("bench register gikev2: member socket: %w", err)
	}
	ep, err := ikev2.NewEndpoint(cfg, addr, ikev2.Limits{})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &gikev2GM{conn: conn, ep: ep, m: m, ks: ksAddr}, nil
}

// register runs IKE_SA_INIT, GSA_AUTH and GSA_REGISTRATION and unwraps
// the keys; it returns how many requests it sent again.
func (g *gikev2GM) register(ctx context.Context) (int, error) {
	sa, out, err := g.ep.Initiate(g.ks, time.Now())
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { g.conn.SetReadDeadline(time.Now()) })
	defer stop()
	sent, resent := map[string]bool{}, 0
	buf := make([]byte, 65536)
	for {
		for _, p := range out.Send {
			if sent[string(p.Data)] {
				resent++
			}
			sent[string(p.Data)] = true
			g.conn.WriteToUDPAddrPort(p.Data, p.To) // a loss is retransmitted
		}
		var next ikev2.Output
		for _, ev := range out.Events {
			if ev.SA != sa {
				continue
			}
			switch e := ev.Event.(type) {
			case ikev2.Failed:
				return resent, e.Err
			case ikev2.Established:
				// GSA_REGISTRATION (§2.3.2): HDR, SK{IDg, N(GROUP_SENDER)} -->
				o, err := g.ep.Request(sa, wire.ExchangeGSARegistration, g.m.Request().Payloads(), time.Now())
				if err != nil {
					return resent, err
				}
				next.Send, next.Events = append(next.Send, o.Send...), append(next.Events, o.Events...)
			case ikev2.Response:
				if e.Exchange != wire.ExchangeGSARegistration {
					continue
				}
				//                     <-- HDR, SK{GSA, KD}
				kwk, err := gikev2.UnicastKWK(sa.Keys(), gikev2.DefaultKWA)
				if err != nil {
					return resent, err
				}
				u, err := g.m.Registered(e.Payloads, kwk, time.Now())
				if err != nil {
					return resent, err
				}
				if len(u.TEKs) != 2 {
					return resent, fmt.Errorf("registered with %d TEKs, want 2", len(u.TEKs))
				}
				return resent, nil
			}
		}
		if len(next.Send) > 0 || len(next.Events) > 0 {
			out = next
			continue
		}
		// At most a second, and ctx checked after the deadline is set:
		// the AfterFunc's deadline can land just before this one
		// replaces it, and the endpoint's next timer can be hours away.
		deadline := g.ep.NextTimer()
		if limit := time.Now().Add(time.Second); deadline.IsZero() || deadline.After(limit) {
			deadline = limit
		}
		g.conn.SetReadDeadline(deadline)
		if err := ctx.Err(); err != nil {
			return resent, err
		}
		n, from, err := g.conn.ReadFromUDPAddrPort(buf)
		if ctx.Err() != nil {
			return resent, ctx.Err()
		}
		switch {
		case err == nil:
			out = g.ep.Handle(from, append([]byte(nil), buf[:n]...), time.Now())
		case errors.Is(err, os.ErrDeadlineExceeded):
			out = g.ep.Tick(time.Now())
		default:
			return resent, err
		}
	}
}
