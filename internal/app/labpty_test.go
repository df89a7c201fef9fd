package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// proves: O2 (issue 14 item 3: Ctrl-C in `groupvpn lab --cli`, on a real
// pseudo-terminal, abandons the line typed and a confirmation question
// instead of ending the CLI and with it the whole lab; scrapers'
// `terminal length 0` is accepted)
func TestLabCLICtrlCKeepsTheLab(t *testing.T) {
	master, slave := openPTY(t)
	var screen testnet.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	norm := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	seen := func() string { return norm(screen.String()) }
	var errb bytes.Buffer
	code := make(chan int, 1)
	ended := make(chan struct{})
	go func() {
		code <- Main(&Env{Stdin: slave, Stdout: slave, Stderr: &errb},
			[]string{"lab", "--cli", "--members", "2", "--traffic=false", "--port", "23993", "--dir", t.TempDir()})
		close(ended)
		screen.Write(nil) // wakes waitFor
	}()
	// waitFor waits, woken by each write to the screen, until the screen
	// shows what n times, or the lab ends.
	waitForN := func(what string, n int) {
		t.Helper()
		screen.WaitFor(30*time.Second, func(s string) bool {
			select {
			case <-ended:
				return true
			default:
			}
			return strings.Count(norm(s), what) >= n
		})
		if strings.Count(seen(), what) >= n {
			return
		}
		select {
		case <-ended:
			t.Fatalf("the lab ended (exit %d) before %q:\n%s\n%s", <-code, what, seen(), errb.String())
		default:
			t.Fatalf("no %q:\n%s\n%s", what, seen(), errb.String())
		}
	}
	waitFor := func(what string) { t.Helper(); waitForN(what, 1) }
	waitFor("ks#")
	master.Write([]byte("show never\x03")) // Ctrl-C: the line is abandoned
	waitForN("ks#", 2)                     // and a new prompt shown
	master.Write([]byte("clear crypto gdoi ks members\r"))
	waitFor("[yes/no]: ")
	master.Write([]byte("\x03")) // Ctrl-C: the question is abandoned
	waitFor("% Aborted")
	master.Write([]byte("terminal length 0\rshow clock\r"))
	waitFor(" UTC ")
	master.Write([]byte("exit\r"))
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d: %s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lab did not end after exit")
	}
	if s := seen(); strings.Contains(s, "Invalid input") || strings.Contains(s, "Sending GM-Removal") {
		t.Errorf("an abandoned line ran:\n%s", s)
	}
}
