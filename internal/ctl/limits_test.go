package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// waitFor polls cond until it holds or the test's patience (5 s) ends.
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

// dialIdle opens a connection that sends nothing.
func dialIdle(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proves: S1 (issue 11 item 10: 500 idle clients of the control socket
// hold at most MaxConns goroutines; the others are refused with one line
// and counted; an operator is served again as soon as a slot frees)
func TestSocketConnectionCapBoundsIdleClients(t *testing.T) {
	s := testServer()
	path := serve(t, s)
	base := runtime.NumGoroutine()

	const idle = 500
	conns := make([]net.Conn, 0, idle)
	for range idle {
		conns = append(conns, dialIdle(t, path))
	}
	waitFor(t, "the accept loop to see every connection", func() bool {
		st := s.Stats()
		return st.Accepted+st.Refused == idle
	})
	st := s.Stats()
	if st.Open != DefaultMaxConns || st.Accepted != DefaultMaxConns || st.Refused != idle-DefaultMaxConns {
		t.Fatalf("stats %+v, want %d open and %d refused", st, DefaultMaxConns, idle-DefaultMaxConns)
	}
	if g := runtime.NumGoroutine() - base; g > DefaultMaxConns+16 {
		t.Errorf("%d idle clients cost %d goroutines, want at most about %d", idle, g, DefaultMaxConns)
	}
	// a refused connection reads the reason, then EOF
	refused := conns[idle-1]
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(refused)
	var resp WireResponse
	if err != nil || json.Unmarshal(b, &resp) != nil || resp.OK || !strings.Contains(resp.Error, "too many control connections (limit 64)") {
		t.Fatalf("refused connection read %q, %v", b, err)
	}

	// the client at the cap says why
	if c, err := Dial(path); err != nil {
		t.Fatal(err)
	} else {
		_, err := c.Run(context.Background(), "show clock")
		if !errors.Is(err, ErrConnection) || !strings.Contains(err.Error(), "too many control connections") {
			t.Fatalf("client at the cap: %v", err)
		}
	}

	// one idle client goes away: an operator gets its slot
	for _, c := range conns[:DefaultMaxConns] {
		c.Close()
	}
	waitFor(t, "the closed connections to be released", func() bool { return s.Stats().Open == 0 })
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp, err := c.Run(context.Background(), "show clock"); err != nil || !resp.OK {
		t.Fatalf("legitimate client after the flood: %v %+v", err, resp)
	}
}

// proves: S1 (issue 11 item 10: a connection that never completes a
// request line is closed after IdleTimeout, and counted; a Client whose
// idle connection was closed dials again without an error)
func TestSocketIdleTimeoutClosesSilentClients(t *testing.T) {
	s := testServer()
	s.SetLimits(Limits{IdleTimeout: 200 * time.Millisecond})
	path := serve(t, s)

	// silent, and slowloris: a request line that never ends
	silent := dialIdle(t, path)
	slow := dialIdle(t, path)
	slow.Write([]byte(`{"v":1,"id":1,"cmd":"show`))
	for _, c := range []net.Conn{silent, slow} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection read %d, %v; want EOF", n, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("idle connection closed after %v", d)
		}
	}
	waitFor(t, "the idle connections to be counted", func() bool {
		st := s.Stats()
		return st.IdleClosed == 2 && st.Open == 0
	})

	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		resp, err := c.Run(context.Background(), "show clock")
		if err != nil || !resp.OK {
			t.Fatalf("request %d: %v %+v", i, err, resp)
		}
		time.Sleep(300 * time.Millisecond) // past the idle timeout
	}
	if st := s.Stats(); st.IdleClosed < 4 || st.Accepted != 5 {
		t.Errorf("stats %+v: want the client's idle connection closed and dialled again", st)
	}
}

// proves: S1 (issue 11 item 10: a client that sends requests but stops
// reading the replies holds its goroutine for WriteTimeout only)
func TestSocketWriteTimeoutDropsNonReadingClient(t *testing.T) {
	s := testServer()
	s.Handle("show big", "a long reply", func(ctx context.Context, r *Request) (*Reply, error) {
		return &Reply{Text: strings.Repeat("0123456789abcdef\n", 1<<18)}, nil // 4.25 MiB
	})
	s.SetLimits(Limits{WriteTimeout: 200 * time.Millisecond})
	path := serve(t, s)

	c := dialIdle(t, path)
	for range 4 {
		if _, err := c.Write([]byte(`{"v":1,"id":1,"cmd":"show big"}` + "\n")); err != nil {
			break
		}
	}
	waitFor(t, "the non-reading client to be dropped", func() bool {
		st := s.Stats()
		return st.WriteTimeouts == 1 && st.Open == 0
	})

	// others are served meanwhile and after
	r := dialRaw(t, path)
	if resp := r.roundTrip(t, `{"v":1,"id":2,"cmd":"show clock"}`); !resp.OK || resp.ID != 2 {
		t.Fatalf("%+v", resp)
	}
}

// proves: S1 (issue 11 item 10: request lines over MaxRequest and lines
// that are not requests are refused and counted; the connection stays)
func TestSocketOversizeAndBadLinesCounted(t *testing.T) {
	s := testServer()
	r := dialRaw(t, serve(t, s))
	if resp := r.roundTrip(t, strings.Repeat("x", MaxRequest+10)); resp.OK || !strings.Contains(resp.Error, "64 KiB") {
		t.Fatalf("%+v", resp)
	}
	if resp := r.roundTrip(t, "not json"); resp.OK || !strings.Contains(resp.Error, "bad request") {
		t.Fatalf("%+v", resp)
	}
	if resp := r.roundTrip(t, `{"v":1,"id":3,"cmd":"show clock"}`); !resp.OK || resp.ID != 3 {
		t.Fatalf("%+v", resp)
	}
	if st := s.Stats(); st.Oversize != 1 || st.BadRequests != 1 || st.Open != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// proves: S1 (issue 11 item 10: a process out of file descriptors makes
// accept fail; the control server waits and retries instead of returning,
// which stopped the daemon's control plane for good)
func TestServeSurvivesDescriptorExhaustion(t *testing.T) {
	s := testServer()
	path := serve(t, s)    // its cleanup fails the test if Serve returned an error
	c := dialIdle(t, path) // warm up: the server accepts one
	waitFor(t, "the first connection", func() bool { return s.Stats().Open == 1 })
	c.Close()
	waitFor(t, "the first connection to end", func() bool { return s.Stats().Open == 0 })

	// the client takes the last descriptor: accept fails and backs off
	client := testnet.DialLastDescriptor(t, 100*time.Millisecond, func() (net.Conn, error) { return net.Dial("unix", path) })
	defer client.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	client.Write([]byte(`{"v":1,"id":7,"cmd":"show clock"}` + "\n"))
	b, err := bufio.NewReader(client).ReadBytes('\n')
	var resp WireResponse
	if err != nil || json.Unmarshal(b, &resp) != nil || !resp.OK || resp.ID != 7 {
		t.Fatalf("after the descriptor shortage: %q, %v", b, err)
	}
}
