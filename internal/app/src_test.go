package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/src"
)

// runVerb runs one of the SRC commands as Main does.
func runVerb(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(&Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// proves: D1 (the verbs exist under their AIX names, with AIX flags)
func TestSRCVerbNames(t *testing.T) {
	for _, n := range []string{"srcmstr", "startsrc", "stopsrc", "refresh", "lssrc"} {
		if !SRCVerb(n) {
			t.Errorf("SRCVerb(%q) = false", n)
		}
		if _, ok := commands()[n]; !ok {
			t.Errorf("groupvpn %s is not a command", n)
		}
	}
	if SRCVerb("groupvpn") || SRCVerb("isakmpd") {
		t.Error("SRCVerb accepts a daemon name")
	}
	if code, _, _ := runVerb("startsrc", "-s", "tmd", "-g", "ike"); code != 2 {
		t.Errorf("startsrc -s -g: exit %d, want 2", code)
	}
	if code, _, _ := runVerb("lssrc"); code != 2 {
		t.Errorf("lssrc without a target: exit %d, want 2", code)
	}
	dir := t.TempDir()
	code, _, stderr := runVerb("startsrc", "-rundir", dir, "-s", "tmd")
	want := fmt.Sprintf("startsrc: srcmstr is not running (no socket at %s/srcmstr.sock): start it with groupvpn srcmstr\n", dir)
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, stderr, want)
	}
	bad := filepath.Join(dir, "src.conf")
	os.WriteFile(bad, []byte("subsystem tmd group ike\n"), 0o644)
	code, _, stderr = runVerb("srcmstr", "-rundir", dir, "-f", bad)
	if code != 1 || !strings.Contains(stderr, bad+":1: subsystem tmd has no command") {
		t.Fatalf("srcmstr with a bad file: exit %d, %q", code, stderr)
	}
}

// fakeScript is a daemon in sh speaking the srcnotify protocol.
const fakeScript = `echo "$0 started mode $GROUPVPN_SRC_MODE"
trap 'echo "{\"state\":\"refresh-failed\",\"detail\":\"isakmpd.conf:7: unknown command\"}" >&3' HUP
trap 'exit 0' TERM
echo '{"state":"ready","addrs":["127.0.0.1:848"]}' >&3
while :; do sleep 0.05; done
`

// proves: D2 D5 D6 (the command-line verbs against a running srcmstr:
// exit statuses and messages as the operator sees them)
func TestSRCVerbsEndToEnd(t *testing.T) {
	dir, err := os.MkdirTemp("", "srcapp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "fake.sh")
	if err := os.WriteFile(script, []byte(fakeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("subsystem tmd group ike order 1 command /bin/sh %s\n"+
		"subsystem isakmpd group ike order 3 requires tmd command /bin/sh %s\n"+
		"subsystem ikev2d group ike order 3 requires tmd not-installed\n", script, script)
	cfg, err := src.Parse("src.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.NewServer(src.Options{Rundir: dir, Config: cfg, ReadyTimeout: 10 * time.Second, RefreshTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close(true)

	code, _, stderr := runVerb("startsrc", "-rundir", dir, "-s", "isakmpd")
	if code != 1 || stderr != "startsrc: isakmpd needs tmd, which is not active: start tmd first (startsrc -s tmd)\n" {
		t.Fatalf("startsrc -s isakmpd alone: %d %q", code, stderr)
	}
	code, _, stderr = runVerb("refresh", "-rundir", dir, "-g", "ike")
	if code != 1 || stderr != "refresh: group ike is not active; refresh does not start it: startsrc -g ike\n" {
		t.Fatalf("refresh -g ike when stopped: %d %q", code, stderr)
	}
	code, stdout, stderr := runVerb("startsrc", "-rundir", dir, "-g", "ike")
	if code != 0 || !strings.Contains(stdout, "0513-059 The isakmpd Subsystem has been started.") ||
		!strings.Contains(stdout, "ikev2d: not installed; the group starts without it.") {
		t.Fatalf("startsrc -g ike: %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runVerb("refresh", "-rundir", dir, "-s", "isakmpd")
	if code != 1 || stderr != "refresh: isakmpd was started with its group (startsrc -g ike): refresh it with refresh -g ike\n" {
		t.Fatalf("refresh -s of a -g subsystem: %d %q", code, stderr)
	}
	code, _, stderr = runVerb("refresh", "-rundir", dir, "-g", "ike")
	if code != 1 || !strings.Contains(stderr, "refresh: isakmpd: refresh failed: isakmpd.conf:7: unknown command") {
		t.Fatalf("refresh -g ike with a refused configuration: %d %q", code, stderr)
	}
	code, stdout, _ = runVerb("lssrc", "-rundir", dir, "-a")
	if code != 0 || !strings.Contains(stdout, " isakmpd          ike              ") || !strings.Contains(stdout, "active          -g\n") ||
		!strings.Contains(stdout, " ikev2d           ike                           not installed\n") {
		t.Fatalf("lssrc -a: %d\n%s", code, stdout)
	}
	code, stdout, _ = runVerb("stopsrc", "-rundir", dir, "-g", "ike")
	if code != 0 || stdout != "0513-044 The isakmpd Subsystem was requested to stop.\n0513-044 The tmd Subsystem was requested to stop.\n" {
		t.Fatalf("stopsrc -g ike: %d\n%s", code, stdout)
	}
}
