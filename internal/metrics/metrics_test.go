package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/lab"
	"github.com/groupvpn/groupvpn/internal/metrics"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// serve starts an endpoint on a free loopback port and returns its URL.
func serve(t *testing.T, lim metrics.Limits, c *metrics.Collector) string {
	t.Helper()
	srv, err := metrics.Listen("127.0.0.1:0", lim, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + srv.Addr().String() + "/metrics"
}

// scrape GETs url over HTTP and returns the body.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return body
}

// families parses the text exposition format with Prometheus' own parser.
func families(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, body)
	}
	return fams
}

// value is the value of the series of family name whose labels include
// want; ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if got[k] != w {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		}
		ok = true
	}
	return v, ok
}

// promtool runs Debian's promtool check metrics on body.
func promtool(t *testing.T, body []byte) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics refused the scrape (%v):\n%s\n--- scrape:\n%s", err, out, body)
	}
}

// TestScrapeLab starts a lab (a KS, three GMs with their ESP engines),
// gives the KS and a GM a metrics endpoint, sends packets through the
// group SA, scrapes both over HTTP and checks the values against what
// the nodes hold, then has promtool check the output.
//
// proves: O3, O5 (issue 14 item 7: an opt-in Prometheus endpoint per daemon, CISCO-GDOI-MIB-derived names, data-plane counters, accepted by promtool check metrics)
func TestScrapeLab(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const members = 3
	l, err := lab.Start(ctx, lab.Options{Members: members, Port: uint16(30000 + os.Getpid()%20000), DataPlane: true,
		Deliver: func(int, []byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, io.Discard, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The engine takes packets from its TUN asynchronously, and its first
	// snapshot of the keys may trail the registration by a moment: send
	// until it has sealed packets of them (each waited for), so that the
	// scrape below has something to count.
	const packets = 5
	for sealed := uint64(0); sealed < packets; {
		if err := l.SendUDP(ctx, 0, 1, false, []byte("metrics")); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Second); ; {
			es, err := l.EngineStats(0)
			if err != nil {
				t.Fatal(err)
			}
			if es.Encaps > sealed {
				sealed = es.Encaps
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				if ctx.Err() != nil {
					t.Fatalf("gm1's engine sealed %d packets of %d: %+v", sealed, packets, es)
				}
				break // sent again
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// One rekey, acknowledged by every member: the last rekey's metrics.
	st, err := l.KS.Node.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.KS) == 0 {
		t.Fatal("the lab KS serves no group")
	}
	if err := l.KS.Node.Rekey(ctx, st.KS[0].Name); err != nil {
		t.Fatal(err)
	}
	for {
		if st, err = l.KS.Node.State(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := st.LastRekeys[st.KS[0].Name]; ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the rekey was not delivered")
		case <-time.After(20 * time.Millisecond):
		}
	}
	ksURL := serve(t, metrics.DefaultLimits, metrics.ForNode(l.KS.Node, 0))
	gmURL := serve(t, metrics.DefaultLimits, metrics.ForNode(l.GMs[0].Node, 0))

	// The key server: one series per group, the member count that of
	// show crypto gdoi ks members.
	ksBody := scrape(t, ksURL)
	ks := families(t, ksBody)
	if st, err = l.KS.Node.State(ctx); err != nil {
		t.Fatal(err)
	}
	lr := st.LastRekeys[st.KS[0].Name]
	last := map[string]string{"group": st.KS[0].Name}
	if v, ok := value(ks, "groupvpn_gdoi_group_last_rekey_time_taken_seconds", last); !ok || v != lr.Took.Seconds() || lr.Took <= 0 {
		t.Errorf("groupvpn_gdoi_group_last_rekey_time_taken_seconds = %v (present %v), want %v (> 0)", v, ok, lr.Took.Seconds())
	}
	if v, ok := value(ks, "groupvpn_gdoi_group_last_rekey_retransmits", last); !ok || v != float64(lr.Retransmits) {
		t.Errorf("groupvpn_gdoi_group_last_rekey_retransmits = %v (present %v), want %d", v, ok, lr.Retransmits)
	}
	if v, _ := value(ks, "groupvpn_gdoi_ks_rekeys_pushed_total", last); v < 1 {
		t.Errorf("groupvpn_gdoi_ks_rekeys_pushed_total = %v after a rekey, want >= 1", v)
	}
	if v, _ := value(ks, "groupvpn_gdoi_ks_acks_received_total", nil); v < members {
		t.Errorf("groupvpn_gdoi_ks_acks_received_total = %v after a rekey to %d members, want >= %d", v, members, members)
	}
	for _, g := range st.KS {
		grp := map[string]string{"group": g.Name}
		if v, ok := value(ks, "groupvpn_gdoi_group_members", grp); !ok || v != members || len(g.Members) != members {
			t.Errorf("group %s: groupvpn_gdoi_group_members = %v (present %v), want %d (ks members lists %d)", g.Name, v, ok, members, len(g.Members))
		}
		if v, _ := value(ks, "groupvpn_gdoi_ks_registrations_total", grp); v < members {
			t.Errorf("group %s: groupvpn_gdoi_ks_registrations_total = %v, want >= %d", g.Name, v, members)
		}
		if v, ok := value(ks, "groupvpn_gdoi_ks_rekeys_pushed_total", grp); !ok || v != float64(g.Rekeys) {
			t.Errorf("group %s: groupvpn_gdoi_ks_rekeys_pushed_total = %v (present %v), want %d", g.Name, v, ok, g.Rekeys)
		}
		if v, _ := value(ks, "groupvpn_gdoi_ks_role", map[string]string{"group": g.Name, "role": "primary"}); v != 1 {
			t.Errorf("group %s: groupvpn_gdoi_ks_role{role=primary} = %v, want 1", g.Name, v)
		}
		if v, _ := value(ks, "groupvpn_gdoi_ks_active_teks", grp); v != float64(len(g.TEKs)) || v == 0 {
			t.Errorf("group %s: groupvpn_gdoi_ks_active_teks = %v, want %d (> 0)", g.Name, v, len(g.TEKs))
		}
		if _, ok := value(ks, "groupvpn_gdoi_ks_acks_missed_total", grp); !ok {
			t.Errorf("group %s: no groupvpn_gdoi_ks_acks_missed_total", g.Name)
		}
	}
	if v, _ := value(ks, "groupvpn_source_up", map[string]string{"source": "node"}); v != 1 {
		t.Errorf("groupvpn_source_up{source=node} = %v, want 1", v)
	}
	if _, ok := ks["groupvpn_isakmp_phase1_completed_total"]; !ok && len(ks) < 20 {
		t.Errorf("the isakmp statistics counters are missing: %d families", len(ks))
	}
	promtool(t, ksBody)

	// The group member: registered, its TEKs, and the packets it
	// encrypted counted per SA by its engine.
	gmBody := scrape(t, gmURL)
	gm := families(t, gmBody)
	gst, err := l.GMs[0].Node.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range gst.GM {
		grp := map[string]string{"group": m.Group}
		if v, _ := value(gm, "groupvpn_gdoi_gm_registered", map[string]string{"group": m.Group, "ks": m.KS.Addr().String()}); v != 1 {
			t.Errorf("group %s: groupvpn_gdoi_gm_registered{ks=%s} = %v, want 1", m.Group, m.KS.Addr(), v)
		}
		if v, _ := value(gm, "groupvpn_gdoi_gm_registrations_total", grp); v != float64(m.Registrations) || v < 1 {
			t.Errorf("group %s: groupvpn_gdoi_gm_registrations_total = %v, want %d", m.Group, v, m.Registrations)
		}
		if v, _ := value(gm, "groupvpn_gdoi_gm_active_teks", grp); v < 1 {
			t.Errorf("group %s: groupvpn_gdoi_gm_active_teks = %v, want >= 1", m.Group, v)
		}
	}
	if v, _ := value(gm, "groupvpn_ipsec_sa_encaps_packets_total", nil); v < packets {
		t.Errorf("groupvpn_ipsec_sa_encaps_packets_total summed = %v, want >= %d", v, packets)
	}
	if v, _ := value(gm, "groupvpn_source_up", map[string]string{"source": "sa_database"}); v != 1 {
		t.Errorf("groupvpn_source_up{source=sa_database} = %v, want 1", v)
	}
	var dpFamilies int
	for n := range gm {
		if strings.HasPrefix(n, "groupvpn_dataplane_") {
			dpFamilies++
		}
	}
	if dpFamilies == 0 {
		t.Error("no groupvpn_dataplane_* counters (the engine's)")
	}
	promtool(t, gmBody)
	t.Logf("KS scrape: %d families, %d bytes; GM scrape: %d families, %d bytes", len(ks), len(ksBody), len(gm), len(gmBody))
}

// TestListenBindError: an address in use is an error of Listen (the
// daemon's startup), not of a later Serve.
//
// proves: O3, O5 (issue 14 item 7: -metrics bind errors are startup errors)
func TestListenBindError(t *testing.T) {
	c := metrics.NewCollector(blocking{}, nil, time.Millisecond)
	a, err := metrics.Listen("127.0.0.1:0", metrics.DefaultLimits, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := metrics.Listen(a.Addr().String(), metrics.DefaultLimits, nil, c); err == nil {
		t.Fatalf("a second endpoint on %s: no error", a.Addr())
	}
	if _, err := metrics.Listen("no-such-host.invalid:9", metrics.DefaultLimits, nil, c); err == nil {
		t.Fatal("an address that does not resolve: no error")
	}
}

// blocking is a node whose event loop never answers (until ctx ends);
// entered is told of each read.
type blocking struct{ entered chan struct{} }

func (b blocking) State(ctx context.Context) (node.Snapshot, error) {
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	<-ctx.Done()
	return node.Snapshot{}, fmt.Errorf("node: %w", ctx.Err())
}

// TestScrapeBounded: a stuck node costs a scrape at most the collector's
// timeout (2 s here) and is reported by groupvpn_source_up 0; scrapes over
// MaxInFlight are answered 503 at once instead of queueing.
//
// proves: O3, O5 (issue 14 item 7: the scrape cost and concurrency are bounded)
func TestScrapeBounded(t *testing.T) {
	b := blocking{entered: make(chan struct{}, 8)}
	url := serve(t, metrics.Limits{Timeout: 5 * time.Second, MaxInFlight: 1}, metrics.NewCollector(b, nil, 2*time.Second))

	var wg sync.WaitGroup
	var first []byte
	wg.Go(func() { first = scrape(t, url) })
	<-b.entered // the first scrape holds the one slot
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a scrape over MaxInFlight: %s, want 503", resp.Status)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the refused scrape waited %v (the first holds the slot for 2 s)", d)
	}
	wg.Wait()
	fams := families(t, first)
	if v, ok := value(fams, "groupvpn_source_up", map[string]string{"source": "node"}); !ok || v != 0 {
		t.Errorf("groupvpn_source_up{source=node} = %v (present %v), want 0 for a node that did not answer", v, ok)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the scrape of a stuck node took %v, bound 2 s", d)
	}
}

// hostileSAs is an SA database whose answer Prometheus would refuse:
// counter names that are not metric names, duplicates, a group that is
// not UTF-8, far too many counters.
type hostileSAs struct{}

func (hostileSAs) Counters(context.Context) ([]tmd.TEKCounters, *tmd.DataPlaneCounters, error) {
	sas := []tmd.TEKCounters{
		{Group: "g", SPI: 1}, {Group: "g", SPI: 1}, {Group: "bad\xff", SPI: 2}, {Group: "ok", SPI: 3},
	}
	sas[3].EncapsPackets = 7
	dp := &tmd.DataPlaneCounters{Device: "tun0", Counters: []tmd.Counter{
		{Name: "no such name!", Value: 1}, {Name: "encaps", Value: 2}, {Name: "encaps", Value: 3},
		{Name: "x", Help: strings.Repeat("h", 10000) + "\xff\n"},
	}}
	for i := range 1000 {
		dp.Counters = append(dp.Counters, tmd.Counter{Name: fmt.Sprintf("c%d", i), Value: uint64(i)})
	}
	return sas, dp, nil
}

// TestScrapeHostileCounters: counter lists read from another process
// (tmd, iked) cannot panic the daemon or spoil the scrape: refused names
// and values are left out, duplicates dropped, their number bounded.
//
// proves: O3, O5 (issue 14 item 7: counters read over IPC from tmd or iked cannot panic the daemon or spoil the scrape; their number is bounded)
func TestScrapeHostileCounters(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	url := serve(t, metrics.DefaultLimits, metrics.NewCollector(nil, hostileSAs{}, 0))
	body := scrape(t, url)
	fams := families(t, body)
	if v, ok := value(fams, "groupvpn_ipsec_sa_encaps_packets_total", map[string]string{"group": "ok", "spi": "0x00000003"}); !ok || v != 7 {
		t.Errorf("the valid SA's counter = %v (present %v), want 7", v, ok)
	}
	if v, _ := value(fams, "groupvpn_dataplane_encaps_total", nil); v != 2 {
		t.Errorf("groupvpn_dataplane_encaps_total = %v, want 2 (the first of the duplicates)", v)
	}
	var dp int
	for n := range fams {
		if strings.HasPrefix(n, "groupvpn_dataplane_") {
			dp++
		}
	}
	if dp > 256 {
		t.Errorf("%d engine counters exported, bound 256", dp)
	}
	if len(body) > 200_000 {
		t.Errorf("scrape of %d bytes", len(body))
	}
	promtool(t, body)
}

// TestScrapeSections: the counters of the iked broker and of tmd's API
// socket (show crypto isakmp statistics' sections) are exported per
// section; a section that does not answer is reported, not fatal.
//
// proves: O3, O5 (issue 14 item 7: every drop counter an operator sees in show crypto isakmp statistics is scraped), S5
func TestScrapeSections(t *testing.T) {
	c := metrics.NewCollector(nil, nil, 0).WithSections(
		metrics.Section{Name: "broker", Read: func(context.Context) ([]ike.Counter, error) {
			return []ike.Counter{{Name: "received", Help: "UDP datagrams read", Value: 5}, {Name: "short", Help: "dropped", Value: 1}}, nil
		}},
		metrics.Section{Name: "tmd_api", Read: func(context.Context) ([]ike.Counter, error) {
			return nil, fmt.Errorf("tmd: connection lost")
		}})
	fams := families(t, scrape(t, serve(t, metrics.DefaultLimits, c)))
	if v, _ := value(fams, "groupvpn_broker_received_total", nil); v != 5 {
		t.Errorf("groupvpn_broker_received_total = %v, want 5", v)
	}
	if v, _ := value(fams, "groupvpn_broker_short_total", nil); v != 1 {
		t.Errorf("groupvpn_broker_short_total = %v, want 1", v)
	}
	if v, _ := value(fams, "groupvpn_source_up", map[string]string{"source": "broker"}); v != 1 {
		t.Errorf("groupvpn_source_up{source=broker} = %v, want 1", v)
	}
	if v, ok := value(fams, "groupvpn_source_up", map[string]string{"source": "tmd_api"}); !ok || v != 0 {
		t.Errorf("groupvpn_source_up{source=tmd_api} = %v (present %v), want 0", v, ok)
	}
}
