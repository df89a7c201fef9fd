package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

const crashKS = `hostname ks
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key crash-secret address 127.0.0.0 255.0.0.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.60.0.0 0.0.255.255 10.60.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 128
crypto ipsec profile p
 set transform-set ts
 set security-association lifetime seconds 3600
crypto gdoi group CRASH
 identity number 4242
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  rekey retransmit 10 number 2
  address ipv4 127.0.3.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const crashGM = `hostname gm%d
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key crash-secret address 127.0.3.1
crypto gdoi group CRASH
 identity number 4242
 server address ipv4 127.0.3.1
crypto map M 10 gdoi
 set group CRASH
interface lo
 crypto map M
end
`

// proves: O4, T1 — a key server killed with SIGKILL in the middle of a
// unicast rekey to 100 GMs restarts from its state file, and its next
// rekey is accepted by every GM (none re-registers, none rejects it).
func TestKSKilledDuringRekey(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a daemon; skipped with -short")
	}
	dir := t.TempDir()
	bin := testnet.Binary(t)
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	os.WriteFile(filepath.Join(dir, "ks.conf"), []byte(crashKS), 0o600)
	const port = 23848
	sock := filepath.Join(dir, "ks.sock")
	startKS := func() *exec.Cmd {
		cmd := exec.Command(bin, "isakmpd", "-f", filepath.Join(dir, "ks.conf"), "-listen", "127.0.3.1",
			"-port", fmt.Sprint(port), "-socket", sock, "-state", filepath.Join(dir, "ks.db"))
		log, _ := os.Create(filepath.Join(dir, fmt.Sprintf("ks-%d.log", time.Now().UnixNano())))
		cmd.Stdout, cmd.Stderr = log, log
		testnet.StartReady(t, cmd, 20*time.Second) // its control socket answers
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	cli := func(c string) (string, error) {
		out, err := exec.Command(bin, "cli", "-s", sock, "-c", c).CombinedOutput()
		return string(out), err
	}
	ks := startKS()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gms []*daemon.Daemon
	for i := 0; i < 100; i++ {
		c, err := policy.Parse(fmt.Sprintf("gm%d.conf", i), []byte(fmt.Sprintf(crashGM, i)))
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.AddrFrom4([4]byte{127, 0, 4, byte(i + 1)})
		d, err := daemon.New(c, []netip.AddrPort{netip.AddrPortFrom(addr, port)}, port, nil)
		if err != nil {
			t.Fatal(err)
		}
		go d.Run(ctx, "")
		gms = append(gms, d)
	}
	state := func(d *daemon.Daemon) (registered bool, received, registrations, rejected int, seq uint32) {
		s, err := d.Node.State(ctx)
		if err != nil || len(s.GM) == 0 {
			return
		}
		m := s.GM[0]
		return m.State == "registered", m.Rekeys.Received, m.Registrations, m.Rekeys.Rejected + m.Rekeys.Replayed, m.Seq
	}
	waitAll := func(what string, ok func(*daemon.Daemon) bool) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			n := 0
			for _, d := range gms {
				if ok(d) {
					n++
				}
			}
			if n == len(gms) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: only %d of %d GMs", what, n, len(gms))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAll("registered", func(d *daemon.Daemon) bool { r, _, _, _, _ := state(d); return r })
	time.Sleep(1200 * time.Millisecond) // the KS saves its member list once a second

	// A rekey, and the KS dies while it is on its way.
	if out, err := cli("crypto gdoi ks rekey"); err != nil {
		t.Fatalf("rekey: %v\n%s", err, out)
	}
	ks.Process.Signal(syscall.SIGKILL)
	ks.Wait()
	got := 0
	for _, d := range gms {
		if _, rec, _, _, _ := state(d); rec > 0 {
			got++
		}
	}
	t.Logf("the first rekey reached %d of %d GMs before the kill", got, len(gms))

	startKS()
	if out, err := cli("crypto gdoi ks rekey"); err != nil {
		t.Fatalf("rekey after restart: %v\n%s", err, out)
	}
	waitAll("accepted the rekey of the restarted KS", func(d *daemon.Daemon) bool {
		_, _, _, _, seq := state(d)
		return seq >= 2
	})
	for _, d := range gms {
		_, _, regs, rejected, _ := state(d)
		if regs != 1 || rejected != 0 {
			t.Fatalf("a GM re-registered (%d) or rejected a rekey (%d)", regs, rejected)
		}
	}
	out, _ := cli("show crypto gdoi ks members | count Member ID")
	if !strings.Contains(out, "100") {
		t.Fatalf("restarted KS member count: %s", out)
	}
}
