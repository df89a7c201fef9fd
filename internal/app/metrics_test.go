package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// metricsGM is a GM of one group whose key server is 127.0.0.1 (no KS
// answers there in these tests: the GM stays unregistered).
const metricsGM = `hostname gm-metrics
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key metrics-secret address 127.0.0.1
crypto gdoi group G
 identity number 1
 server address ipv4 127.0.0.1
crypto map m 10 gdoi
 set group G
interface lo
 crypto map m
`

// freeTCP returns a loopback address whose TCP port was free a moment ago.
func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// scrape GETs http://addr/metrics, which must answer 200: the daemons
// bind their metrics endpoint before they say ready.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("no metrics on %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics on %s: %s, %v:\n%s", addr, resp.Status, err, body)
	}
	return string(body)
}

func promtoolAccepts(t *testing.T, body string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics (%v):\n%s\n--- scrape:\n%s", err, out, body)
	}
}

// proves: O3, O5 (issue 14 item 7: isakmpd -metrics serves the node's metrics; promtool accepts them)
func TestIsakmpdMetrics(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gm.conf")
	if err := os.WriteFile(cfg, []byte(metricsGM), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeTCP(t)
	var stderr testnet.Buffer
	exit := make(chan int, 1)
	next := notifyEnv(t)
	go func() {
		exit <- Main(&Env{Stdin: strings.NewReader(""), Stdout: &stderr, Stderr: &stderr}, []string{"isakmpd", "-f", cfg,
			"-listen", "127.0.0.1", "-port", strconv.Itoa(freeUDPPort(t)), "-socket", filepath.Join(dir, "isakmpd.sock"),
			"-state", "", "-metrics", addr})
	}()
	waitReady(t, next, &stderr)
	body := scrape(t, addr)
	// isakmpd catches SIGTERM from the start (signal.NotifyContext), and
	// it answered: the signal stops it. This test catches it too, so that
	// the test binary never dies of it.
	caught := make(chan os.Signal, 1)
	signal.Notify(caught, syscall.SIGTERM)
	defer signal.Stop(caught)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("isakmpd exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("isakmpd did not stop on SIGTERM")
	}
	for _, want := range []string{`groupvpn_source_up{source="node"} 1`, `groupvpn_gdoi_gm_registered{group="G",ks=""} 0`,
		`groupvpn_gdoi_gm_registrations_total{group="G"} 0`, "groupvpn_isakmp_malformed_total 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %q:\n%s", want, body)
		}
	}
	promtoolAccepts(t, body)
}

// proves: O3, O5 (issue 14 item 7: an address in use for -metrics is a startup error of isakmpd and tmd)
func TestMetricsBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gm.conf")
	if err := os.WriteFile(cfg, []byte(metricsGM), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr testnet.Buffer
	code := Main(&Env{Stdin: strings.NewReader(""), Stdout: &stderr, Stderr: &stderr}, []string{"isakmpd", "-f", cfg,
		"-listen", "127.0.0.1", "-port", strconv.Itoa(freeUDPPort(t)), "-socket", filepath.Join(dir, "isakmpd.sock"),
		"-state", "", "-metrics", ln.Addr().String()})
	if code != 1 || !strings.Contains(stderr.String(), "groupvpn isakmpd: -metrics: ") {
		t.Errorf("isakmpd -metrics on an address in use: exit %d: %s", code, stderr.String())
	}
	socket := filepath.Join(dir, "tmd.sock")
	code, tmdErr := tmdFails(t, "-socket", socket, "-metrics", ln.Addr().String())
	if code != 1 || !strings.Contains(tmdErr, "groupvpn tmd: -metrics: ") {
		t.Errorf("tmd -metrics on an address in use: exit %d: %s", code, tmdErr)
	}
	if _, err := os.Lstat(socket); err == nil {
		t.Error("tmd served its SA API although -metrics failed")
	}
}

// proves: O3, O5 (issue 14 item 7: tmd -metrics serves each SA's packet counters; promtool accepts them)
func TestTmdMetrics(t *testing.T) {
	testnet.RequireTools(t, "promtool")
	socket := filepath.Join(t.TempDir(), "tmd.sock")
	addr := freeTCP(t)
	var stderr testnet.Buffer
	sigs := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	n, next := notifyPipe(t)
	go func() {
		exit <- serveTmd(&Env{Stdout: &stderr, Stderr: &stderr}, []string{"-socket", socket, "-metrics", addr}, sigs, n)
		n.Close()
	}()
	waitReady(t, next, &stderr)
	c, err := tmd.Dial(context.Background(), socket, "isakmpd", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.InstallTEK(sadb.TEK{Group: "g", SPI: 0x1234, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, addr)
	sigs <- syscall.SIGTERM
	if code := <-exit; code != 0 {
		t.Errorf("tmd exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{`groupvpn_source_up{source="sa_database"} 1`, `groupvpn_ipsec_sa_encaps_packets_total{group="g",spi="0x00001234"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %q:\n%s", want, body)
		}
	}
	promtoolAccepts(t, body)
}
