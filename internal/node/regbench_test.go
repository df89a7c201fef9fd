package node

import (
	"bytes"
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// ksRegistrar drives registrations through a key server node's datagram
// path (n.datagram, what its loop runs for each datagram read) without its
// sockets: each registration is a GM's main mode and GROUPKEY-PULL played
// by an ike.Endpoint and a gdoi.Pull of a fresh address, every message
// the KS answers taken from its socket's send queue. It measures what the
// KS alone spends: time and heap allocations inside n.datagram.
type ksRegistrar struct {
	kn      *Node
	s       *sock
	gmCfg   *ike.Config
	next    netip.Addr
	ksTime  time.Duration
	samples []metrics.Sample
	allocs  uint64
	bytes   uint64 // allocated in n.datagram
	// deliver, when set, hands the KS a datagram instead of n.datagram
	// (the loop's own read of its socket: TestReadDirectBufferNotRetained);
	// port is the GMs' (848 when 0).
	deliver func(from netip.AddrPort, data []byte)
	port    uint16
	// exact counts with runtime.ReadMemStats (it stops the world, and its
	// counts are exact) instead of runtime/metrics, whose counts of small
	// allocations are gathered per span: what the GM's side allocated
	// between two datagrams may be counted for the KS
	// (TestKSRegistrationAllocations read 68-88 per registration).
	exact bool
	ms    runtime.MemStats
}

func newKSRegistrar(tb testing.TB) *ksRegistrar { return newKSRegistrarLog(tb, nil) }

// newKSRegistrarLog is newKSRegistrar with the KS logging to log (nil:
// the node's default).
func newKSRegistrarLog(tb testing.TB, log *slog.Logger) *ksRegistrar {
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn, err := New(Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(tb, ksAddr)}, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(kn.Close)
	cfg := ikeCfg("k", version.Current)
	cfg.DOI = isakmp.DOIGDOI
	return &ksRegistrar{kn: kn, s: kn.socks[0], gmCfg: cfg, next: netip.MustParseAddr("127.80.0.1"),
		samples: []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}}
}

// toKS hands the KS one datagram from from and returns its answers.
func (r *ksRegistrar) toKS(from netip.AddrPort, data []byte) [][]byte {
	var a0, b0 uint64
	if r.exact {
		runtime.ReadMemStats(&r.ms)
		a0, b0 = r.ms.Mallocs, r.ms.TotalAlloc
	} else {
		metrics.Read(r.samples)
		a0, b0 = r.samples[0].Value.Uint64(), r.samples[1].Value.Uint64()
	}
	start := time.Now()
	if r.deliver != nil {
		r.deliver(from, data)
	} else {
		r.kn.datagram(datagram{sock: r.s, from: from, data: data})
	}
	r.ksTime += time.Since(start)
	if r.exact {
		runtime.ReadMemStats(&r.ms)
		r.allocs += r.ms.Mallocs - a0
		r.bytes += r.ms.TotalAlloc - b0
	} else {
		metrics.Read(r.samples)
		r.allocs += r.samples[0].Value.Uint64() - a0
		r.bytes += r.samples[1].Value.Uint64() - b0
	}
	var out [][]byte
	for _, o := range r.s.out.q {
		out = append(out, o.data)
	}
	clear(r.s.out.q)
	r.s.out.q = r.s.out.q[:0]
	return out
}

// register runs one GM's registration to the end; it returns the GM's
// address, its pull message 3 and the KS's message 4.
func (r *ksRegistrar) register(tb testing.TB) (gm netip.AddrPort, m3, m4 []byte) {
	gmAP, gmSA := r.phase1(tb)
	pull, m, err := gdoi.NewPull(gmSA, isakmp.GroupID(1234), 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 2 { // pull messages 1 and 3
		replies := r.toKS(gmAP, m)
		if len(replies) != 1 {
			tb.Fatalf("KS answered pull message %d with %d datagrams", 2*i+1, len(replies))
		}
		msg, err := isakmp.ParseMessage(replies[0])
		if err != nil {
			tb.Fatal(err)
		}
		if i == 1 {
			m3, m4 = m, replies[0]
		}
		var res *gdoi.Result
		if m, res, err = pull.Handle(msg); err != nil {
			tb.Fatal(err)
		}
		if (i == 1) != (res != nil) {
			tb.Fatalf("pull message %d: result %v", 2*i+2, res)
		}
	}
	return gmAP, m3, m4
}

// phase1 runs a new GM's main mode with the KS; it returns the GM's
// address and its phase-1 SA.
func (r *ksRegistrar) phase1(tb testing.TB) (netip.AddrPort, *ike.SA) {
	now := time.Now()
	port := r.port
	if port == 0 {
		port = 848
	}
	gmAP := netip.AddrPortFrom(r.next, port)
	r.next = r.next.Next()
	ep, err := ike.NewEndpoint(r.gmCfg, gmAP, ike.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	_, out, err := ep.Initiate(r.s.local, now)
	if err != nil {
		tb.Fatal(err)
	}
	var gmSA *ike.SA
	for range 3 { // MM1, MM3, MM5
		if len(out.Send) != 1 {
			tb.Fatalf("GM sent %d datagrams", len(out.Send))
		}
		replies := r.toKS(gmAP, out.Send[0].Data)
		if len(replies) != 1 {
			tb.Fatalf("KS answered main mode with %d datagrams", len(replies))
		}
		out = ep.Handle(r.s.local, replies[0], now)
		for _, ev := range out.Events {
			if _, ok := ev.Event.(ike.Established); ok {
				gmSA = ev.SA
			}
		}
	}
	if gmSA == nil {
		tb.Fatal("phase 1 not established")
	}
	return gmAP, gmSA
}

// proves: issue 18 (the KS keeps a served GROUPKEY-PULL for a shorter
// time and smaller) — after message 4 the KS still answers a retransmitted
// message 3 with the same message 4 (its SA forgot the exchange's IV
// chain), until serveLinger (30 s) has passed; then the exchange and its
// index are gone.
func TestServedPullAnsweredUntilLinger(t *testing.T) {
	r := newKSRegistrar(t)
	gm, m3, m4 := r.register(t)
	if got := r.toKS(gm, m3); len(got) != 1 || !bytes.Equal(got[0], m4) {
		t.Fatalf("retransmitted message 3 answered with %d datagrams", len(got))
	}
	if serveLinger > 30*time.Second || r.kn.serves.len() != 1 {
		t.Fatalf("linger %s, %d exchanges kept", serveLinger, r.kn.serves.len())
	}
	r.kn.serves.expire(time.Now().Add(serveLinger + time.Second))
	if r.kn.serves.len() != 0 || len(r.kn.serves.bySA) != 0 {
		t.Fatalf("%d exchanges kept after the linger", r.kn.serves.len())
	}
}

// BenchmarkKSRegistration is one registration (main mode, GROUPKEY-PULL) as
// the key server's loop handles it, without system calls: ks-ns/op is the
// KS's time per registration (compare with the crypto ceiling,
// internal/bench registrationCeiling, ~80 µs on the project's VM),
// ks-allocs/op and ks-B/op its heap allocations, ks-heap-B/op the live heap it keeps
// per registration (the member, its phase-1 SA, the served exchange kept
// for retransmissions) right after, ks-heap-after-linger-B/op once the
// served pulls are gone (issue 18).
func BenchmarkKSRegistration(b *testing.B) {
	r := newKSRegistrar(b)
	for range 200 { // a KS with members already
		r.register(b)
	}
	r.ksTime, r.allocs, r.bytes = 0, 0, 0
	heap0 := liveHeap()
	b.ResetTimer()
	for range b.N {
		r.register(b)
	}
	b.StopTimer()
	b.ReportMetric(float64(r.ksTime.Nanoseconds())/float64(b.N), "ks-ns/op")
	b.ReportMetric(float64(r.allocs)/float64(b.N), "ks-allocs/op")
	b.ReportMetric(float64(r.bytes)/float64(b.N), "ks-B/op")
	b.ReportMetric(float64(liveHeap()-heap0)/float64(b.N), "ks-heap-B/op")
	// Once the served pulls' linger is over: what a member costs for good.
	r.kn.serves.expire(time.Now().Add(serveLinger + time.Second))
	b.ReportMetric(float64(liveHeap()-heap0)/float64(b.N), "ks-heap-after-linger-B/op")
	runtime.KeepAlive(r)
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
