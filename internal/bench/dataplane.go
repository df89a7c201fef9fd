package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/groupvpn/groupvpn/internal/dataplane"
	"github.com/groupvpn/groupvpn/internal/dataplane/dptest"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// DataplaneOptions is what `groupvpn bench dataplane` measures.
type DataplaneOptions struct {
	// WireGuard is the path of a wireguard-go binary; empty: no
	// wireguard-go figure.
	WireGuard string
	// Transform is the name of one of ESPTransforms (empty: AES-GCM-128).
	Transform string
	Seconds   int // of each iperf3 run (0: 5)
	Rounds    int // each round runs plain, wireguard-go and the engine once (0: 3)
	Streams   int // iperf3 -P (0: 1)
	// NoClearIn leaves out the nftables table tmd -tun installs beside the
	// engine (dataplane.ClearIn: clear packets of covered traffic from the
	// core are dropped), whose rules every forwarded packet crosses.
	NoClearIn bool
	// CPUProfile, when set, receives this process's CPU profile while the
	// engines forward (pprof format).
	CPUProfile io.Writer
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DataplaneResult is iperf3's receiver throughput of every run, in Mbit/s.
type DataplaneResult struct {
	Opts      DataplaneOptions
	Plain     []float64 // the ceiling: the GMs route in the clear
	WireGuard []float64 // wireguard-go between the GMs
	// WireGuardPerPacket is wireguard-go again with the core links
	// forwarding one packet per buffer (gso_max_segs 1 on the veths
	// between the GMs and the core), as raw ESP always crosses them: what
	// wireguard-go's lead owes to UDP segmentation offload.
	WireGuardPerPacket []float64
	Engine             []float64 // the groupvpn engine in both GMs
	// The CPU time (user + system) of both wireguard-go processes and of
	// the engines (this process) during each run, in seconds: the kernel's
	// work done in their system calls (forwarding through the core
	// included) is charged to them alike. Per octet carried it is the
	// figure that other load on the machine moves least.
	WireGuardCPU, WireGuardPerPacketCPU, EngineCPU []float64
}

// dataplaneMark is the engines' SO_MARK in the benchmark's namespaces.
const dataplaneMark = 0x6762

// Dataplane is the data-plane scenario (issue 12): iperf3 TCP from a host
// behind one GM router to a host behind the other (testnet.Sites, network
// namespaces on this machine), through the groupvpn engine in both GMs,
// against wireguard-go between the same GMs (a tunnel of the same MTU,
// 1400, configured with wireguard-tools' wg) and against the GMs routing
// in the clear (the ceiling). Each round runs the three in turn, so a
// machine whose speed drifts moves all three; the figures are medians.
// It needs root; skipped says why it did not run.
func Dataplane(o DataplaneOptions) (r DataplaneResult, skipped string, err error) {
	if o.Transform == "" {
		o.Transform = "AES-GCM-128"
	}
	if o.Seconds <= 0 {
		o.Seconds = 5
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Streams <= 0 {
		o.Streams = 1
	}
	r.Opts = o
	var tek sadb.TEK
	for _, tr := range ESPTransforms() {
		if strings.EqualFold(tr.Name, o.Transform) {
			tek = tr.TEK
		}
	}
	if tek.SPI == 0 {
		var names []string
		for _, tr := range ESPTransforms() {
			names = append(names, tr.Name)
		}
		return r, "", fmt.Errorf("unknown transform %q (one of: %s)", o.Transform, strings.Join(names, ", "))
	}
	if os.Geteuid() != 0 {
		return r, "needs root (network namespaces, TUN devices, raw sockets)", nil
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	skipped, err = runTB(func(t testing.TB) {
		testnet.RequireTools(t, "ip", "iperf3")
		if o.WireGuard != "" {
			testnet.RequireTools(t, o.WireGuard, "wg")
		}
		if !o.NoClearIn {
			testnet.RequireNft(t)
		}
		s := testnet.NewSites(t, "gvbench")
		iperf := func() float64 {
			return testnet.Iperf3(t, s.H1, s.H2, testnet.SiteH2, o.Seconds, "-P", fmt.Sprint(o.Streams))
		}
		profiling := false
		for round := 1; round <= o.Rounds; round++ {
			r.Plain = append(r.Plain, iperf())
			logf("round %d: plain routing %.0f Mbit/s", round, r.Plain[len(r.Plain)-1])
			if o.WireGuard != "" {
				stop := startWireGuard(t, s, o.WireGuard)
				r.WireGuard = append(r.WireGuard, iperf())
				r.WireGuardCPU = append(r.WireGuardCPU, stop())
				logf("round %d: wireguard-go %.0f Mbit/s", round, r.WireGuard[len(r.WireGuard)-1])
				restore := perPacketCore(t, s)
				stop = startWireGuard(t, s, o.WireGuard)
				r.WireGuardPerPacket = append(r.WireGuardPerPacket, iperf())
				r.WireGuardPerPacketCPU = append(r.WireGuardPerPacketCPU, stop())
				restore()
				logf("round %d: wireguard-go, core links one packet per buffer %.0f Mbit/s", round, r.WireGuardPerPacket[len(r.WireGuardPerPacket)-1])
			}
			stop := startEngines(t, s, tek, !o.NoClearIn)
			if o.CPUProfile != nil && !profiling {
				if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
					t.Fatal(err)
				}
				profiling = true
				defer pprof.StopCPUProfile()
			}
			before := selfCPU()
			r.Engine = append(r.Engine, iperf())
			r.EngineCPU = append(r.EngineCPU, selfCPU()-before)
			stop()
			logf("round %d: groupvpn engine (%s) %.0f Mbit/s", round, o.Transform, r.Engine[len(r.Engine)-1])
		}
	})
	return r, skipped, err
}

// startEngines runs the engine in both GMs with tek (each GM with a sender
// ID of its own) protecting everything between the sites, with tmd's
// clear-packet table when clearIn is set.
func startEngines(t testing.TB, s *testnet.Sites, tek sadb.TEK, clearIn bool) (stop func()) {
	gms := []struct {
		ns   *testnet.Netns
		lan  netip.Prefix
		self netip.Addr
	}{{s.GM1, testnet.SiteLAN1, testnet.SiteGM1}, {s.GM2, testnet.SiteLAN2, testnet.SiteGM2}}
	var stops []func()
	for i, gm := range gms {
		k := tek
		k.Src, k.Dst = testnet.SitesPrefix, testnet.SitesPrefix
		k.Expires = time.Now().Add(24 * time.Hour)
		if len(k.SenderIDs) > 0 {
			k.SenderIDs = []uint32{uint32(i + 1)}
		}
		mem := sadb.NewMemory()
		if err := mem.InstallTEK(k); err != nil {
			t.Fatal(err)
		}
		mem.SetPolicy(k.Group, []sadb.PolicyEntry{{Action: sadb.Protect, Src: testnet.SitesPrefix, Dst: testnet.SitesPrefix, SPI: k.SPI}})
		mem.SetFailMode(k.Group, sadb.FailClose)
		_, st := dptest.StartEngine(t, gm.ns, mem, gm.lan, gm.self, dataplaneMark)
		stops = append(stops, st)
		if clearIn {
			ns := gm.ns
			c := &dataplane.ClearIn{TUN: dptest.EngineTUN, Local: []netip.Prefix{gm.lan},
				NFT: func(stdin string, args ...string) ([]byte, error) {
					cmd := ns.Command("nft", args...)
					cmd.Stdin = strings.NewReader(stdin)
					out, err := cmd.CombinedOutput()
					if err != nil {
						return nil, fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), ns.Name, err, out)
					}
					return out, nil
				}}
			if _, err := c.Apply(dataplane.ClearInPolicy(mem, []string{k.Group}, time.Now())); err != nil {
				t.Fatal(err)
			}
			stops = append(stops, func() { c.Remove() })
		}
	}
	return func() {
		for _, f := range stops {
			f()
		}
	}
}

// perPacketCore makes the four ends of the links between the GMs and the
// core (testnet.Sites' dpc1 and dpc2) take one packet per buffer
// (gso_max_segs 1): a UDP GSO batch is cut into its datagrams before it
// leaves the GM, so the core and the receiving GM handle each datagram on
// its own, as they handle every raw ESP packet (IP protocol 50 has no
// segmentation offload outside the kernel's XFRM). restore sets each back
// to what it was.
func perPacketCore(t testing.TB, s *testnet.Sites) (restore func()) {
	ends := []struct {
		ns  *testnet.Netns
		dev string
	}{{s.GM1, "dpc1"}, {s.Core, "dpc1"}, {s.Core, "dpc2"}, {s.GM2, "dpc2"}}
	was := make([]string, len(ends))
	for i, e := range ends {
		out, err := e.ns.Command("ip", "-d", "-j", "link", "show", "dev", e.dev).Output()
		if err != nil {
			t.Fatalf("ip link show %s in %s: %v", e.dev, e.ns.Name, err)
		}
		var links []struct {
			Segs int `json:"gso_max_segs"`
		}
		if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].Segs < 1 {
			t.Fatalf("ip link show %s in %s: no gso_max_segs in %q (%v)", e.dev, e.ns.Name, out, err)
		}
		was[i] = fmt.Sprint(links[0].Segs)
		e.ns.Run(t, "ip", "link", "set", "dev", e.dev, "gso_max_segs", "1")
	}
	return func() {
		for i, e := range ends {
			e.ns.Run(t, "ip", "link", "set", "dev", e.dev, "gso_max_segs", was[i])
		}
	}
}

// startWireGuard runs wireguard-go (bin) in the foreground in both GMs,
// configures it with wg (a tunnel of MTU dptest.EngineTUNMTU between the
// GMs' core addresses, each LAN routed into it) and returns what stops it:
// the processes killed by PID, which removes their devices, and their CPU
// time in seconds returned.
func startWireGuard(t testing.TB, s *testnet.Sites, bin string) (stop func() (cpu float64)) {
	dir := t.TempDir()
	keys := make([]string, 2) // public keys
	for i := range keys {
		priv, err := exec.Command("wg", "genkey").Output()
		if err != nil {
			t.Fatalf("wg genkey: %v", err)
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("key%d", i)), priv, 0o600)
		pub := exec.Command("wg", "pubkey")
		pub.Stdin = strings.NewReader(string(priv))
		out, err := pub.Output()
		if err != nil {
			t.Fatalf("wg pubkey: %v", err)
		}
		keys[i] = strings.TrimSpace(string(out))
	}
	gms := []struct {
		ns       *testnet.Netns
		dev      string
		peerAddr netip.Addr
		peerLAN  netip.Prefix
	}{{s.GM1, "gvbwg1", testnet.SiteGM2Core, testnet.SiteLAN2}, {s.GM2, "gvbwg2", testnet.SiteGM1Core, testnet.SiteLAN1}}
	var procs []*exec.Cmd
	var once sync.Once
	stop = func() (cpu float64) {
		once.Do(func() {
			for i, p := range procs {
				// SIGTERM lets wireguard-go remove its device and socket;
				// SIGKILL if it has not ended within 2 s.
				p.Process.Signal(syscall.SIGTERM)
				t := time.AfterFunc(2*time.Second, func() { p.Process.Kill() })
				p.Wait()
				t.Stop()
				os.Remove("/var/run/wireguard/" + gms[i].dev + ".sock")
				cpu += (p.ProcessState.UserTime() + p.ProcessState.SystemTime()).Seconds()
			}
		})
		return cpu
	}
	t.Cleanup(func() { stop() })
	for i, gm := range gms {
		// The UAPI socket (/var/run/wireguard/DEV.sock) is not per
		// namespace: one device name per GM.
		os.Remove("/var/run/wireguard/" + gm.dev + ".sock")
		p := gm.ns.Command(bin, "-f", gm.dev)
		p.Env = append(os.Environ(), "LOG_LEVEL=error")
		if err := p.Start(); err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		procs = append(procs, p)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat("/var/run/wireguard/" + gm.dev + ".sock"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("wireguard-go in %s made no device %s", gm.ns.Name, gm.dev)
			}
			time.Sleep(20 * time.Millisecond)
		}
		gm.ns.Run(t, "wg", "set", gm.dev, "private-key", filepath.Join(dir, fmt.Sprintf("key%d", i)), "listen-port", "51820",
			"peer", keys[1-i], "endpoint", gm.peerAddr.String()+":51820", "allowed-ips", gm.peerLAN.String())
		gm.ns.Run(t, "ip", "link", "set", "dev", gm.dev, "mtu", fmt.Sprint(dptest.EngineTUNMTU), "up")
		gm.ns.Run(t, "ip", "route", "add", gm.peerLAN.String(), "dev", gm.dev)
	}
	return stop
}

// runTB runs fn with a testing.TB, for the testnet helpers that build the
// namespaces (they report through t.Fatal and clean up with t.Cleanup, as
// in the tests): inside testing.Benchmark, whose *testing.B does both,
// through tbRecorder, which keeps the failure and skip messages that
// testing.Benchmark would discard. fn runs once.
func runTB(fn func(testing.TB)) (skipped string, err error) {
	rec := &tbRecorder{}
	var once sync.Once
	testing.Benchmark(func(b *testing.B) {
		once.Do(func() {
			rec.B = b
			fn(rec)
		})
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(rec.errs, "; "))
	}
	return rec.skip, nil
}

// tbRecorder is a *testing.B whose failures and skips are also recorded.
type tbRecorder struct {
	*testing.B
	mu   sync.Mutex
	errs []string
	skip string
}

func (r *tbRecorder) record(skip bool, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if skip {
		r.skip = msg
	} else {
		r.errs = append(r.errs, msg)
	}
}

func (r *tbRecorder) Error(args ...any) { r.record(false, fmt.Sprint(args...)); r.B.Fail() }
func (r *tbRecorder) Errorf(format string, args ...any) {
	r.record(false, fmt.Sprintf(format, args...))
	r.B.Fail()
}
func (r *tbRecorder) Fatal(args ...any) { r.record(false, fmt.Sprint(args...)); r.B.FailNow() }
func (r *tbRecorder) Fatalf(format string, args ...any) {
	r.record(false, fmt.Sprintf(format, args...))
	r.B.FailNow()
}
func (r *tbRecorder) Skip(args ...any) { r.record(true, fmt.Sprint(args...)); r.B.SkipNow() }
func (r *tbRecorder) Skipf(format string, args ...any) {
	r.record(true, fmt.Sprintf(format, args...))
	r.B.SkipNow()
}

// selfCPU is this process's CPU time so far (user + system), in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// median of xs (0 for none).
func median[T ~int64 | ~float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// perGB is the median over runs of CPU seconds per GB carried.
func perGB(mbps, cpu []float64, secs int) float64 {
	var xs []float64
	for i := range min(len(mbps), len(cpu)) {
		if gb := mbps[i] * float64(secs) / 8e3; gb > 0 {
			xs = append(xs, cpu[i]/gb)
		}
	}
	return median(xs)
}

func cpuPerGB(mbps, cpu []float64, secs int) string {
	if len(cpu) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", perGB(mbps, cpu, secs))
}

// Print writes the table: each setup's median and runs, and the ratios.
func (r DataplaneResult) Print(w io.Writer) {
	o := r.Opts
	fmt.Fprintf(w, "scenario dataplane: iperf3 TCP (%d stream(s), %d s a run) host to host through two GM routers in network namespaces, tunnel MTU %d; %d rounds, medians\n",
		o.Streams, o.Seconds, dptest.EngineTUNMTU, o.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tMbit/s\truns\tx plain\tCPU s per GB\t")
	plain := median(r.Plain)
	row := func(name string, xs, cpu []float64) {
		runs := make([]string, len(xs))
		for i, x := range xs {
			runs[i] = fmt.Sprintf("%.0f", x)
		}
		ratio := "-"
		if plain > 0 {
			ratio = fmt.Sprintf("%.2f", median(xs)/plain)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t\n", name, median(xs), strings.Join(runs, " "), ratio, cpuPerGB(xs, cpu, o.Seconds))
	}
	row("plain routing, no encryption (ceiling)", r.Plain, nil)
	if len(r.WireGuard) > 0 {
		row("wireguard-go (ChaCha20-Poly1305)", r.WireGuard, r.WireGuardCPU)
	}
	if len(r.WireGuardPerPacket) > 0 {
		row("wireguard-go, core links one packet per buffer (no UDP GSO)", r.WireGuardPerPacket, r.WireGuardPerPacketCPU)
	}
	name := "groupvpn engine (" + o.Transform + ", tmd's clear-packet table)"
	if o.NoClearIn {
		name = "groupvpn engine (" + o.Transform + ")"
	}
	row(name, r.Engine, r.EngineCPU)
	tw.Flush()
	if wg := median(r.WireGuard); wg > 0 {
		fmt.Fprintf(w, "groupvpn engine / wireguard-go: %.2f in throughput; %.2f in CPU per octet\n",
			median(r.Engine)/wg, perGB(r.Engine, r.EngineCPU, o.Seconds)/perGB(r.WireGuard, r.WireGuardCPU, o.Seconds))
	}
	if wg := median(r.WireGuardPerPacket); wg > 0 {
		fmt.Fprintf(w, "groupvpn engine / wireguard-go with the core one packet per buffer, as raw ESP crosses it: %.2f in throughput; %.2f in CPU per octet\n",
			median(r.Engine)/wg, perGB(r.Engine, r.EngineCPU, o.Seconds)/perGB(r.WireGuardPerPacket, r.WireGuardPerPacketCPU, o.Seconds))
	}
	if median(r.WireGuard) <= 0 {
		fmt.Fprintln(w, "wireguard-go: not measured (--wireguard-go PATH; `make bench` builds it)")
	}
}
