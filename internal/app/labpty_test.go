package app

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// proves: O2 (issue 14 item 3: Ctrl-C in `groupvpn lab --cli`, on a real
// pseudo-terminal, abandons the line typed and a confirmation question
// instead of ending the CLI and with it the whole lab; scrapers'
// `terminal length 0` is accepted)
func TestLabCLICtrlCKeepsTheLab(t *testing.T) {
	master, slave := openPTY(t)
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func() string { mu.Lock(); defer mu.Unlock(); return strings.ReplaceAll(screen.String(), "\r\n", "\n") }
	var errb bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main(&Env{Stdin: slave, Stdout: slave, Stderr: &errb},
			[]string{"lab", "--cli", "--members", "2", "--traffic=false", "--port", "23993", "--dir", t.TempDir()})
	}()
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(seen(), what); time.Sleep(20 * time.Millisecond) {
			select {
			case c := <-code:
				t.Fatalf("the lab ended (exit %d) before %q:\n%s\n%s", c, what, seen(), errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q:\n%s\n%s", what, seen(), errb.String())
			}
		}
	}
	waitFor("ks#")
	master.Write([]byte("show never\x03")) // Ctrl-C: the line is abandoned
	time.Sleep(200 * time.Millisecond)
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
