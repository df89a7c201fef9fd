package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

const refreshKS = `hostname ks
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key refresh-secret address 10.235.0.0 255.255.255.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.60.0.0 0.0.255.255 10.60.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 256
crypto ipsec profile p
 set transform-set ts
crypto gdoi group REFRESH
 identity number 88
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 10.235.0.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const refreshGM = `hostname %s
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key refresh-secret address %[2]s
crypto gdoi group REFRESH
 identity number 88
 server address ipv4 %[2]s
crypto map M 10 gdoi
 set group REFRESH
interface eth0
 crypto map M
end
`

// proves: D3, D4 — a KS isakmpd started without -listen serves every
// address it has at start; an alias added later is not served (a GM
// configured with it does not register) until SIGHUP, which opens a socket
// on it; after the alias is removed, a SIGHUP closes that socket (gone from
// `show crypto isakmp listen` and from `ss -lun`) even though the
// configuration file it rereads is refused, while the first GM's
// registration and the KS's phase-1 SA with it are untouched.
func TestRefreshAddressesOnSIGHUP(t *testing.T) {
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ss")
	dir := t.TempDir()
	bin := testnet.Binary(t)
	br := testnet.Bridge(t, "gvrf")
	ksNS := testnet.NewNetns(t, "gvrf-ks")
	gm1NS := testnet.NewNetns(t, "gvrf-gm1")
	gm2NS := testnet.NewNetns(t, "gvrf-gm2")
	ksIf := testnet.AttachToBridge(t, br, ksNS, netip.MustParsePrefix("10.235.0.1/24"))
	testnet.AttachToBridge(t, br, gm1NS, netip.MustParsePrefix("10.235.0.11/24"))
	testnet.AttachToBridge(t, br, gm2NS, netip.MustParsePrefix("10.235.0.12/24"))
	const alias = "10.235.0.100"

	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	os.WriteFile(filepath.Join(dir, "ks.conf"), []byte(refreshKS), 0o600)
	os.WriteFile(filepath.Join(dir, "gm1.conf"), []byte(fmt.Sprintf(refreshGM, "gm1", "10.235.0.1")), 0o600)
	os.WriteFile(filepath.Join(dir, "gm2.conf"), []byte(fmt.Sprintf(refreshGM, "gm2", alias)), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := map[string]*testnet.Buffer{}
	procs := map[string]*exec.Cmd{}
	run := func(ns *testnet.Netns, name string) {
		// No -listen: every address (SPEC D3).
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "isakmpd", "-f", filepath.Join(dir, name+".conf"),
			"-socket", filepath.Join(dir, name+".sock"), "-state", filepath.Join(dir, name+".db"))
		logs[name] = &testnet.Buffer{}
		cmd.Stdout, cmd.Stderr = logs[name], logs[name]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[name] = cmd
		t.Cleanup(func() {
			cancel()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, logs[name].String())
			}
		})
	}
	cli := func(name, c string) string {
		out, _ := exec.Command(bin, "cli", "-s", filepath.Join(dir, name+".sock"), "-c", c).CombinedOutput()
		return string(out)
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never happened", what)
			}
		}
	}
	registered := func(name string) bool {
		return strings.Contains(cli(name, "show crypto gdoi gm"), "Registration status   : Registered")
	}
	succeeded := func(name string) string {
		return regexp.MustCompile(`Succeeded registration: \d+`).FindString(cli(name, "show crypto gdoi gm"))
	}
	hangup := func() {
		t.Helper()
		// The ip netns exec process execs isakmpd: the same PID.
		if err := procs["ks"].Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	listening := func() string { return cli("ks", "show crypto isakmp listen") }
	ksPhase1 := regexp.MustCompile(`(?m)^10\.235\.0\.11\s+10\.235\.0\.1\s`)

	run(ksNS, "ks")
	waitFor("the KS listing its address", 10*time.Second, func() bool { return strings.Contains(listening(), "10.235.0.1:848") })
	run(gm1NS, "gm1")
	waitFor("gm1 registering to the primary address", 15*time.Second, func() bool { return registered("gm1") })
	before := succeeded("gm1")

	// An alias added after start is not served (D3).
	ksNS.Run(t, "ip", "addr", "add", alias+"/24", "dev", ksIf)
	run(gm2NS, "gm2")
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if registered("gm2") {
			t.Fatalf("gm2 registered to the alias before any refresh:\n%s", listening())
		}
	}
	if l := listening(); strings.Contains(l, alias) {
		t.Fatalf("the alias is served before the refresh:\n%s", l)
	}

	// SIGHUP: the alias is served; gm2's retransmission gets through (D4).
	hangup()
	waitFor("the refresh log line", 10*time.Second, func() bool {
		return strings.Contains(logs["ks"].String(), `msg="addresses refreshed" added=`+alias+":848")
	})
	if l := listening(); !strings.Contains(l, alias+":848") || !strings.Contains(l, "10.235.0.1:848") {
		t.Fatalf("show crypto isakmp listen after the refresh:\n%s", l)
	}
	waitFor("gm2 registering to the alias", 20*time.Second, func() bool { return registered("gm2") })

	// Remove the alias and SIGHUP, with a broken configuration file: the
	// file is refused, the addresses are refreshed all the same, and gm1
	// is untouched.
	os.WriteFile(filepath.Join(dir, "ks.conf"), []byte(strings.Replace(refreshKS, "identity number 88", "identity number eighty-eight", 1)), 0o600)
	ksNS.Run(t, "ip", "addr", "del", alias+"/24", "dev", ksIf)
	hangup()
	waitFor("the refusal of the broken file", 10*time.Second, func() bool {
		return strings.Contains(logs["ks"].String(), "configuration reload refused; the running configuration stays")
	})
	waitFor("the alias leaving the listing", 10*time.Second, func() bool { return !strings.Contains(listening(), alias) })
	if !strings.Contains(logs["ks"].String(), `removed=`+alias+":848") {
		t.Errorf("the KS log lacks the removal:\n%s", logs["ks"].String())
	}
	if l := listening(); !strings.Contains(l, "10.235.0.1:848") {
		t.Fatalf("the primary address is no longer served:\n%s", l)
	}
	if ss := ksNS.Run(t, "ss", "-lun"); strings.Contains(ss, alias+":848") || !strings.Contains(ss, "10.235.0.1:848") {
		t.Fatalf("ss -lun in the KS namespace after removing the alias:\n%s", ss)
	}
	if !registered("gm1") {
		t.Fatalf("gm1 lost its registration:\n%s", cli("gm1", "show crypto gdoi gm"))
	}
	if after := succeeded("gm1"); after != before || before == "" {
		t.Fatalf("gm1 registered again: %q before the refreshes, %q after", before, after)
	}
	if sa := cli("ks", "show crypto isakmp sa"); !ksPhase1.MatchString(sa) {
		t.Fatalf("the KS lost its phase-1 SA with gm1:\n%s", sa)
	}
}
