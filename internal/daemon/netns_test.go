package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/version"
)

const netnsKS = `hostname ks
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key netns-secret address 10.233.0.0 255.255.0.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.50.0.0 0.0.255.255 10.50.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 256
crypto ipsec profile p
 set transform-set ts
crypto gdoi group NETNS
 identity number 77
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 10.233.1.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const netnsGM = `hostname %s
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key netns-secret address %s
crypto gdoi group NETNS
 identity number 77
 server address ipv4 %s
crypto map M 10 gdoi
 set group NETNS
interface eth0
 crypto map M
end
`

// proves: O2, O1 (daemon level) — a KS and two GMs run as separate
// `groupvpn isakmpd` processes in three network namespaces on UDP 848;
// both GMs register, and `groupvpn cli -c "show crypto gdoi ks members"`
// on the KS lists them.
func TestIsakmpdInNamespaces(t *testing.T) {
	testnet.RequireNetns(t)
	dir := t.TempDir()
	bin := testnet.Binary(t)
	ks := testnet.NewNetns(t, "gvd-ks")
	gm1 := testnet.NewNetns(t, "gvd-gm1")
	gm2 := testnet.NewNetns(t, "gvd-gm2")
	testnet.VethBetween(t, "gvd1", ks, gm1, netip.MustParsePrefix("10.233.1.1/24"), netip.MustParsePrefix("10.233.1.2/24"))
	testnet.VethBetween(t, "gvd2", ks, gm2, netip.MustParsePrefix("10.233.2.1/24"), netip.MustParsePrefix("10.233.2.2/24"))

	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	os.WriteFile(filepath.Join(dir, "ks.conf"), []byte(netnsKS), 0o600)
	os.WriteFile(filepath.Join(dir, "gm1.conf"), []byte(fmt.Sprintf(netnsGM, "gm1", "10.233.1.1", "10.233.1.1")), 0o600)
	os.WriteFile(filepath.Join(dir, "gm2.conf"), []byte(fmt.Sprintf(netnsGM, "gm2", "10.233.2.1", "10.233.2.1")), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := map[string]*testnet.Buffer{}
	run := func(ns *testnet.Netns, name string) {
		sock := filepath.Join(dir, name+".sock")
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "isakmpd", "-f", filepath.Join(dir, name+".conf"), "-socket", sock,
			"-state", filepath.Join(dir, name+".db"))
		logs[name] = &testnet.Buffer{}
		cmd.Stdout, cmd.Stderr = logs[name], logs[name]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, logs[name].String())
			}
		})
	}
	run(ks, "ks")
	run(gm1, "gm1")
	run(gm2, "gm2")

	// The KS logs each registration once the member is in its list.
	for _, gm := range []string{"10.233.1.2", "10.233.2.2"} {
		logs["ks"].WaitContains(t, 30*time.Second, "KS completed successful registration in group NETNS with GM "+gm+".")
	}
	out, err := exec.Command(bin, "cli", "-s", filepath.Join(dir, "ks.sock"), "-c", "show crypto gdoi ks members").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.233.1.2") || !strings.Contains(string(out), "10.233.2.2") {
		t.Fatalf("members not listed: %v\n%s", err, out)
	}
	for _, w := range []string{"Group Name        : NETNS", "GM Version: " + version.Current.String()} {
		if !strings.Contains(string(out), w) {
			t.Errorf("show crypto gdoi ks members lacks %q:\n%s", w, out)
		}
	}
	gmOut, err := exec.Command(bin, "cli", "-s", filepath.Join(dir, "gm1.sock"), "-c", "show crypto gdoi gm | include Registration status").CombinedOutput()
	if err != nil || !strings.Contains(string(gmOut), "Registered") {
		t.Fatalf("gm1: %v\n%s", err, gmOut)
	}
	if !strings.Contains(logs["gm2"].String(), "%GDOI-5-GM_REGS_COMPL: Registration to KS 10.233.2.1 complete for group NETNS") {
		t.Errorf("gm2 log lacks the registration line:\n%s", logs["gm2"].String())
	}
}
