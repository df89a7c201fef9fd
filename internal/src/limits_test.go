package src

import (
	"github.com/groupvpn/groupvpn/internal/testnet"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// proves: S1 (issue 11 item 10: srcmstr's socket serves at most MaxConns
// connections, refuses more with an answer the verbs print, closes a
// connection that sends no request within IOTimeout or an oversize one,
// and serves a verb afterwards)
func TestSrcmstrConnectionLimits(t *testing.T) {
	dir, err := os.MkdirTemp("", "srcmstr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := Parse("test.conf", strings.NewReader("subsystem tmd group ike order 1 command groupvpn fake tmd\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Options{Rundir: dir, Config: cfg, Self: "/bin/false", MaxConns: 4, IOTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(false) })

	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("unix", SocketPath(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.open.Load() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want 4", s.open.Load())
		}
		time.Sleep(time.Millisecond)
	}
	resp, err := Call(dir, Request{Verb: VerbLssrc, All: true})
	if err != nil || resp.Exit != 1 || !strings.Contains(resp.Stderr, "too many connections (limit 4)") {
		t.Fatalf("fifth connection: %+v, %v", resp, err)
	}
	// the silent ones are answered and closed at IOTimeout
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || !strings.Contains(string(b), "bad request") {
			t.Fatalf("silent connection read %q, %v", b, err)
		}
	}
	// an oversize request is cut at MaxRequest
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go c.Write([]byte(`{"verb":"` + strings.Repeat("x", 2*MaxRequest) + `"}`))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// (the read may end in a reset: the rest of the request was not read)
	if b, err := io.ReadAll(c); !strings.Contains(string(b), "bad request: request longer than 65536 bytes") {
		t.Fatalf("oversize request: %q, %v", b, err)
	}
	if refused, bad := s.Drops(); refused != 1 || bad != 5 {
		t.Errorf("drops: refused %d, bad %d; want 1 and 5", refused, bad)
	}
	resp, err = Call(dir, Request{Verb: VerbLssrc, All: true})
	if err != nil || resp.Exit != 0 || !strings.Contains(resp.Stdout, "tmd") {
		t.Fatalf("lssrc after: %+v, %v", resp, err)
	}
}

// proves: S1 (issue 11 item 10: out of file descriptors, srcmstr's accept
// fails; it waits and retries instead of returning, which ended srcmstr)
func TestSrcmstrSurvivesDescriptorExhaustion(t *testing.T) {
	dir, err := os.MkdirTemp("", "srcmstr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := Parse("test.conf", strings.NewReader("subsystem tmd group ike order 1 command groupvpn fake tmd\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Options{Rundir: dir, Config: cfg, Self: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() { s.Close(false) })

	// the last descriptor: accept gets EMFILE
	c := testnet.DialLastDescriptor(t, 100*time.Millisecond, func() (net.Conn, error) { return net.Dial("unix", SocketPath(dir)) })
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(`{"verb":"lssrc","all":true}`))
	b, err := io.ReadAll(c)
	if !strings.Contains(string(b), "tmd") {
		t.Fatalf("after the descriptor shortage: %q, %v", b, err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
}
