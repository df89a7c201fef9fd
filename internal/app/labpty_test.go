package app

import (
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
	scr := newPTYScreen(master)
	var errb testnet.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main(&Env{Stdin: slave, Stdout: slave, Stderr: &errb},
			[]string{"lab", "--cli", "--members", "2", "--traffic=false", "--port", "23993", "--dir", t.TempDir()})
		scr.end()
	}()
	at := scr.wait(t, 30*time.Second, 0, "ks#")
	master.Write([]byte("show never\x03"))      // Ctrl-C: the line is abandoned
	at = scr.wait(t, 30*time.Second, at, "ks#") // and a new prompt shown
	master.Write([]byte("clear crypto gdoi ks members\r"))
	at = scr.wait(t, 30*time.Second, at, "[yes/no]: ")
	master.Write([]byte("\x03")) // Ctrl-C: the question is abandoned
	at = scr.wait(t, 30*time.Second, at, "% Aborted")
	master.Write([]byte("terminal length 0\rshow clock\r"))
	scr.wait(t, 30*time.Second, at, " UTC ")
	master.Write([]byte("exit\r"))
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d: %s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lab did not end after exit")
	}
	if s := scr.String(); strings.Contains(s, "Invalid input") || strings.Contains(s, "Sending GM-Removal") {
		t.Errorf("an abandoned line ran:\n%s", s)
	}
}
