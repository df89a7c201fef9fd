package daemon_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/version"
)

// proves: P1 (reload), D4 (logging reopened; issue 11 item 6) — SIGHUP rereads the configuration file and reopens the -syslog file after rotation: a policy
// change is logged as POLICY_CHANGE and listed as pending, with no rekey
// sent; an invalid file is refused with file:line and reason, and the
// running configuration stays.
func TestReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := testnet.Binary(t)
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	conf := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(conf, []byte(crashKS), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ks.sock")
	var log testnet.Buffer
	syslogFile := filepath.Join(dir, "ks.syslog")
	cmd := exec.Command(bin, "isakmpd", "-f", conf, "-listen", "127.0.3.1", "-port", "24848", "-socket", sock,
		"-state", filepath.Join(dir, "ks.db"), "-syslog", "file://"+syslogFile)
	cmd.Stdout, cmd.Stderr = &log, &log
	// What srcmstr would read: the daemon's events (srcnotify).
	events, notifyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{notifyW}
	cmd.Env = append(os.Environ(), srcnotify.EnvFD+"=3")
	var notified testnet.Buffer
	go io.Copy(&notified, events)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	notifyW.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); events.Close() })
	cli := func(c string) string {
		out, _ := exec.Command(bin, "cli", "-s", sock, "-c", c).CombinedOutput()
		return string(out)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never happened; daemon log:\n%s", what, log.String())
			}
		}
	}
	waitFor("the control socket answering", func() bool { return strings.Contains(cli("show version"), version.Current.String()) })
	hangup := func() {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// Log rotation: the file is moved away; SIGHUP reopens the path (D4).
	if err := os.Rename(syslogFile, syslogFile+".1"); err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(crashKS, "esp-gcm 128", "esp-gcm 256", 1)
	if err := os.WriteFile(conf, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	waitFor("POLICY_CHANGE", func() bool {
		return strings.Contains(log.String(), "%GDOI-5-POLICY_CHANGE: GDOI group CRASH policy has changed. Use 'crypto gdoi ks rekey' to send a rekey")
	})
	if out := cli("show crypto gdoi ks policy"); !strings.Contains(out, "esp-gcm 256") || !strings.Contains(out, "Pending policy changes") {
		t.Fatalf("show crypto gdoi ks policy after the reload:\n%s", out)
	}
	if strings.Contains(log.String(), "KS_SEND_UNICAST_REKEY") {
		t.Fatal("the reload sent a rekey")
	}
	waitFor("syslog in the reopened file", func() bool {
		b, _ := os.ReadFile(syslogFile)
		return strings.Contains(string(b), "POLICY_CHANGE - %GDOI-5-POLICY_CHANGE: GDOI group CRASH")
	})
	if b, _ := os.ReadFile(syslogFile + ".1"); !strings.Contains(string(b), "isakmpd started") || strings.Contains(string(b), "POLICY_CHANGE") {
		t.Fatalf("the rotated syslog file:\n%s", b)
	}
	// issue 14 item 1: RFC 5424 with the configured hostname ("ks", not
	// the OS's) and 6 fractional digits, one line per message.
	b, _ := os.ReadFile(syslogFile)
	re := regexp.MustCompile(`(?m)^<189>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ks isakmpd \d+ POLICY_CHANGE - %GDOI-5-POLICY_CHANGE: GDOI group CRASH policy has changed\.`)
	if !re.Match(b) {
		t.Fatalf("the syslog file (RFC 5424, HOSTNAME ks):\n%s", b)
	}

	bad := strings.Replace(changed, "identity number 4242", "identity number forty-two", 1)
	if err := os.WriteFile(conf, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	line := 1 + strings.Count(bad[:strings.Index(bad, "identity number forty-two")], "\n")
	waitFor("the refusal", func() bool {
		l := log.String()
		return strings.Contains(l, "configuration reload refused; the running configuration stays") && strings.Contains(l, fmt.Sprintf("ks.conf:%d", line))
	})
	if out := cli("show running-config | include esp-gcm|identity"); !strings.Contains(out, "esp-gcm 256") || !strings.Contains(out, "identity number 4242") {
		t.Fatalf("the running configuration changed after a refused reload:\n%s", out)
	}

	// Issue 11 item 6: a file cut before crypto gdoi group parses, but the
	// running KS cannot drop the group it serves: refused, with the reason.
	cut := changed[:strings.Index(changed, "crypto gdoi group")]
	if err := os.WriteFile(conf, []byte(cut), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	waitFor("the refusal of the truncated file", func() bool {
		return strings.Contains(log.String(), "crypto gdoi group CRASH: key-server group (server local) would be removed")
	})
	// srcmstr is told refresh-failed, with the reason; never "refreshed".
	waitFor("refresh-failed with the reason", func() bool {
		return strings.Contains(notified.String(), `"state":"refresh-failed"`) &&
			strings.Contains(notified.String(), "crypto gdoi group CRASH: key-server group (server local) would be removed")
	})
	if n := strings.Count(notified.String(), `"state":"refreshed"`); n != 1 { // the first, valid reload only
		t.Fatalf("srcmstr was told refreshed %d times:\n%s", n, notified.String())
	}
	if out := cli("show running-config | include crypto gdoi group"); !strings.Contains(out, "crypto gdoi group CRASH") {
		t.Fatalf("show running-config lost the group after a refused reload:\n%s", out)
	}
	if out := cli("show crypto gdoi ks policy"); !strings.Contains(out, "For group CRASH") {
		t.Fatalf("show crypto gdoi ks policy after a refused reload:\n%s", out)
	}
}
