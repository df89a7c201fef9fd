package daemon_test

import (
	"context"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
)

// serve runs d with its control socket at sock until the test ends and
// returns a client of that socket. The socket is bound (ctl.Listen) before
// d runs, as isakmpd does before it says ready, so the client connects at
// once: nothing polls for the daemon to come up.
func serve(t *testing.T, d *daemon.Daemon, sock string) *ctl.Client {
	t.Helper()
	ln, err := ctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	client, err := ctl.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}
