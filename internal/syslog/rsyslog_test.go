package syslog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// rsyslogFields is the template the test's rsyslogd writes: one line per
// message it received, each field as rsyslog parsed it, split by '|'.
const rsyslogFields = `%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%syslogseverity%|%syslogfacility%|%msg%\n`

// rsyslog is an rsyslogd of the test's own, in the foreground, listening
// on loopback UDP and TCP ports and on a unix socket in a directory of the
// test's own, writing what it parsed to out.
type rsyslog struct {
	udp, tcp string // 127.0.0.1:PORT
	sock     string // the imuxsock socket (what /dev/log is to a host)
	out      string
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	testnet.RequireTools(t, "rsyslogd")
	dir := t.TempDir()
	r := &rsyslog{sock: filepath.Join(dir, "log"), out: filepath.Join(dir, "out")}
	up, tp := freePort(t, "udp"), freePort(t, "tcp")
	r.udp, r.tcp = fmt.Sprintf("127.0.0.1:%d", up), fmt.Sprintf("127.0.0.1:%d", tp)
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
template(name="fields" type="string" string="%s")
input(type="imudp" address="127.0.0.1" port="%d")
input(type="imtcp" address="127.0.0.1" port="%d")
input(type="imuxsock" socket=%q useSysTimeStamp="off" ignoreTimestamp="off")
*.* action(type="omfile" file=%q template="fields")
`, dir, rsyslogFields, up, tp, r.sock, r.out)
	cf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", cf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", stderr.String())
		}
	})
	return r
}

// ours waits until rsyslogd has written n lines other than probes, and
// returns them.
func (r *rsyslog) ours(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(r.out)
		var ls []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.Contains(l, "|probe|") {
				ls = append(ls, l)
			}
		}
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd wrote %d of our lines, want %d:\n%s", len(ls), n, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial connects to a destination of r once rsyslogd listens there.
func dial(t *testing.T, dest string) *Destination {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := Dial(dest)
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proves: O3 (issue 14 item 1: a real rsyslog, Debian's rsyslogd, parses
// our messages field by field — RFC 5424 over UDP and TCP with the
// configured hostname, microsecond timestamp, app, pid, mnemonic as MSGID,
// severity, local7; RFC 3164 on the local socket as imuxsock expects it;
// GM_RECV_DELETE's text on one line)
func TestRsyslogParsesFields(t *testing.T) {
	r := startRsyslog(t)
	at := time.Date(2026, 12, 6, 5, 4, 3, 123456789, time.UTC)
	text := "%GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group G.\nTEKs lifetime are reduced"
	send := func(dest string, o Options) {
		t.Helper()
		var d *Destination
		if strings.HasPrefix(dest, "udp://") {
			// UDP: rsyslogd may not listen yet; resend a probe until
			// it has written it (then the next line is ours).
			d = dial(t, dest)
			probe := NewHandler(d, Options{App: "probe", Hostname: "probe"})
			for i := 0; ; i++ {
				slog.New(probe).Info("probe")
				if b, _ := os.ReadFile(r.out); strings.Contains(string(b), "|probe|") || i > 100 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		} else {
			d = dial(t, dest)
		}
		defer d.Close()
		o.Format = d.Format()
		rec := slog.NewRecord(at, slog.LevelWarn, text, 0)
		rec.AddAttrs(slog.String("mnemonic", "GM_RECV_DELETE"))
		if err := NewHandler(d, o).Handle(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	send("udp://"+r.udp, Options{App: "isakmpd", Hostname: "gm1", PID: 4242})
	r.ours(t, 1)
	send("tcp://"+r.tcp, Options{App: "isakmpd", Hostname: "gm2", PID: 4243})
	r.ours(t, 2)
	send("unix://"+r.sock, Options{App: "isakmpd", Hostname: "gm3", PID: 4244})
	ours := r.ours(t, 3)
	msg := "%GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group G. TEKs lifetime are reduced"
	local := at.Local()
	want := []string{
		"2026-12-06T05:04:03.123456Z|gm1|isakmpd|4242|GM_RECV_DELETE|4|23|" + msg,
		"2026-12-06T05:04:03.123456Z|gm2|isakmpd|4243|GM_RECV_DELETE|4|23|" + msg,
		// RFC 3164: no year, no fraction, local time; the host is the
		// receiving daemon's own (syslog(3) sends none).
		local.Format("2006-01-02T15:04:05") + "|*|isakmpd|4244|-|4|23|" + msg,
	}
	if len(ours) != len(want) {
		t.Fatalf("rsyslogd wrote:\n%s", strings.Join(ours, "\n"))
	}
	for i, w := range want {
		got := ours[i]
		wf, gf := strings.SplitN(w, "|", 8), strings.SplitN(got, "|", 8)
		if len(gf) != 8 {
			t.Fatalf("line %d: %q", i, got)
		}
		gf[7] = strings.TrimPrefix(gf[7], " ") // RFC 3164: the space after "TAG:"
		for j := range wf {
			switch {
			case j == 0 && i == 2:
				if !strings.HasPrefix(gf[0], wf[0]) {
					t.Errorf("line %d timestamp %q, want %s", i, gf[0], wf[0])
				}
			case wf[j] == "*":
			case gf[j] != wf[j]:
				t.Errorf("line %d field %d: %q, want %q\n(line %q)", i, j, gf[j], wf[j], got)
			}
		}
	}
}
