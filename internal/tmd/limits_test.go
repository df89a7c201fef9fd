package tmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func connDial(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proves: S1 (issue 11 item 10: 300 silent clients of tmd's socket hold
// at most MaxConns goroutines, the rest are refused with one line and
// counted, silent ones are closed after HelloTimeout, and an IKE daemon's
// client is served afterwards)
func TestConnectionCapAndHelloTimeout(t *testing.T) {
	path := sockPath(t)
	r := startWith(t, path, Options{Limits: Limits{HelloTimeout: 500 * time.Millisecond}})
	base := runtime.NumGoroutine()
	const n = 300
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = connDial(t, path)
	}
	waitFor(t, "every connection to be accepted or refused", func() bool {
		return r.srv.Status().Refused == n-DefaultMaxConns
	})
	if g := runtime.NumGoroutine() - base; g > DefaultMaxConns+16 {
		t.Errorf("%d silent clients cost %d goroutines, want about %d", n, g, DefaultMaxConns)
	}
	last := conns[n-1]
	last.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(last)
	var resp Response
	if err != nil || json.Unmarshal(b, &resp) != nil || !strings.Contains(resp.Error, "too many connections (limit 32)") {
		t.Fatalf("refused connection read %q, %v", b, err)
	}
	// the accepted silent ones are closed at HelloTimeout
	first := conns[0]
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent connection: %v, want EOF after the hello timeout", err)
	}
	waitFor(t, "the silent connections to be counted", func() bool {
		return r.srv.Status().TimedOut == DefaultMaxConns
	})
	c := dial(t, path, "isakmpd")
	if err := c.InstallTEK(fullTEK("G1", 7)); err != nil {
		t.Fatalf("client after the flood: %v", err)
	}
}

// proves: S1 (issue 11 item 10: an introduced client that trickles a
// line, or sends nothing, or stops reading, is closed within its timeout)
func TestLineIdleAndWriteTimeouts(t *testing.T) {
	path := sockPath(t)
	r := startWith(t, path, Options{Limits: Limits{LineTimeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}})
	hello := func(c net.Conn) *bufio.Reader {
		t.Helper()
		c.Write([]byte(`{"hello":{"api":2,"client":"test","pid":1}}` + "\n"))
		rd := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rd.ReadBytes('\n'); err != nil {
			t.Fatal(err)
		}
		return rd
	}
	// a line begun and never ended
	slow := connDial(t, path)
	rd := hello(slow)
	slow.Write([]byte(`{"op":"sta`))
	start := time.Now()
	if _, err := rd.ReadByte(); err != io.EOF {
		t.Fatalf("trickling client: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("trickling client closed after %v", d)
	}
	// introduced and silent
	idle := connDial(t, path)
	rd = hello(idle)
	if _, err := rd.ReadByte(); err != io.EOF {
		t.Fatalf("idle client: %v, want EOF", err)
	}
	waitFor(t, "the timeouts to be counted", func() bool { return r.srv.Status().TimedOut == 2 })

	// many list requests never read: the writes time out, the
	// connection is closed
	for i := range 50 {
		r.srv.DB().InstallTEK(fullTEK("G1", uint32(100+i)))
	}
	deaf := connDial(t, path)
	hello(deaf)
	go func() {
		for range 2000 {
			if _, err := deaf.Write([]byte(`{"op":"list"}` + "\n")); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the deaf client to be dropped", func() bool {
		st := r.srv.Status()
		return st.WriteFailed >= 1 && len(st.Clients) == 0
	})
	c, err := Dial(context.Background(), path, "isakmpd", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := len(c.TEKs()); n != 50 {
		t.Fatalf("client sees %d TEKs", n)
	}
}

// proves: S1 (issue 11 item 10: out of file descriptors, tmd's accept
// fails; tmd waits and retries instead of returning, which stopped it)
func TestServeSurvivesDescriptorExhaustion(t *testing.T) {
	path := sockPath(t)
	r := startWith(t, path, Options{})
	c := testnet.DialLastDescriptor(t, 100*time.Millisecond, func() (net.Conn, error) { return net.Dial("unix", path) })
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(`{"hello":{"api":2,"client":"test","pid":1}}` + "\n"))
	b, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil || !strings.Contains(string(b), `"server":"tmd"`) {
		t.Fatalf("after the descriptor shortage: %q, %v", b, err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
