package src

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// proves: S5 (issue 11 item 8: srcmstr's drops — a connection over its
// limit, a request that is not one — are visible in lssrc -l, by name)
func TestLssrcLongShowsSrcmstrDrops(t *testing.T) {
	dir, err := os.MkdirTemp("", "srcmstr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := Parse("test.conf", strings.NewReader("subsystem tmd group ike order 1 command groupvpn fake tmd\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Options{Rundir: dir, Config: cfg, Self: "/bin/false", MaxConns: 1, IOTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(false) })
	// idle waits until srcmstr serves no connection (the one of the last
	// call may still be closing): with a limit of 1, the next is refused.
	idle := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); s.open.Load() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a connection is still served")
			}
		}
	}
	long := func() string {
		t.Helper()
		idle()
		resp, err := Call(dir, Request{Verb: VerbLssrc, All: true, Long: true})
		if err != nil || resp.Exit != 0 {
			t.Fatalf("lssrc -a -l: %+v, %v", resp, err)
		}
		return resp.Stdout
	}
	row := func(name string, v int) string { return fmt.Sprintf("  %-32s: %-10d ", name, v) }
	if out := long(); !strings.Contains(out, row("connections_refused", 0)) || !strings.Contains(out, row("requests_dropped", 0)) {
		t.Fatalf("lssrc -a -l before any drop:\n%s", out)
	}
	idle()
	if out, _ := Call(dir, Request{Verb: VerbLssrc, All: true}); strings.Contains(out.Stdout, "srcmstr counters") {
		t.Fatalf("lssrc -a (short) shows the counters:\n%s", out.Stdout)
	}

	// A request that is not one, then a connection over the limit (1)
	// while a silent one is held.
	idle()
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("not json\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	c.Close()
	idle()
	held, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.open.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held connection is not served")
		}
	}
	if resp, _ := Call(dir, Request{Verb: VerbLssrc, All: true}); !strings.Contains(resp.Stderr, "too many connections") {
		t.Fatalf("connection over the limit: %+v", resp)
	}
	held.Close()
	out := long()
	for _, w := range []string{"srcmstr counters (since start):", row("connections_refused", 1), row("requests_dropped", 2)} {
		if !strings.Contains(out, w) {
			t.Errorf("lssrc -a -l lacks %q:\n%s", w, out)
		}
	}
}
