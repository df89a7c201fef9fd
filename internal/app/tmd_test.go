package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// proves: D1 (tmd runs as a daemon: ready, serves the SA API), D4 (refresh keeps the SAs and reports)
func TestRunTmd(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "run", "tmd.sock")
	n, next := notifyPipe(t)
	var stderr testnet.Buffer
	sigs := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	go func() {
		exit <- serveTmd(&Env{Stdout: &stderr, Stderr: &stderr}, []string{"-socket", socket}, sigs, n)
		n.Close()
	}()
	if e := next(); e.State != srcnotify.Ready {
		t.Fatalf("first event %+v", e)
	}
	c, err := tmd.Dial(context.Background(), socket, "isakmpd", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.InstallTEK(sadb.TEK{Group: "g", SPI: 0x1234, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	if e := next(); e.State != srcnotify.Refreshed || e.Detail != "SA database: 1 TEK, 0 KEKs" {
		t.Fatalf("refresh event %+v", e)
	}
	if got := c.TEKs(); len(got) != 1 {
		t.Fatalf("TEKs after refresh: %+v", got)
	}
	sigs <- syscall.SIGTERM
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tmd did not stop on SIGTERM")
	}
	if e := next(); e.State != srcnotify.Stopping {
		t.Fatalf("stop event %+v", e)
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left: %v", err)
	}
	for _, want := range []string{`msg="tmd started" socket=` + socket, `msg="tmd refreshed" teks=1 keks=0`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// proves: D1 (a second tmd on the same socket is refused)
func TestRunTmdAlreadyRunning(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "tmd.sock")
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tmd.NewServer(tmd.Options{Ready: func() { close(ready) }}).Serve(ctx, socket) }()
	defer func() { cancel(); <-done }()
	<-ready
	code, out := tmdFails(t, "-socket", socket)
	if code != 1 || !strings.Contains(out, "tmd is already running on "+socket) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// tmdFails runs serveTmd with args, which must end at its start, and
// returns its exit status and output. A tmd that serves instead is
// stopped after 20 s and fails the test, rather than serving until the
// test binary's timeout: TestTmdKeyLog once did so in CI, its "loose" key
// log created 0600 under a umask rundir.Listen had narrowed (it narrowed
// the process's umask while it bound, and two binds at once left it so).
func tmdFails(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out testnet.Buffer
	sigs := make(chan os.Signal, 1)
	exit := make(chan int, 1)
	go func() { exit <- serveTmd(&Env{Stdout: &out, Stderr: &out}, args, sigs, nil) }()
	select {
	case code := <-exit:
		return code, out.String()
	case <-time.After(20 * time.Second):
	}
	sigs <- syscall.SIGTERM
	late := "it did not stop on SIGTERM either"
	select {
	case code := <-exit:
		late = fmt.Sprintf("stopped by SIGTERM, exit %d", code)
	case <-time.After(10 * time.Second):
	}
	t.Fatalf("tmd %q did not end within 20 s of its start (%s):\n%s", args, late, out.String())
	return 0, ""
}

// tmd's data-plane options are checked before anything starts, and a TUN
// device that cannot be created fails tmd's start with a message naming it
// (srcmstr shows it).
// proves: D1 (issue 12: tmd -tun)
func TestTmdDataPlaneOptions(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "tmd.sock")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-local", "10.1.1.0/24"}, 2, "-local, -src and -group need -tun"},
		{[]string{"-tun", "averyveryverylongname"}, 2, "an interface name has at most 15 characters"},
		{[]string{"-tun", "gv0", "-mtu", "100"}, 2, "-mtu 100"},
		{[]string{"-tun", "gv0", "-mark", "0"}, 2, "-mark 0"},
		{[]string{"-tun", "gv0", "-local", "10.1.1.0/33"}, 2, `-local "10.1.1.0/33": not an IPv4 prefix`},
		{[]string{"-tun", "gv0", "-src", "::1"}, 2, `-src "::1": not an IPv4 address`},
		{[]string{"-tun", "bad/name"}, 1, "create TUN device bad/name"},
	} {
		code, out := tmdFails(t, append([]string{"-socket", socket}, c.args...)...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("tmd %q: exit %d, %q; want %d and %q", c.args, code, out, c.code, c.msg)
		}
	}
}
