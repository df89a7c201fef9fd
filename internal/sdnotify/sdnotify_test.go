package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(b[:n])
}

// proves: O2 (issue 14 item 8: srcmstr's systemd readiness is one
// READY=1 datagram on the real unixgram socket $NOTIFY_SOCKET names, for
// a path and for the abstract namespace)
func TestNotifyRealSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	if sent, err := Notify(path, Ready); !sent || err != nil {
		t.Fatalf("Notify: %v %v", sent, err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Fatalf("datagram %q", got)
	}

	abs := "@groupvpn-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	a := listen(t, abs)
	if sent, err := Notify(abs, Ready+"\nSTATUS=serving"); !sent || err != nil {
		t.Fatalf("Notify abstract: %v %v", sent, err)
	}
	if got := recv(t, a); got != "READY=1\nSTATUS=serving" {
		t.Fatalf("abstract datagram %q", got)
	}
}

// proves: O2 (issue 14 item 8: outside systemd Notify is a no-op; a bad
// or absent socket is an error, not a hang)
func TestNotifyNoSocket(t *testing.T) {
	if sent, err := Notify("", Ready); sent || err != nil {
		t.Fatalf("empty NOTIFY_SOCKET: %v %v", sent, err)
	}
	if _, err := Notify("relative", Ready); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
	if _, err := Notify(filepath.Join(t.TempDir(), "absent"), Ready); err == nil {
		t.Fatal("no error for an absent socket")
	}
}
