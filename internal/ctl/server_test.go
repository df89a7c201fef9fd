package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sockDir returns a short temporary directory (unix socket paths are
// limited to about 100 bytes).
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve runs s on a fresh socket until the test ends.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	path := filepath.Join(sockDir(t), "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		ln, err := listenUnix(path, 0o600, -1)
		close(ready)
		if err != nil {
			done <- err
			return
		}
		done <- s.ServeListener(ctx, ln)
	}()
	<-ready
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// raw is a connection speaking the wire protocol by hand.
type raw struct {
	c  net.Conn
	rd *bufio.Reader
}

func dialRaw(t *testing.T, path string) *raw {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &raw{c, bufio.NewReader(c)}
}

func (r *raw) roundTrip(t *testing.T, line string) WireResponse {
	t.Helper()
	if _, err := r.c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	b, err := r.rd.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var resp WireResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("response %q: %v", b, err)
	}
	return resp
}

// proves: O2
func TestSocketProtocolEndToEnd(t *testing.T) {
	path := serve(t, testServer())
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	r := dialRaw(t, path)

	resp := r.roundTrip(t, `{"v":1,"id":41,"cmd":"sh cry gd ks mem | count"}`)
	if !resp.OK || resp.ID != 41 || resp.V != 1 || resp.Text != "Number of lines which match regexp = 12\n" || !json.Valid(resp.Data) {
		t.Fatalf("%+v", resp)
	}

	resp = r.roundTrip(t, `{"v":2,"id":42,"cmd":"show clock"}`)
	if resp.OK || resp.ID != 42 || !strings.Contains(resp.Error, "version 2") || !strings.Contains(resp.Error, "version 1") {
		t.Errorf("version mismatch: %+v", resp)
	}

	resp = r.roundTrip(t, `{"v":1,"id":43,"cmd":`)
	if resp.OK || !strings.Contains(resp.Error, "bad request") {
		t.Errorf("bad JSON: %+v", resp)
	}
	resp = r.roundTrip(t, `[1,2,3]`)
	if resp.OK || !strings.Contains(resp.Error, "bad request") {
		t.Errorf("bad JSON: %+v", resp)
	}

	big := `{"v":1,"id":44,"cmd":"show clock","input":"` + strings.Repeat("x", 70<<10) + `"}`
	resp = r.roundTrip(t, big)
	if resp.OK || !strings.Contains(resp.Error, "64 KiB") {
		t.Errorf("oversize: %+v", resp)
	}

	resp = r.roundTrip(t, `{"v":1,"id":45,"cmd":"fail"}`)
	if resp.OK || resp.Error != "ERROR for group G1: can only execute this command on Primary KS" || resp.Text != "partial output\n" {
		t.Errorf("handler error: %+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":46,"cmd":"explode"}`)
	if resp.OK || !strings.Contains(resp.Error, "boom") {
		t.Errorf("panic: %+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":47,"cmd":"show crypto gdoi foo"}`)
	if resp.OK || resp.Error != "% Invalid input detected at '^' marker." || resp.Pos == nil || *resp.Pos != 17 {
		t.Errorf("invalid: %+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":48,"cmd":"?frob"}`)
	if resp.OK || !strings.Contains(resp.Error, "?complete") {
		t.Errorf("unknown built-in: %+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":49,"cmd":"?help"}`)
	var help []HelpEntry
	if !resp.OK || json.Unmarshal(resp.Data, &help) != nil || len(help) < 10 || !regexp.MustCompile(`(?m)^  show crypto gdoi ks members +Show the group members`).MatchString(resp.Text) {
		t.Errorf("help: %+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":50,"cmd":"?hostname"}`)
	if !resp.OK || string(resp.Data) != `"ks1"` {
		t.Errorf("hostname: %+v", resp)
	}
	// after all that, the connection still works
	resp = r.roundTrip(t, `{"v":1,"id":51,"cmd":"sh clock"}`)
	if !resp.OK || resp.ID != 51 {
		t.Errorf("%+v", resp)
	}
}

// proves: O2
func TestSocketPromptAnswerTokens(t *testing.T) {
	path := serve(t, testServer())
	r := dialRaw(t, path)
	resp := r.roundTrip(t, `{"v":1,"id":1,"cmd":"clear crypto gdoi ks members"}`)
	if resp.OK || resp.Prompt != "Are you sure you want to proceed ? [yes/no]: " || resp.Token == "" {
		t.Fatalf("%+v", resp)
	}
	tok := resp.Token
	// a token is bound to its command
	resp = r.roundTrip(t, fmt.Sprintf(`{"v":1,"id":2,"cmd":"clear crypto gdoi ks members now","answer":"yes","token":%q}`, tok))
	if resp.OK || !strings.Contains(resp.Error, "belongs to") {
		t.Fatalf("%+v", resp)
	}
	// and single-use: the mismatch above consumed it
	resp = r.roundTrip(t, fmt.Sprintf(`{"v":1,"id":3,"cmd":"clear crypto gdoi ks members","answer":"yes","token":%q}`, tok))
	if resp.OK || !strings.Contains(resp.Error, "run the command again") {
		t.Fatalf("%+v", resp)
	}
	resp = r.roundTrip(t, `{"v":1,"id":4,"cmd":"clear crypto gdoi ks members"}`)
	resp = r.roundTrip(t, fmt.Sprintf(`{"v":1,"id":5,"cmd":"clear crypto gdoi ks members","answer":"yes","token":%q}`, resp.Token))
	if !resp.OK || resp.Text != "Sending GM-Removal message to group G1...\n" {
		t.Fatalf("%+v", resp)
	}
	// tokens belong to their connection
	resp = r.roundTrip(t, `{"v":1,"id":6,"cmd":"clear crypto gdoi ks members"}`)
	other := dialRaw(t, path)
	resp = other.roundTrip(t, fmt.Sprintf(`{"v":1,"id":1,"cmd":"clear crypto gdoi ks members","answer":"yes","token":%q}`, resp.Token))
	if resp.OK || !strings.Contains(resp.Error, "token") {
		t.Fatalf("%+v", resp)
	}
}

// proves: O2
func TestSocketConcurrentClients(t *testing.T) {
	path := serve(t, testServer())
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range 25 {
				group := fmt.Sprintf("G%d-%d", i, j)
				resp, err := c.Run(context.Background(), "sh cry gd group "+group+" | include group")
				if err != nil {
					errs <- err
					return
				}
				if !resp.OK || !strings.Contains(resp.Text, `"group":"`+group+`"`) {
					errs <- fmt.Errorf("%s: %+v", group, resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// proves: O2
func TestServeStaleSocketBusySocketAndShutdown(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "run", "isakmpd.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// a socket file left by a dead daemon
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(path); err == nil || !strings.Contains(err.Error(), "nothing is listening") || !strings.Contains(err.Error(), "groupvpn isakmpd -f FILE") {
		t.Fatalf("dial stale: %v", err)
	}

	// Listen (what Serve does first) replaces the stale file; once it has
	// returned, the socket accepts: no polling for the server to come up.
	s := testServer()
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln2) }()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Run(context.Background(), "show clock"); err != nil || !resp.OK {
		t.Fatalf("%v %+v", err, resp)
	}
	// a second daemon on the same socket refuses to steal it
	if err := NewServer(nil).Serve(context.Background(), path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Serve: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel (an idle connection is open)")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	if _, err := c.Run(context.Background(), "show clock"); err == nil {
		t.Errorf("request after shutdown succeeded")
	}
	c.Close()

	// never remove what is not a socket
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	if err := NewServer(nil).Serve(context.Background(), plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve on a file: %v", err)
	}
	if _, err := Dial(filepath.Join(dir, "missing.sock")); err == nil || !strings.Contains(err.Error(), "does not exist") ||
		!strings.Contains(err.Error(), "is isakmpd running? start it with: groupvpn isakmpd -f FILE") {
		t.Fatalf("dial missing: %v", err)
	}
}

// proves: O2
func TestClientVersionMismatchFromServer(t *testing.T) {
	// A server of another version answers every request with its own v.
	dir := sockDir(t)
	path := filepath.Join(dir, "v2.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadBytes('\n')
		c.Write([]byte(`{"v":2,"id":1,"ok":false,"error":"ctl: protocol version 1 requested, but this server speaks version 2"}` + "\n"))
	}()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Run(context.Background(), "show clock")
	if err == nil || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("%v", err)
	}
}
