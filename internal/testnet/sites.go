package testnet

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Sites is the two-site topology of the data-plane proofs and benchmarks
// (issue 12): two GM routers with a host behind each, joined by a core
// that routes the host prefixes as a provider core would (no NAT, no
// tunnels).
//
//	H1 10.1.1.2 -- 10.1.1.1 GM1 10.100.1.2 -- 10.100.1.1 CORE 10.100.2.1 -- 10.100.2.2 GM2 10.1.2.1 -- 10.1.2.2 H2
//
// Every link is a veth pair with a 1500-octet MTU; the GMs and the core
// forward, without reverse-path filtering.
type Sites struct {
	Core, GM1, GM2, H1, H2 *Netns
}

// The addresses of Sites.
var (
	SitesPrefix = netip.MustParsePrefix("10.1.0.0/16") // both LANs
	SiteLAN1    = netip.MustParsePrefix("10.1.1.0/24")
	SiteLAN2    = netip.MustParsePrefix("10.1.2.0/24")
	SiteGM1     = netip.MustParseAddr("10.1.1.1") // GM1's address on its LAN
	SiteGM2     = netip.MustParseAddr("10.1.2.1")
	SiteH1      = netip.MustParseAddr("10.1.1.2")
	SiteH2      = netip.MustParseAddr("10.1.2.2")
	SiteGM1Core = netip.MustParseAddr("10.100.1.2") // GM1's address towards the core
	SiteGM2Core = netip.MustParseAddr("10.100.2.2")
)

// NewSites builds the topology in five namespaces named tag-core, tag-gm1,
// tag-gm2, tag-h1 and tag-h2; everything is removed on cleanup.
func NewSites(t testing.TB, tag string) *Sites {
	t.Helper()
	s := &Sites{
		Core: NewNetns(t, tag+"-core"),
		GM1:  NewNetns(t, tag+"-gm1"),
		GM2:  NewNetns(t, tag+"-gm2"),
		H1:   NewNetns(t, tag+"-h1"),
		H2:   NewNetns(t, tag+"-h2"),
	}
	pfx := netip.MustParsePrefix
	VethBetween(t, "dpc1", s.Core, s.GM1, pfx("10.100.1.1/24"), pfx("10.100.1.2/24"))
	VethBetween(t, "dpc2", s.Core, s.GM2, pfx("10.100.2.1/24"), pfx("10.100.2.2/24"))
	VethBetween(t, "dpl1", s.GM1, s.H1, pfx("10.1.1.1/24"), pfx("10.1.1.2/24"))
	VethBetween(t, "dpl2", s.GM2, s.H2, pfx("10.1.2.1/24"), pfx("10.1.2.2/24"))
	for _, ns := range []*Netns{s.Core, s.GM1, s.GM2} {
		ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
	}
	s.Core.Run(t, "ip", "route", "add", SiteLAN1.String(), "via", SiteGM1Core.String())
	s.Core.Run(t, "ip", "route", "add", SiteLAN2.String(), "via", SiteGM2Core.String())
	s.GM1.Run(t, "ip", "route", "add", "default", "via", "10.100.1.1")
	s.GM2.Run(t, "ip", "route", "add", "default", "via", "10.100.2.1")
	s.H1.Run(t, "ip", "route", "add", "default", "via", SiteGM1.String())
	s.H2.Run(t, "ip", "route", "add", "default", "via", SiteGM2.String())
	return s
}

// Iperf3 runs iperf3 TCP from one namespace to dst in another for secs
// seconds (extra arguments go to the client, e.g. "-P", "4") and returns
// what the receiver got, in Mbit/s. The server is killed by its PID.
func Iperf3(t testing.TB, from, to *Netns, dst netip.Addr, secs int, extra ...string) float64 {
	t.Helper()
	RequireTools(t, "iperf3")
	srv := to.Command("iperf3", "-s", "-1", "-B", dst.String())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	args := append([]string{"-c", dst.String(), "-t", fmt.Sprint(secs), "-J"}, extra...)
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	for try := 0; ; try++ {
		out, err := from.Command("iperf3", args...).CombinedOutput()
		r.Error = ""
		jerr := json.Unmarshal(out, &r)
		if jerr == nil && strings.Contains(r.Error, "refused") && try < 50 {
			time.Sleep(100 * time.Millisecond) // until the server listens
			continue
		}
		if err != nil || jerr != nil || r.Error != "" {
			t.Fatalf("iperf3 %s: %v %v %s\n%s", strings.Join(args, " "), err, jerr, r.Error, out)
		}
		break
	}
	return r.End.SumReceived.BitsPerSecond / 1e6
}
