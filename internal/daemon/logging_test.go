package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/syslog"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

func udpSink(t *testing.T) (net.PacketConn, int) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc, pc.LocalAddr().(*net.UDPAddr).Port
}

func recvLine(pc net.PacketConn, wait time.Duration) (string, error) {
	buf := make([]byte, 4096)
	pc.SetReadDeadline(time.Now().Add(wait))
	n, _, err := pc.ReadFrom(buf)
	return string(buf[:n]), err
}

// proves: O3 (issue 14 item 1: logging host and logging buffered in the
// configuration reach the daemon's log: RFC 5424 to the host with the
// configured hostname, one line; a commit moves the host and changes the
// facility live; show
// logging prints the buffered messages)
func TestLoggingHostAndBuffered(t *testing.T) {
	a, pa := udpSink(t)
	b, pb := udpSink(t)
	dir, err := os.MkdirTemp("", "logging") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	src := strings.Replace(seedKS, "hostname Device\n", fmt.Sprintf("hostname ks1\nlogging buffered 8192\nlogging trap notifications\nlogging host 127.0.0.1 transport udp port %d\n", pa), 1)
	if err := os.WriteFile(file, []byte(src), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sinks := syslog.NewSinks(syslog.Options{App: "isakmpd", PID: 77})
	logger := slog.New(sinks)
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	d.OnHostname(sinks.SetHostname)
	if err := d.SetLogSinks(sinks); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ks.sock")
	ctx := context.Background()
	client := serve(t, d, sock)

	logger.Info("below the trap level") // informational: not for the hosts
	syslog.Log(logger, syslog.Notice, "TEST_ONE", "first\nmessage")
	re := regexp.MustCompile(`^<189>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ks1 isakmpd 77 TEST_ONE - %GDOI-5-TEST_ONE: first message\n$`)
	for {
		line, err := recvLine(a, 5*time.Second)
		if err != nil {
			t.Fatalf("logging host: nothing received: %v", err)
		}
		if strings.Contains(line, "below the trap level") {
			t.Fatalf("logging trap notifications: an informational message was sent: %q", line)
		}
		if strings.Contains(line, "TEST_ONE") {
			if !re.MatchString(line) {
				t.Fatalf("logging host received %q", line)
			}
			break
		}
	}

	// A commit moves the host and the hostname; the old host hears no more.
	next, err := policy.Parse(file, []byte(strings.Replace(strings.Replace(src, fmt.Sprintf("port %d", pa), fmt.Sprintf("port %d", pb), 1), "hostname ks1", "hostname ks2\nlogging facility local5", 1)))
	if err != nil {
		t.Fatal(err)
	}
	next.Dir = cfg.Dir
	if err := d.SetConfig(next); err != nil {
		t.Fatal(err)
	}
	syslog.Log(logger, syslog.Warning, "TEST_TWO", "second")
	for {
		line, err := recvLine(b, 5*time.Second)
		if err != nil {
			t.Fatalf("new logging host: nothing received: %v", err)
		}
		if strings.Contains(line, "TEST_TWO") {
			if !strings.Contains(line, "<172>1 ") || !strings.Contains(line, " ks2 isakmpd 77 TEST_TWO - ") {
				t.Fatalf("new logging host received %q", line)
			}
			break
		}
	}
	for {
		line, err := recvLine(a, 300*time.Millisecond)
		if err != nil {
			break
		}
		if strings.Contains(line, "TEST_TWO") {
			t.Fatalf("the removed logging host still receives: %q", line)
		}
	}

	resp, err := client.Run(ctx, "show logging")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Buffer logging:  level debugging", fmt.Sprintf("Logging to 127.0.0.1:%d (rfc5424)", pb),
		"Log Buffer (8192 bytes):", "Trap logging:  level notifications, facility local5", "below the trap level\n", ": %GDOI-5-TEST_ONE: first message\n", ": %GDOI-4-TEST_TWO: second\n"} {
		if !strings.Contains(resp.Text, want) {
			t.Errorf("show logging lacks %q:\n%s", want, resp.Text)
		}
	}
}
