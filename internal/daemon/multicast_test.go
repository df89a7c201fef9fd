package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

const mcastKS = `hostname ks
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key mc-secret address 10.234.0.0 255.255.255.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.70.0.0 0.0.255.255 10.70.0.0 0.0.255.255
ip access-list extended rekey-group
 permit udp host 10.234.0.1 eq 848 host 239.192.7.7 eq 848
crypto ipsec transform-set ts esp-gcm 128
crypto ipsec profile p
 set transform-set ts
 set security-association lifetime seconds 120
crypto gdoi group MC
 identity number 700
 server local
  rekey authentication mypubkey ec REKEY
  rekey address ipv4 rekey-group
  rekey retransmit 10 number 2
  address ipv4 10.234.0.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const mcastGM = `hostname %s
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key mc-secret address 10.234.0.1
crypto gdoi group MC
 identity number 700
 server address ipv4 10.234.0.1
crypto map M 10 gdoi
 set group MC
interface eth0
 crypto map M
end
`

// proves: T1 — multicast rekeys: the KS sends each rekey to the group of
// `rekey address ipv4` (TTL 1) and retransmits it; three GMs in their own
// namespaces on one bridge join the group; with nftables dropping 20% of
// their UDP 848 datagrams at random, every GM keeps a valid TEK throughout
// and ends with the latest rekey or a fresh registration.
func TestMulticastRekeysWithLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about two minutes; skipped with -short")
	}
	testnet.RequireNetns(t)
	testnet.RequireNft(t)
	dir := t.TempDir()
	bin := testnet.Binary(t)
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	os.WriteFile(filepath.Join(dir, "ks.conf"), []byte(mcastKS), 0o600)
	br := testnet.Bridge(t, "gvmc")
	names := []string{"ks", "gm1", "gm2", "gm3"}
	nss := map[string]*testnet.Netns{}
	for i, name := range names {
		nss[name] = testnet.NewNetns(t, "gvmc-"+name)
		host := 1
		if i > 0 {
			host = 10 + i
			os.WriteFile(filepath.Join(dir, name+".conf"), []byte(fmt.Sprintf(mcastGM, name)), 0o600)
		}
		testnet.AttachToBridge(t, br, nss[name], netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 234, 0, byte(host)}), 24))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nss[name].Name, bin, "isakmpd", "-f", filepath.Join(dir, name+".conf"),
			"-socket", filepath.Join(dir, name+".sock"), "-state", filepath.Join(dir, name+".db"))
		log, _ := os.Create(filepath.Join(dir, name+".log"))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cancel()
			cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				t.Logf("%s log:\n%s", name, b)
			}
		})
	}
	// cli runs a show command; a CLI that could not get an answer (the
	// daemon's control socket busy on a loaded machine) is asked again
	// for up to 15 s, so that a field missing from the output means the
	// daemon said so, not that the CLI timed out.
	cli := func(name, c string) string {
		var out []byte
		var err error
		for end := time.Now().Add(15 * time.Second); ; {
			out, err = exec.Command(bin, "cli", "-s", filepath.Join(dir, name+".sock"), "-c", c).CombinedOutput()
			if err == nil || time.Now().After(end) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		return string(out)
	}
	field := func(text, label string) int {
		m := regexp.MustCompile(regexp.QuoteMeta(label) + `\s*:\s*(\d+)`).FindStringSubmatch(text)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, gm := range names[1:] {
		for !strings.Contains(cli(gm, "show crypto gdoi gm"), "Registration status   : Registered") {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not register", gm)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, gm := range names[1:] {
		if text := cli(gm, "show crypto gdoi gm"); !strings.Contains(text, "Rekey Transport Type     : Multicast (group 239.192.7.7)") {
			t.Errorf("%s does not show multicast rekeys:\n%s", gm, text)
		}
		testnet.DropRandom(t, nss[gm], 20, "udp", 848)
	}
	// The TEKs live 120 s: the KS rekeys about every 30 s on its own.
	end := time.Now().Add(100 * time.Second)
	for time.Now().Before(end) {
		for _, gm := range names[1:] {
			if n := field(cli(gm, "show crypto gdoi gm"), "Active TEK Number"); n < 1 {
				t.Fatalf("%s holds no valid TEK", gm)
			}
		}
		time.Sleep(2 * time.Second)
	}
	ksText := cli("ks", "show crypto gdoi")
	rekeys := field(cli("ks", "show crypto gdoi ks members"), "Number of rekeys sent for group MC")
	if rekeys < 2 {
		t.Fatalf("the KS sent %d rekeys in 100 s:\n%s", rekeys, ksText)
	}
	// Every GM must end with the KS's last rekey (a retransmission got
	// through) or have re-registered. A rekey sent just before now may
	// still be in its retransmissions (every 10 s), and a GM that lost all
	// of them re-registers before its TEK expires: wait for one or the
	// other, the GMs holding a valid TEK all along.
	settle := time.Now().Add(90 * time.Second)
	for {
		ksSeq := field(cli("ks", "show crypto gdoi"), "Rekey Sequence Number")
		var behind []string
		for _, gm := range names[1:] {
			text := cli(gm, "show crypto gdoi gm")
			if field(text, "Active TEK Number") < 1 {
				t.Fatalf("%s holds no valid TEK", gm)
			}
			if seq, regs := field(text, "Last rekey seq num"), field(text, "Succeeded registration"); seq != ksSeq && regs < 2 {
				behind = append(behind, fmt.Sprintf("%s: last rekey %d of %d and no re-registration:\n%s", gm, seq, ksSeq, text))
			}
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("%s", strings.Join(behind, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
	dropped, seen := 0, 0
	for _, gm := range names[1:] {
		if field(cli(gm, "show crypto gdoi gm"), "Rekeys received") < 1 {
			t.Errorf("%s received no multicast rekey", gm)
		}
		dropped += testnet.DropCounts(t, nss[gm], "udp", 848)
		seen += testnet.DropSeen(t, nss[gm], "udp", 848)
	}
	// The loss is applied when the rekeys crossed the random-drop rules;
	// how many chance dropped varies: about 27 datagrams (3 rekeys, each
	// sent 3 times, to 3 GMs) all pass with probability 0.8^27, 0.2%, which
	// one CI run met. Only many datagrams with no drop at all mean the
	// rules do not drop.
	if seen == 0 {
		t.Fatal("no rekey datagram reached the nftables loss rules: the loss was not applied")
	}
	if dropped == 0 && seen >= 60 {
		t.Fatalf("nftables dropped none of %d datagrams at 20%%", seen)
	}
	t.Logf("%d rekeys sent; %d of %d datagrams dropped by nftables", rekeys, dropped, seen)
}
