package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/store"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// statistics runs `show crypto isakmp statistics | json` through the
// control socket and returns its sections.
func statistics(t *testing.T, c *ctl.Client) map[string]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Run(ctx, "show crypto isakmp statistics | json")
	if err != nil || !r.OK {
		t.Fatalf("show crypto isakmp statistics | json: %v %s", err, r.Error)
	}
	var v struct {
		Counters    map[string]json.RawMessage `json:"counters"`
		Unavailable json.RawMessage            `json:"unavailable"`
	}
	if err := json.Unmarshal([]byte(r.Text), &v); err != nil {
		t.Fatalf("| json: %v\n%s", err, r.Text)
	}
	if v.Unavailable != nil {
		v.Counters["unavailable"] = v.Unavailable
	}
	return v.Counters
}

func section(t *testing.T, v map[string]json.RawMessage, key string) map[string]uint64 {
	t.Helper()
	var m map[string]uint64
	if err := json.Unmarshal(v[key], &m); err != nil || len(m) == 0 {
		t.Fatalf("no section %q (%v): %s", key, err, v)
	}
	return m
}

// proves: S5, O4 (issue 11 item 8) — a state-store record damaged under
// the running key server is refused, and the refusal is visible in `show
// crypto isakmp statistics` (state_store.records_damaged); a section read
// from another process (AddCounters) is shown under its key, and one that
// cannot be read says why under "unavailable" instead of failing the
// command.
func TestStatisticsShowStoreDamageAndSources(t *testing.T) {
	dir, err := os.MkdirTemp("", "stats") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(file, []byte(seedKS), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "ks.db")
	st, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, slog.New(slog.DiscardHandler),
		func(o *node.Options) { o.Store = st })
	if err != nil {
		t.Fatal(err)
	}
	d.AddCounters(daemon.CounterSource{Key: "broker", Title: "Broker (test)", Read: func(context.Context) ([]ike.Counter, error) {
		return []ike.Counter{{Name: "short", Help: "dropped: shorter than an IKE header", Value: 7}}, nil
	}})
	d.AddCounters(daemon.CounterSource{Key: "sa_database", Title: "SA database API (test)", Read: func(ctx context.Context) ([]ike.Counter, error) {
		<-ctx.Done() // a peer process that does not answer
		return nil, ctx.Err()
	}})
	sock := filepath.Join(dir, "ks.sock")
	ctx := context.Background()
	client := serve(t, d, sock)
	cli := func(line string) string {
		t.Helper()
		r, err := client.Run(ctx, line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return r.Text + r.Error
	}

	if out := cli("crypto gdoi ks rekey"); strings.Contains(out, "%") {
		t.Fatalf("first rekey: %s", out)
	}
	v := statistics(t, client)
	if got := section(t, v, "state_store")["records_damaged"]; got != 0 {
		t.Fatalf("records_damaged = %d before any damage", got)
	}
	if got := section(t, v, "broker")["short"]; got != 7 {
		t.Errorf("broker.short = %d, want 7", got)
	}
	var unavailable map[string]string
	json.Unmarshal(v["unavailable"], &unavailable)
	if !strings.Contains(unavailable["sa_database"], "deadline") {
		t.Errorf("unavailable = %v, want sa_database's deadline", unavailable)
	}
	for _, k := range []string{"isakmp", "control_socket", "log_rate_limiter"} {
		section(t, v, k)
	}
	text := cli("show crypto isakmp statistics")
	for _, w := range []string{"\nBroker (test)\n  short ", "\nSA database API (test)\n  % unavailable: ", "\nState store\n  records_damaged "} {
		if !strings.Contains(text, w) {
			t.Errorf("show crypto isakmp statistics lacks %q:\n%s", w, text)
		}
	}

	// Damage the sequence mark of group GET in the file under the running
	// KS: bbolt keeps a leaf's key and value together, so the octets after
	// the key "reserved" are the sealed mark (payload, then its tag).
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dbPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("reserved")
	hits := 0
	for at := 0; ; {
		i := bytes.Index(raw[at:], key)
		if i < 0 {
			break
		}
		off := at + i + len(key) + 3 // the low octet of the mark
		f.WriteAt([]byte{raw[off] ^ 0x40}, int64(off))
		at, hits = off, hits+1
	}
	f.Close()
	if hits == 0 {
		t.Fatal("no sequence mark in the store file")
	}
	out := cli("crypto gdoi ks rekey")
	var damaged uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if damaged = section(t, statistics(t, client), "state_store")["records_damaged"]; damaged > 0 {
			break
		}
	}
	if damaged == 0 {
		t.Fatalf("records_damaged stayed 0 after a rekey over a damaged mark (rekey said %q)", out)
	}
}

// proves: S5 (issue 11 item 8) — with the processes of the group ike
// (tmd, iked, isakmpd with -tmd and -iked, as srcmstr starts them), the
// drops iked makes before isakmpd sees a datagram (short datagrams) and
// the malformed lines tmd's API socket refuses are shown by isakmpd's
// show crypto isakmp statistics, under "broker" and "sa_database".
func TestStatisticsOfBrokerAndTmdProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs tmd, iked and isakmpd; skipped with -short")
	}
	dir, err := os.MkdirTemp("", "gstat") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := testnet.Binary(t)
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	conf := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(crashKS, "127.0.3.1", "127.0.3.9", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.3.9:0")))
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	tmdSock, ikedSock, ctlSock := filepath.Join(dir, "tmd.sock"), filepath.Join(dir, "iked.sock"), filepath.Join(dir, "ks.sock")
	start := func(name string, args ...string) {
		cmd := exec.Command(bin, args...)
		log, _ := os.Create(filepath.Join(dir, name+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		// As srcmstr does: the next daemon starts once this one is ready.
		testnet.StartReady(t, cmd, 20*time.Second)
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	}
	start("tmd", "tmd", "-socket", tmdSock)
	start("iked", "iked", "-socket", ikedSock, "-ports", fmt.Sprint(port), "-listen", "127.0.3.9")
	start("isakmpd", "isakmpd", "-f", conf, "-port", fmt.Sprint(port), "-iked", ikedSock, "-tmd", tmdSock,
		"-socket", ctlSock, "-state", filepath.Join(dir, "ks.db"))
	stats := func() map[string]json.RawMessage {
		t.Helper()
		out, err := exec.Command(bin, "cli", "-s", ctlSock, "-c", "show crypto isakmp statistics | json").CombinedOutput()
		if err != nil {
			t.Fatalf("show crypto isakmp statistics | json: %v\n%s", err, out)
		}
		var v struct {
			Counters map[string]json.RawMessage `json:"counters"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("| json: %v\n%s", err, out)
		}
		return v.Counters
	}
	before := stats()
	brokerBefore, tmdBefore := section(t, before, "broker"), section(t, before, "sa_database")

	// Three datagrams shorter than an IKE header at iked; three lines tmd
	// cannot parse.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.3.9"), uint16(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, b := range [][]byte{{1}, make([]byte, 27), []byte("not ike")} {
		c.Write(b)
	}
	tc, err := net.Dial("unix", tmdSock)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(tc)
	for range 3 {
		tc.Write([]byte("{not json\n"))
		if _, err := rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}

	var v map[string]json.RawMessage
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v = stats()
		b, m := section(t, v, "broker"), section(t, v, "sa_database")
		if b["short"] >= brokerBefore["short"]+3 && m["requests_malformed"] >= tmdBefore["requests_malformed"]+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not rise: broker %v -> %v, tmd %v -> %v", brokerBefore, b, tmdBefore, m)
		}
	}
	if isakmp := section(t, v, "isakmp"); isakmp["malformed"] != 0 {
		t.Errorf("isakmpd counted %d malformed: iked's drops reached it", isakmp["malformed"])
	}
	out, _ := exec.Command(bin, "cli", "-s", ctlSock, "-c", "show crypto isakmp statistics").CombinedOutput()
	for _, w := range []string{"\nBroker (iked " + ikedSock + ")\n", "\nSA database API (tmd " + tmdSock + ")\n"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("show crypto isakmp statistics lacks %q:\n%s", w, out)
		}
	}
}
