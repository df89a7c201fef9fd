package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/srcnotify"
)

// StartReady starts cmd, a groupvpn daemon, with the readiness pipe
// srcmstr gives its subsystems (the write end as descriptor 3, named by
// GROUPVPN_NOTIFY_FD) and waits until the daemon says ready, so that a
// test goes on when the daemon's sockets answer instead of polling them.
// It fails t if the daemon exits or closes the pipe first, or says
// nothing within timeout. cmd must have no ExtraFiles; the daemon's later
// events are read and dropped. Killing and waiting for cmd stay the
// caller's.
func StartReady(t testing.TB, cmd *exec.Cmd, timeout time.Duration) {
	t.Helper()
	if len(cmd.ExtraFiles) != 0 {
		t.Fatal("StartReady: cmd already has ExtraFiles; the pipe must be descriptor 3")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, srcnotify.EnvFD+"=3")
	err = cmd.Start()
	pw.Close() // the daemon holds the write end now
	if err != nil {
		pr.Close()
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		defer pr.Close()
		dec := srcnotify.NewDecoder(pr)
		e, err := dec.Next()
		switch {
		case err != nil:
			first <- fmt.Errorf("%s closed its readiness pipe (exited?) before it was ready: %v", cmd.Path, err)
			return
		case e.State != srcnotify.Ready:
			first <- fmt.Errorf("%s said %q (%s) before ready", cmd.Path, e.State, e.Detail)
		default:
			first <- nil
		}
		for {
			if _, err := dec.Next(); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s %v: not ready in %v", cmd.Path, cmd.Args[1:], timeout)
	}
}
