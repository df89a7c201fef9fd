package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// ctlServer serves a few commands on a fresh control socket.
func ctlServer(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "isakmpd.sock")
	s := ctl.NewServer(nil)
	s.SetHostname("ks1")
	s.Handle("show crypto gdoi ks members", "members", func(context.Context, *ctl.Request) (*ctl.Reply, error) {
		return &ctl.Reply{Text: "Group Member ID    : 10.0.0.2\nGroup Member ID    : 10.0.0.3\n", Data: []string{"10.0.0.2", "10.0.0.3"}}, nil
	})
	s.Handle("show clock", "time", func(context.Context, *ctl.Request) (*ctl.Reply, error) {
		return &ctl.Reply{Text: "12:00:00.000 UTC\n"}, nil
	})
	s.Handle("clear crypto gdoi [group WORD] ks members [now]", "remove", func(_ context.Context, r *ctl.Request) (*ctl.Reply, error) {
		ok, err := r.Confirm("Are you sure you want to proceed ? [yes/no]: ")
		if err != nil {
			return nil, err
		}
		if !ok {
			return &ctl.Reply{Text: "% Aborted\n"}, nil
		}
		return &ctl.Reply{Text: "Sending GM-Removal message to group G1...\n"}, nil
	})
	s.Handle("fail", "", func(context.Context, *ctl.Request) (*ctl.Reply, error) {
		return nil, errors.New("ERROR for group G1: can only execute this command on Primary KS")
	})
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

// proves: O2
func TestCLIOneShotCommands(t *testing.T) {
	sock := ctlServer(t)
	code, out, errs := run(t, "", "cli", "-s", sock, "-c", "sh cry gd ks mem | include 10.0.0.3", "-c", "sh clock")
	if code != 0 || out != "Group Member ID    : 10.0.0.3\n12:00:00.000 UTC\n" || errs != "" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	code, out, _ = run(t, "", "cli", "-s", sock, "-c", "sh cry gd ks mem | json")
	if code != 0 || out != "[\n  \"10.0.0.2\",\n  \"10.0.0.3\"\n]\n" {
		t.Fatalf("exit %d %q", code, out)
	}
	// the command may also be given as words
	code, out, _ = run(t, "", "cli", "-s", sock, "show", "clock")
	if code != 0 || out != "12:00:00.000 UTC\n" {
		t.Fatalf("exit %d %q", code, out)
	}
	// $GROUPVPN_SOCKET
	t.Setenv("GROUPVPN_SOCKET", sock)
	if code, out, _ = run(t, "", "cli", "-c", "sh clock"); code != 0 || out != "12:00:00.000 UTC\n" {
		t.Fatalf("exit %d %q", code, out)
	}
}

// proves: O2
func TestCLIOneShotFailures(t *testing.T) {
	sock := ctlServer(t)
	code, out, errs := run(t, "", "cli", "-s", sock, "-c", "sh clock", "-c", "show crypto bogus", "-c", "sh clock")
	if code != 1 || out != "12:00:00.000 UTC\n" {
		t.Fatalf("exit %d %q", code, out)
	}
	want := "groupvpn cli: show crypto bogus\n" + strings.Repeat(" ", len("groupvpn cli: show crypto ")) + "^\n% Invalid input detected at '^' marker.\n"
	if errs != want {
		t.Errorf("stderr\n%s\nwant\n%s", errs, want)
	}
	if code, _, errs = run(t, "", "cli", "-s", sock, "-c", "fail"); code != 1 || !strings.Contains(errs, "can only execute this command on Primary KS") {
		t.Errorf("exit %d %q", code, errs)
	}
	if code, _, errs = run(t, "", "cli", "-s", sock, "-c", "sh c"); code != 1 || !strings.Contains(errs, `% Ambiguous command:  "sh c"`) {
		t.Errorf("exit %d %q", code, errs)
	}
	missing := filepath.Join(filepath.Dir(sock), "nope.sock")
	code, _, errs = run(t, "", "cli", "-s", missing, "-c", "sh clock")
	if code != 1 || !strings.Contains(errs, missing) || !strings.Contains(errs, "is isakmpd running? start it with: groupvpn isakmpd -f FILE") {
		t.Errorf("exit %d %q", code, errs)
	}
	if code, _, _ = run(t, "", "cli", "-bogus"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
}

// proves: O2
func TestCLIPromptsNeedExplicitAnswers(t *testing.T) {
	sock := ctlServer(t)
	code, out, errs := run(t, "", "cli", "-s", sock, "-c", "clear crypto gdoi ks members")
	if code != 1 || strings.Contains(out, "Sending") || !strings.Contains(errs, "--yes") || !strings.Contains(errs, "Are you sure you want to proceed ? [yes/no]:") {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	code, out, _ = run(t, "", "cli", "-s", sock, "--yes", "-c", "clear crypto gdoi ks members")
	if code != 0 || out != "Are you sure you want to proceed ? [yes/no]: yes\nSending GM-Removal message to group G1...\n" {
		t.Fatalf("exit %d %q", code, out)
	}
	code, out, _ = run(t, "", "cli", "-s", sock, "--answer", "no", "-c", "clear crypto gdoi ks members")
	if code != 0 || !strings.HasSuffix(out, "% Aborted\n") {
		t.Fatalf("exit %d %q", code, out)
	}
	// commands on stdin (no terminal) never prompt either
	code, out, errs = run(t, "sh clock\nclear crypto gdoi ks members\nsh clock\n", "cli", "-s", sock)
	if code != 1 || out != "12:00:00.000 UTC\n" || !strings.Contains(errs, "--yes") {
		t.Fatalf("exit %d %q %q", code, out, errs)
	}
}

// proves: O2
func TestCLIListedInHelp(t *testing.T) {
	if code, out, _ := run(t, "", "help"); code != 0 || !strings.Contains(out, "cli") || !strings.Contains(out, "operator CLI") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
