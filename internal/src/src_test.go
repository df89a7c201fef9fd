package src

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/rundir"
	"github.com/groupvpn/groupvpn/internal/srcnotify"
)

// TestMain turns the test binary into a fake daemon when FAKE_DAEMON=1:
// `src.test fake NAME [-conf FILE] [-delay D] [-fail]`. It appends NAME to
// RUNDIR/order when it is ready, reports ready (after -delay) with an
// address and its mode and arguments as Detail, answers SIGHUP with
// refreshed, or refresh-failed when FILE contains "broken", and exits on
// SIGTERM. -fail writes two lines to stderr and exits 3 before ready.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_DAEMON") == "1" {
		os.Exit(fakeDaemon(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeDaemon(args []string) int {
	if len(args) < 2 || args[0] != "fake" {
		fmt.Fprintln(os.Stderr, "fake daemon: bad arguments", args)
		return 2
	}
	name := args[1]
	var conf string
	var delay time.Duration
	fail := false
	for i := 2; i < len(args); i++ {
		switch args[i] {
		case "-conf":
			i++
			conf = args[i]
		case "-delay":
			i++
			delay, _ = time.ParseDuration(args[i])
		case "-fail":
			fail = true
		}
	}
	n := srcnotify.FromEnv()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM)
	fmt.Println(name, "starting, mode", srcnotify.Mode())
	if fail {
		fmt.Fprintln(os.Stderr, name+": cannot read configuration")
		fmt.Fprintln(os.Stderr, name+": giving up")
		return 3
	}
	time.Sleep(delay)
	// Recorded when ready: tmd is slowest to get ready, so the order shows
	// that each member was started only after the previous was ready.
	f, err := os.OpenFile(filepath.Join(rundir.Dir(), "order"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintln(f, name)
		f.Close()
	}
	detail := fmt.Sprintf("mode=%s args=%s", srcnotify.Mode(), strings.Join(args[2:], " "))
	n.Send(srcnotify.Event{State: srcnotify.Ready, Addrs: []string{"127.0.0.1:848", "[::1]:848"}, Detail: detail})
	for s := range sig {
		if s == syscall.SIGTERM {
			n.Send(srcnotify.Event{State: srcnotify.Stopping})
			fmt.Println(name, "stopping")
			return 0
		}
		b, _ := os.ReadFile(conf)
		if strings.Contains(string(b), "broken") {
			n.Send(srcnotify.Event{State: srcnotify.RefreshFailed, Detail: conf + ":1: broken line; kept the running configuration"})
			continue
		}
		n.Send(srcnotify.Event{State: srcnotify.Refreshed, Addrs: []string{"127.0.0.1:848", "127.0.0.2:848"}, Detail: name + " listening on 2 addresses"})
	}
	return 0
}

// fixture is a srcmstr serving in-process, its subsystems being the test
// binary as fake daemons.
type fixture struct {
	t    *testing.T
	dir  string
	conf string // the file isakmpd's fake reads on refresh
	s    *Server
}

func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "srcmstr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, conf: filepath.Join(dir, "isakmpd.conf")}
	if err := os.WriteFile(f.conf, []byte("crypto gdoi group g1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`# test table
subsystem tmd     group ike order 1 command groupvpn fake tmd -delay 300ms
subsystem iked    group ike order 2 group-only command groupvpn fake iked -delay 100ms
subsystem isakmpd group ike order 3 requires tmd group-args "-iked %s/iked.sock" command groupvpn fake isakmpd -conf %s
subsystem ikev2d  group ike order 3 requires tmd not-installed
%s`, dir, f.conf, extra)
	cfg, err := Parse("test.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	f.s, err = NewServer(Options{Rundir: dir, Config: cfg, Self: self, Env: []string{"FAKE_DAEMON=1", "GORACE=atexit_sleep_ms=0"},
		ReadyTimeout: 10 * time.Second, RefreshTimeout: 10 * time.Second, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go f.s.Serve()
	t.Cleanup(func() { f.s.Close(true) })
	return f
}

// call runs a verb over the socket, as the command line does.
func (f *fixture) call(verb string, flags ...string) Response {
	f.t.Helper()
	req := Request{Verb: verb}
	for i := 0; i < len(flags); i++ {
		switch flags[i] {
		case "-s":
			i++
			req.Subsystem = flags[i]
		case "-g":
			i++
			req.Group = flags[i]
		case "-a":
			req.All = true
		case "-l":
			req.Long = true
		}
	}
	resp, err := Call(f.dir, req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

func (f *fixture) must(verb string, flags ...string) string {
	f.t.Helper()
	r := f.call(verb, flags...)
	if r.Exit != 0 {
		f.t.Fatalf("%s %v: exit %d\nstdout: %s\nstderr: %s", verb, flags, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func (f *fixture) refused(want string, verb string, flags ...string) {
	f.t.Helper()
	r := f.call(verb, flags...)
	if r.Exit != 1 || strings.TrimSpace(r.Stderr) != want {
		f.t.Fatalf("%s %v: exit %d\nstderr: %q\nwant:   %q\nstdout: %s", verb, flags, r.Exit, r.Stderr, want, r.Stdout)
	}
}

// row returns the lssrc fields of one subsystem: pid, status, started.
func (f *fixture) row(name string) (pid int, status, started string) {
	f.t.Helper()
	out := f.must(VerbLssrc, "-s", name)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		f.t.Fatalf("lssrc -s %s: %q", name, out)
	}
	l := lines[1]
	pad := func(s string, n int) string {
		if len(s) < n {
			return ""
		}
		return s[n:]
	}
	field := func(from, to int) string {
		s := pad(l, from)
		if len(s) > to-from {
			s = s[:to-from]
		}
		return strings.TrimSpace(s)
	}
	pid, _ = strconv.Atoi(field(35, 48))
	return pid, field(48, 64), field(64, 80)
}

func (f *fixture) order() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "order"))
	return strings.Join(strings.Fields(string(b)), " ")
}

// proves: D1 D2 (group start order tmd, iked, isakmpd, each after the
// previous is ready; not-installed members skipped; lssrc columns)
func TestGroupStartOrder(t *testing.T) {
	f := newFixture(t, "")
	out := f.must(VerbStart, "-g", "ike")
	if got := f.order(); got != "tmd iked isakmpd" {
		t.Fatalf("start order %q, want tmd iked isakmpd", got)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "0513-059 The tmd Subsystem has been started. Subsystem PID is ") ||
		!strings.HasPrefix(lines[1], "0513-059 The iked Subsystem") || !strings.HasPrefix(lines[2], "0513-059 The isakmpd Subsystem") ||
		lines[3] != "ikev2d: not installed; the group starts without it." {
		t.Fatalf("startsrc -g ike output:\n%s", out)
	}
	ls := f.must(VerbLssrc, "-g", "ike")
	want := []string{
		"Subsystem         Group            PID          Status          Started",
		" tmd              ike              %d         active          -g",
	}
	got := strings.Split(ls, "\n")
	if got[0] != want[0] {
		t.Fatalf("header %q", got[0])
	}
	pid, status, started := f.row("tmd")
	if got[1] != fmt.Sprintf(" %-17s%-17s%-13d%-16s%s", "tmd", "ike", pid, "active", "-g") || status != Active || started != "-g" {
		t.Fatalf("lssrc:\n%s", ls)
	}
	if !strings.Contains(ls, " ikev2d           ike                           not installed\n") {
		t.Fatalf("not installed not shown:\n%s", ls)
	}
	long := f.must(VerbLssrc, "-l", "-s", "isakmpd")
	for _, w := range []string{"Listening on:   127.0.0.1:848", "Listening on:   [::1]:848", "-iked " + f.dir + "/iked.sock",
		"mode=g", "by startsrc -g ike", "Log:            " + f.dir + "/isakmpd.log"} {
		if !strings.Contains(long, w) {
			t.Fatalf("lssrc -l lacks %q:\n%s", w, long)
		}
	}
	// Stop in reverse order.
	out = f.must(VerbStop, "-g", "ike")
	if out != "0513-044 The isakmpd Subsystem was requested to stop.\n0513-044 The iked Subsystem was requested to stop.\n0513-044 The tmd Subsystem was requested to stop.\n" {
		t.Fatalf("stopsrc -g ike:\n%s", out)
	}
	if _, st, _ := f.row("tmd"); st != Stopped {
		t.Fatalf("tmd %s after stopsrc -g", st)
	}
}

// proves: D2 (isakmpd alone needs tmd; group-only iked; already active;
// stopping a required subsystem refused; -s start joining a -g group)
func TestStartRefusals(t *testing.T) {
	f := newFixture(t, "")
	f.refused("startsrc: isakmpd needs tmd, which is not active: start tmd first (startsrc -s tmd)", VerbStart, "-s", "isakmpd")
	if f.order() != "" {
		t.Fatalf("something was started: %q", f.order())
	}
	f.refused("startsrc: iked runs only with its group: startsrc -g ike", VerbStart, "-s", "iked")
	out := f.must(VerbStart, "-s", "tmd")
	pid, _, started := f.row("tmd")
	if started != "-s" || !strings.Contains(out, fmt.Sprintf("Subsystem PID is %d.", pid)) {
		t.Fatalf("startsrc -s tmd: %s (lssrc pid %d %s)", out, pid, started)
	}
	f.refused(fmt.Sprintf("startsrc: tmd is already active (pid %d)", pid), VerbStart, "-s", "tmd")
	f.refused("startsrc: tmd is active, started with startsrc -s tmd; stop it first (stopsrc -s tmd) or keep starting subsystems one by one with startsrc -s", VerbStart, "-g", "ike")
	f.must(VerbStart, "-s", "isakmpd")
	f.refused("stopsrc: tmd is needed by isakmpd (active): stop isakmpd first (stopsrc -s isakmpd) or the whole group (stopsrc -g ike)", VerbStop, "-s", "tmd")
	f.must(VerbStop, "-s", "isakmpd")
	f.must(VerbStop, "-s", "tmd")

	// A group run: isakmpd stopped then started with -s joins it.
	f.must(VerbStart, "-g", "ike")
	f.must(VerbStop, "-s", "isakmpd")
	out = f.must(VerbStart, "-s", "isakmpd")
	if !strings.Contains(out, "isakmpd joins the running group ike") {
		t.Fatalf("no join note: %s", out)
	}
	if _, _, started := f.row("isakmpd"); started != "-g" {
		t.Fatalf("isakmpd started %s, want -g", started)
	}
	if long := f.must(VerbLssrc, "-l", "-s", "isakmpd"); !strings.Contains(long, "-iked ") {
		t.Fatalf("group-args not applied on joining:\n%s", long)
	}
}

// proves: D5 (refresh of what is not active refuses and starts nothing)
func TestRefreshNotActive(t *testing.T) {
	f := newFixture(t, "")
	f.refused("refresh: isakmpd is not active (stopped); refresh does not start it: startsrc -s isakmpd", VerbRefresh, "-s", "isakmpd")
	f.refused("refresh: group ike is not active; refresh does not start it: startsrc -g ike", VerbRefresh, "-g", "ike")
	time.Sleep(200 * time.Millisecond)
	if f.order() != "" {
		t.Fatalf("refresh started %q", f.order())
	}
	for _, n := range []string{"tmd", "iked", "isakmpd"} {
		if _, st, _ := f.row(n); st != Stopped {
			t.Fatalf("%s is %s after refresh", n, st)
		}
	}
	// Inoperative (D6) is not active either: covered by TestInoperativeRecovery.
}

// proves: D6 (wrong refresh mechanism refused with the right command);
// D4 (refresh reaches the daemon and its outcome the caller)
func TestRefreshMechanism(t *testing.T) {
	f := newFixture(t, "")
	f.must(VerbStart, "-g", "ike")
	f.refused("refresh: isakmpd was started with its group (startsrc -g ike): refresh it with refresh -g ike", VerbRefresh, "-s", "isakmpd")
	out := f.must(VerbRefresh, "-g", "ike")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "tmd: tmd listening") || !strings.Contains(lines[1], "iked: iked listening") ||
		!strings.Contains(lines[2], "isakmpd: isakmpd listening on 2 addresses") {
		t.Fatalf("refresh -g ike (order tmd, iked, isakmpd):\n%s", out)
	}
	if long := f.must(VerbLssrc, "-l", "-s", "tmd"); !strings.Contains(long, "Listening on:   127.0.0.2:848") {
		t.Fatalf("refreshed addresses not shown:\n%s", long)
	}
	f.must(VerbStop, "-g", "ike")

	f.must(VerbStart, "-s", "tmd")
	f.must(VerbStart, "-s", "isakmpd")
	f.refused("refresh: the subsystems of group ike were started one by one (startsrc -s): refresh each with refresh -s tmd, refresh -s isakmpd", VerbRefresh, "-g", "ike")
	// The seed allows isakmpd before tmd.
	f.must(VerbRefresh, "-s", "isakmpd")
	f.must(VerbRefresh, "-s", "tmd")
	for _, n := range []string{"tmd", "isakmpd"} {
		if _, st, _ := f.row(n); st != Active {
			t.Fatalf("%s %s after refreshes", n, st)
		}
	}
}

// proves: D4 (a refused configuration reaches the caller: exit 1 with the
// daemon's detail, the daemon stays active)
func TestRefreshFailedDetail(t *testing.T) {
	f := newFixture(t, "")
	f.must(VerbStart, "-s", "tmd")
	f.must(VerbStart, "-s", "isakmpd")
	if err := os.WriteFile(f.conf, []byte("broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.refused("refresh: isakmpd: refresh failed: "+f.conf+":1: broken line; kept the running configuration", VerbRefresh, "-s", "isakmpd")
	if _, st, _ := f.row("isakmpd"); st != Active {
		t.Fatalf("isakmpd %s after a failed refresh", st)
	}
	if long := f.must(VerbLssrc, "-l", "-s", "isakmpd"); !strings.Contains(long, "refresh-failed: "+f.conf+":1: broken line") {
		t.Fatalf("lssrc -l lacks the failed refresh:\n%s", long)
	}
}

// proves: D6 (a daemon that dies is shown inoperative; stopsrc + startsrc
// recover it while tmd keeps running with the same pid and its SAs)
func TestInoperativeRecovery(t *testing.T) {
	f := newFixture(t, "")
	f.must(VerbStart, "-g", "ike")
	tmdPid, _, _ := f.row("tmd")
	pid, _, _ := f.row("isakmpd")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, st, started := f.row("isakmpd")
		if st == Inoperative {
			if started != "-g" {
				t.Fatalf("inoperative isakmpd shows started %q", started)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("isakmpd %s after kill -9", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	long := f.must(VerbLssrc, "-l", "-s", "isakmpd")
	if !strings.Contains(long, "Exit:           signal: killed") || !strings.Contains(long, "isakmpd starting, mode g") {
		t.Fatalf("lssrc -l of the inoperative isakmpd:\n%s", long)
	}
	f.refused("refresh: isakmpd is not active (inoperative); refresh does not start it: startsrc -s isakmpd", VerbRefresh, "-s", "isakmpd")
	// A group refresh refreshes the active members and reports the
	// inoperative one (exit 1) instead of restarting it.
	r := f.call(VerbRefresh, "-g", "ike")
	if r.Exit != 1 || !strings.Contains(r.Stdout, "tmd: tmd listening") || !strings.Contains(r.Stdout, "iked: iked listening") ||
		!strings.Contains(r.Stderr, "refresh: isakmpd is inoperative (signal: killed at ") ||
		!strings.Contains(r.Stderr, "recover it with stopsrc -s isakmpd, then startsrc -g ike") {
		t.Fatalf("refresh -g ike with isakmpd inoperative: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	out := f.must(VerbStop, "-s", "isakmpd")
	if !strings.Contains(out, "0513-044 The isakmpd Subsystem was requested to stop.") || !strings.Contains(out, "marked stopped") {
		t.Fatalf("stopsrc of inoperative: %s", out)
	}
	out = f.must(VerbStart, "-g", "ike")
	if !strings.Contains(out, fmt.Sprintf("0513-029 The tmd Subsystem is already active. Subsystem PID is %d; kept.", tmdPid)) ||
		!strings.Contains(out, "0513-059 The isakmpd Subsystem has been started.") {
		t.Fatalf("startsrc -g ike recovery:\n%s", out)
	}
	// Again, recovering with startsrc -s directly from inoperative.
	pid, _, _ = f.row("isakmpd")
	syscall.Kill(pid, syscall.SIGKILL)
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		if _, st, _ := f.row("isakmpd"); st == Inoperative {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	out = f.must(VerbStart, "-s", "isakmpd")
	if !strings.Contains(out, "isakmpd was inoperative: signal: killed") || !strings.Contains(out, "joins the running group ike") {
		t.Fatalf("startsrc -s of inoperative:\n%s", out)
	}
	if p, st, _ := f.row("tmd"); p != tmdPid || st != Active {
		t.Fatalf("tmd pid %d %s, want %d active throughout", p, st, tmdPid)
	}
	f.must(VerbRefresh, "-g", "ike")
}

// proves: D2 (a daemon failing at start: exit status and its last log
// lines reach the caller, the subsystem is stopped again)
func TestStartFailure(t *testing.T) {
	f := newFixture(t, "subsystem bad group other order 1 command groupvpn fake bad -fail\n")
	r := f.call(VerbStart, "-g", "other")
	if r.Exit != 1 || !strings.Contains(r.Stderr, "startsrc: bad exited before it was ready (exit status 3)") ||
		!strings.Contains(r.Stderr, "  bad: cannot read configuration\n  bad: giving up") ||
		!strings.Contains(r.Stderr, "group other stopped at bad") {
		t.Fatalf("exit %d\n%s", r.Exit, r.Stderr)
	}
	if _, st, _ := f.row("bad"); st != Stopped {
		t.Fatalf("bad is %s", st)
	}
}

// proves: D1 (srcmstr restarting adopts the running subsystems; a second
// srcmstr on the same socket is refused)
func TestAdopt(t *testing.T) {
	f := newFixture(t, "")
	if _, err := NewServer(Options{Rundir: f.dir, Config: f.s.opt.Config}); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Fatalf("second srcmstr: %v", err)
	}
	f.must(VerbStart, "-s", "tmd")
	pid, _, _ := f.row("tmd")
	f.s.Close(false)
	s2, err := NewServer(f.s.opt)
	if err != nil {
		t.Fatal(err)
	}
	go s2.Serve()
	f.s = s2 // the cleanup stops s2's subsystems
	if p, st, started := f.row("tmd"); p != pid || st != Active || started != "-s" {
		t.Fatalf("after restart tmd %d %s %s, want %d active -s", p, st, started, pid)
	}
	out := f.must(VerbRefresh, "-s", "tmd")
	if !strings.Contains(out, "no notify pipe") {
		t.Fatalf("refresh of adopted: %s", out)
	}
	f.must(VerbStop, "-s", "tmd")
	if _, st, _ := f.row("tmd"); st != Stopped {
		t.Fatalf("tmd %s after stop", st)
	}
}

// proves: D1 (subsystem file errors are refused as FILE:LINE: reason)
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"subsystem a command x\nsubsystem a command y\n", "f.conf:2: subsystem a already defined at line 1"},
		{"# c\n\nsubsystem a group g orderr 1 command x\n", `f.conf:3: unknown keyword "orderr"`},
		{"subsystem a order x command x\n", `f.conf:1: order "x" is not a number >= 0`},
		{"subsystem a group g\n", "f.conf:1: subsystem a has no command"},
		{"subsystem a requires b command x\n", "f.conf:1: requires b, which is not defined"},
		{"daemon a\n", `f.conf:1: expected 'subsystem NAME ...'`},
		{"subsystem a group-args \"-x command y\n", "f.conf:1: unterminated quote"},
		{"subsystem a group-only command x\n", "f.conf:1: subsystem a is group-only but has no group"},
	} {
		_, err := Parse("f.conf", strings.NewReader(c.text))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
	cfg, err := Parse("default", strings.NewReader(DefaultConfig("/run/a b", "/etc/groupvpn/isakmpd.conf")))
	if err != nil {
		t.Fatal(err)
	}
	isk := cfg.Lookup("isakmpd")
	if strings.Join(isk.GroupArgs, "|") != "-iked|/run/a b/iked.sock" || isk.Requires[0] != "tmd" ||
		strings.Join(isk.Command, "|") != "groupvpn|isakmpd|-f|/etc/groupvpn/isakmpd.conf|-tmd|/run/a b/tmd.sock" {
		t.Fatalf("default table isakmpd: %+v", isk)
	}
	if m := cfg.Members("ike"); len(m) != 4 || m[0].Name != "tmd" || m[1].Name != "iked" || !cfg.Lookup("ikev2d").NotInstalled || !cfg.Lookup("iked").GroupOnly {
		t.Fatalf("default table: %+v", m)
	}
	b, err := os.ReadFile("../../docs/src.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("docs/src.conf.example", strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
}
