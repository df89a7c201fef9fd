package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// runningKS starts seedKS's key server in this process with a control
// socket, and returns it, its file and a client.
func runningKS(t *testing.T) (*daemon.Daemon, string, *ctl.Client, *testnet.Buffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "apply") // short: unix socket paths are limited
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
	logs := &testnet.Buffer{}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ks.sock")
	client := serve(t, d, sock)
	return d, file, client, logs
}

// unchanged checks that the daemon still runs cfg: Config, show
// running-config, the groups the node serves, and write memory saves it.
func unchanged(t *testing.T, d *daemon.Daemon, client *ctl.Client, cfg *policy.Config, file string) {
	t.Helper()
	ctx := context.Background()
	if d.Config() != cfg {
		t.Fatalf("the running configuration was replaced:\n%s", d.Config().Render())
	}
	resp, err := client.Run(ctx, "show running-config")
	if err != nil || resp.Text != cfg.Render() {
		t.Fatalf("show running-config changed: %v\n%s", err, resp.Text)
	}
	var groups []string
	d.Node.Do(ctx, func() { groups = d.Node.KSGroups() })
	if len(groups) != 1 || groups[0] != "GET" {
		t.Fatalf("the node serves %v", groups)
	}
	if resp, err := client.Run(ctx, "write memory"); err != nil || !resp.OK {
		t.Fatalf("write memory: %v %+v", err, resp)
	}
	saved, err := os.ReadFile(file)
	if err != nil || string(saved) != cfg.Render() {
		t.Fatalf("write memory saved something else than the running configuration:\n%s", saved)
	}
}

// proves: D4, P1 (issue 11 item 6) — a file cut before `crypto gdoi group`
// is refused on reload with the reason (the group would be removed, which
// the running node cannot do); the running configuration, show
// running-config and the node stay as they were, and write memory saves
// the old configuration, not the gutted file.
func TestReloadTruncatedFileRefused(t *testing.T) {
	d, file, client, logs := runningKS(t)
	cfg := d.Config()
	cut := seedKS[:strings.Index(seedKS, "crypto gdoi group")]
	if err := os.WriteFile(file, []byte(cut), 0o640); err != nil {
		t.Fatal(err)
	}
	err := d.Reload()
	var na *daemon.NotAppliedError
	if !errors.As(err, &na) {
		t.Fatalf("Reload of a file without the group: %v", err)
	}
	for _, want := range []string{"crypto gdoi group GET: key-server group (server local) would be removed", "the running configuration is unchanged"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	unchanged(t, d, client, cfg, file)
	if strings.Contains(logs.String(), "POLICY_CHANGE") {
		t.Fatalf("a refused reload logged a policy change:\n%s", logs)
	}
	// A file whose parser used to panic is refused at its line.
	bad := strings.Replace(seedKS, "ts-gcm esp-gcm 256", "ts-gcm esp-hmac", 1)
	if err := os.WriteFile(file, []byte(bad), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), `ks.conf:12: crypto ipsec transform-set ts-gcm: transform "esp-hmac" is not supported`) {
		t.Fatalf("Reload of esp-hmac: %v", err)
	}
	unchanged(t, d, client, cfg, file)
}

// proves: D4, P1 (issue 11 item 6) — every change the running node cannot
// make is refused through the same check, with its reason, and changes
// nothing; changes it can make are applied.
func TestReloadRefusesWhatTheNodeCannotApply(t *testing.T) {
	d, file, client, _ := runningKS(t)
	cfg := d.Config()
	for _, c := range []struct{ what, from, to, reason string }{
		{"a second key-server group", "end\n", "crypto gdoi group TWO\n identity number 2\n server local\n  sa ipsec 1\n   profile gdoi-p\n   match address ipv4 traffic\nend\n",
			"crypto gdoi group TWO: key-server group (server local) would be added"},
		{"a renumbered group", "identity number 1111", "identity number 2222", "crypto gdoi group GET: identity number 1111 -> 2222"},
		{"a renamed group", "crypto gdoi group GET", "crypto gdoi group GOT", "crypto gdoi group GET: key-server group (server local) would be removed"},
		{"the KS becoming a member", " server local\n  rekey authentication mypubkey ec REKEY\n  rekey transport unicast\n  address ipv4 127.0.0.1\n  sa ipsec 1\n   profile gdoi-p\n   match address ipv4 traffic\n",
			" server address ipv4 127.0.0.2\ncrypto map m 10 gdoi\n set group GET\ninterface lo\n crypto map m\n", "crypto gdoi group GET: member group (applied by a crypto map on an interface) would be added"},
		{"phase 1", " hash sha256\n", " hash sha384\n", "crypto isakmp policy: the phase-1 proposals would change"},
		{"the phase-1 identity", "hostname Device\n", "hostname Device\ncrypto isakmp identity hostname\n", "crypto isakmp identity: the phase-1 identity would change"},
		{"the announced version", "hostname Device\n", "hostname Device\ngroupvpn version 1.0.1\n", "groupvpn version: the announced version would change"},
	} {
		t.Run(c.what, func(t *testing.T) {
			if !strings.Contains(seedKS, c.from) {
				t.Fatalf("seedKS lacks %q", c.from)
			}
			if err := os.WriteFile(file, []byte(strings.Replace(seedKS, c.from, c.to, 1)), 0o640); err != nil {
				t.Fatal(err)
			}
			err := d.Reload()
			var na *daemon.NotAppliedError
			if !errors.As(err, &na) || !strings.Contains(err.Error(), c.reason) || !na.Restart {
				t.Fatalf("Reload: %v; want a refusal with %q", err, c.reason)
			}
			unchanged(t, d, client, cfg, file)
		})
	}

	// What the node can change is applied: a policy change (the KS installs
	// it, POLICY_CHANGE), an authorization, the hostname.
	ok := strings.Replace(seedKS, "   profile gdoi-p\n", "   profile gdoi-p2\n", 1)
	ok = strings.Replace(ok, "hostname Device", "hostname Renamed", 1)
	ok = strings.Replace(ok, "  address ipv4 127.0.0.1\n", "  address ipv4 127.0.0.1\n  authorization address ipv4 gms\n", 1)
	ok += "ip access-list standard gms\n permit 10.0.0.0 0.255.255.255\n"
	if err := os.WriteFile(file, []byte(ok), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("Reload of an applicable change: %v", err)
	}
	if d.Config() == cfg || d.Config().Hostname != "Renamed" {
		t.Fatal("the applicable change is not running")
	}
	resp, err := client.Run(context.Background(), "show crypto gdoi ks policy")
	if err != nil || !strings.Contains(resp.Text, "profile gdoi-p2 (esp-gcm 256)") {
		t.Fatalf("show crypto gdoi ks policy: %v\n%s", err, resp.Text)
	}
	if resp, err := client.Run(context.Background(), "show version"); err != nil || !strings.Contains(resp.Text, "hostname Renamed\n") {
		t.Fatalf("show version after a hostname change: %v\n%s", err, resp.Text)
	}
}

// proves: D4, O2 (issue 11 item 6) — `no crypto gdoi group GET` in
// configure terminal is refused at end with the reason; the session stays
// in configuration mode; the running configuration, the node and write
// memory are unchanged.
func TestConfigureTerminalRemovingTheGroupRefused(t *testing.T) {
	d, file, client, logs := runningKS(t)
	cfg := d.Config()
	ctx := context.Background()
	var out, errb bytes.Buffer
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: &out, Err: &errb})
	for _, l := range []string{"configure terminal", "no crypto gdoi group GET"} {
		if err := cs.RunCommand(ctx, l); err != nil {
			t.Fatalf("%q: %v %s", l, err, errb.String())
		}
	}
	if err := cs.RunCommand(ctx, "end"); err == nil {
		t.Fatal("end committed a configuration without the group the node serves")
	}
	if e := errb.String(); !strings.Contains(e, "crypto gdoi group GET: key-server group (server local) would be removed") {
		t.Fatalf("refusal: %s", e)
	}
	if cs.Mode() != "(config)" {
		t.Fatalf("after the refusal: mode %q, want (config)", cs.Mode())
	}
	if strings.Contains(logs.String(), "CONFIG_I") {
		t.Fatalf("a refused commit logged CONFIG_I:\n%s", logs)
	}
	if err := cs.RunCommand(ctx, "abort"); err != nil {
		t.Fatal(err)
	}
	unchanged(t, d, client, cfg, file)
}

// gmFailClose is a member whose crypto map has a fail-close, not activated.
const gmFailClose = `hostname gm
crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 127.0.0.0 255.0.0.0
crypto gdoi group G
 identity number 7
 server address ipv4 127.0.9.9
crypto map m 10 gdoi
 set group G
crypto map m gdoi fail-close
interface lo
 crypto map m
`

// proves: T3, D4 (issue 11 item 6) — what the running node can change is
// applied, not only reported: activating a member's fail-close on reload
// sets the group's fail mode in the data plane; changing its key server is
// refused.
func TestReloadAppliesFailCloseLive(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gm.conf")
	if err := os.WriteFile(file, []byte(gmFailClose), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 24999, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })
	mode := func() sadb.FailMode {
		var m sadb.FailMode
		d.Node.Do(ctx, func() { m = d.Node.Dataplane().(*sadb.Memory).FailMode("G") })
		return m
	}
	if m := mode(); m != sadb.FailOpen {
		t.Fatalf("fail mode before: %v", m)
	}
	if err := os.WriteFile(file, []byte(gmFailClose+"crypto map m gdoi fail-close\n activate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if m := mode(); m != sadb.FailClose {
		t.Fatalf("fail mode after activate: %v, want fail-close", m)
	}
	running := d.Config()
	if err := os.WriteFile(file, []byte(strings.Replace(gmFailClose, "127.0.9.9", "127.0.9.8", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "crypto gdoi group G: server address ipv4 would change") {
		t.Fatalf("Reload with another key server: %v", err)
	}
	if d.Config() != running || mode() != sadb.FailClose {
		t.Fatal("a refused reload changed the running configuration or the fail mode")
	}
}
