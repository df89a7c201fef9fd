package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// seedKS is seed 001's key server: sa ipsec 1 uses profile gdoi-p; the
// operator changes it to gdoi-p2 (another transform set).
const seedKS = `hostname Device
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key seed-secret address 127.0.0.0 255.0.0.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.70.0.0 0.0.255.255 10.70.0.0 0.0.255.255
crypto ipsec transform-set ts-cbc esp-aes 128 esp-sha-hmac
crypto ipsec transform-set ts-gcm esp-gcm 256
crypto ipsec profile gdoi-p
 set transform-set ts-cbc
crypto ipsec profile gdoi-p2
 set transform-set ts-gcm
crypto gdoi group GET
 identity number 1111
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 127.0.0.1
  sa ipsec 1
   profile gdoi-p
   match address ipv4 traffic
end
`

// proves: P1
// proves: O2
func TestConfigureTerminalSeedSession(t *testing.T) {
	dir, err := os.MkdirTemp("", "cfgmode") // short: unix socket paths are limited
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
	var logs testnet.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	type commit struct{ old, new *policy.Config }
	commits := make(chan commit, 4)
	d.SetCommitHook(func(old, new *policy.Config) {
		commits <- commit{old, new}
		d.ApplyConfig(old, new) // what the daemon does by default
	})
	sock := filepath.Join(dir, "ks.sock")
	ctx := context.Background()
	client := serve(t, d, sock)

	var out, errb bytes.Buffer
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: &out, Err: &errb})

	// The seed's session, on one connection, as groupvpn cli -c ... -c ... runs it.
	for _, step := range []struct{ line, mode string }{
		{"configure terminal", "(config)"},
		{"crypto gdoi group GET", "(config-gdoi-group)"},
		{"server local", "(gdoi-local-server)"},
		{"sa ipsec 1", "(gdoi-sa-ipsec)"},
		{"no profile gdoi-p", "(gdoi-sa-ipsec)"},
		{"profile gdoi-p2", "(gdoi-sa-ipsec)"},
		{"end", ""},
	} {
		if err := cs.RunCommand(ctx, step.line); err != nil {
			t.Fatalf("Device%s#%s: %v\n%s", cs.Mode(), step.line, err, errb.String())
		}
		if cs.Mode() != step.mode {
			t.Fatalf("%q: prompt Device%s#, want Device%s#", step.line, cs.Mode(), step.mode)
		}
		if step.line == "no profile gdoi-p" && d.Config() != cfg {
			t.Fatal("the running configuration changed before end")
		}
	}
	if err := cs.Close(ctx); err != nil {
		t.Fatal(err)
	}

	var c commit
	select {
	case c = <-commits:
	case <-time.After(5 * time.Second):
		t.Fatal("the commit hook did not run")
	}
	if c.old != cfg || c.new != d.Config() {
		t.Fatalf("hook got old %p new %p; running was %p, is %p", c.old, c.new, cfg, d.Config())
	}
	if o, n := c.old.Group("GET").Server.SAs[0].ProfileName, c.new.Group("GET").Server.SAs[0].ProfileName; o != "gdoi-p" || n != "gdoi-p2" {
		t.Fatalf("sa ipsec 1 profile: old %q new %q", o, n)
	}
	// CONFIG_I, then (from the hook) POLICY_CHANGE, as in the seed.
	logText := logs.String()
	// by the control socket's peer (issue 14 item 6): this process, root
	ci := strings.Index(logText, fmt.Sprintf("%%SYS-5-CONFIG_I: Configured from console by root on vty (pid %d)", os.Getpid()))
	pc := strings.Index(logText, "%GDOI-5-POLICY_CHANGE: GDOI group GET policy has changed. Use 'crypto gdoi ks rekey' to send a rekey, or the changes will be send in the next scheduled rekey")
	if ci < 0 || pc < ci {
		t.Fatalf("log lacks CONFIG_I then POLICY_CHANGE:\n%s", logText)
	}
	if strings.Contains(logText, "REKEY") {
		t.Fatalf("a policy change sent a rekey by itself:\n%s", logText)
	}

	// show running-config shows it; write memory saves it, atomically.
	resp, err := client.Run(ctx, "show running-config | include profile gdoi-p")
	if err != nil || !strings.Contains(resp.Text, "   profile gdoi-p2\n") {
		t.Fatalf("show running-config: %v %+v", err, resp)
	}
	resp, err = client.Run(ctx, "write memory")
	if err != nil || !resp.OK || resp.Text != "Building configuration...\n[OK]\n" {
		t.Fatalf("write memory: %v %+v", err, resp)
	}
	saved, err := policy.Load(file)
	if err != nil {
		t.Fatalf("the saved file does not parse: %v", err)
	}
	if saved.Render() != d.Config().Render() || saved.Group("GET").Server.SAs[0].ProfileName != "gdoi-p2" {
		t.Fatalf("saved:\n%s", saved.Render())
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("write memory changed the file's mode to %v", fi.Mode().Perm())
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".ks.conf.tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
	if resp, _ := client.Run(ctx, "copy running-config startup-config"); !resp.OK {
		t.Fatalf("copy running-config startup-config: %+v", resp)
	}

	// An invalid candidate is refused at end, with running-config:LINE
	// errors; the session stays in configuration mode; nothing changes.
	running := d.Config()
	errb.Reset()
	for _, l := range []string{"conf t", "crypto gdoi group GET", "server local", "sa ipsec 1", "no profile gdoi-p2"} {
		if err := cs.RunCommand(ctx, l); err != nil {
			t.Fatalf("%q: %v %s", l, err, errb.String())
		}
	}
	if err := cs.RunCommand(ctx, "end"); err == nil {
		t.Fatal("end accepted an sa ipsec without profile")
	}
	if e := errb.String(); !strings.Contains(e, "% Configuration not committed") || !strings.Contains(e, "running-config:") {
		t.Fatalf("refusal: %s", e)
	}
	if cs.Mode() != "(gdoi-sa-ipsec)" || d.Config() != running {
		t.Fatalf("after a refused end: mode %q, running replaced %v", cs.Mode(), d.Config() != running)
	}
	// A refused line names the parser's reason.
	errb.Reset()
	if err := cs.RunCommand(ctx, "replay time window-size 500"); err == nil || !strings.Contains(errb.String(), "% replay time window-size 500 is out of range (accepted: 1-100)") {
		t.Fatalf("bad value: %v %s", err, errb.String())
	}
	// do, and abort.
	out.Reset()
	if err := cs.RunCommand(ctx, "do show running-config | include gdoi-p2"); err != nil || !strings.Contains(out.String(), "profile gdoi-p2") {
		t.Fatalf("do: %v %q", err, out.String())
	}
	if err := cs.RunCommand(ctx, "abort"); err != nil || cs.Mode() != "" || d.Config() != running {
		t.Fatalf("abort: %v %q", err, cs.Mode())
	}
	select {
	case c := <-commits:
		t.Fatalf("the hook ran for an aborted session: %v", c)
	default:
	}
}
