package daemon_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
)

// proves: O2 (issue 18: the interactive CLI pages streamed output as IOS
// does, on a running daemon's control socket: `terminal length 5` makes
// pages of 4 lines and --More--, space shows the next page, q stops the
// output without reading the rest and the next command is answered;
// `terminal length 0` turns paging off, and a `-c` run never pages)
func TestInteractivePaging(t *testing.T) {
	d, client := seedDaemon(t)
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: io.Discard, Err: io.Discard})
	pr, pw := io.Pipe()
	tio := &termIO{in: pr}
	done := make(chan error, 1)
	go func() { done <- cs.Interactive(context.Background(), tio, 200, 50) }()
	typ := func(s string) {
		if _, err := io.WriteString(pw, s); err != nil {
			t.Fatal(err)
		}
	}
	run := strings.Split(strings.TrimSuffix(d.Config().Render(), "\n"), "\n")
	if len(run) < 12 {
		t.Fatalf("running configuration of %d lines: too short to page", len(run))
	}
	typ("terminal length 5\r")
	tio.waitScreen(t, "Device#terminal length 5\nDevice#")
	typ("show running-config\r")
	tio.waitScreen(t, "--More--")
	typ(" ")
	tio.waitScreen(t, run[7]+"\n")
	typ("q")
	typ("show clock | count\r")
	tio.waitScreen(t, "Number of lines which match regexp = 1\n")
	typ("terminal length 0\r")
	typ("show running-config | count\r")
	tio.waitScreen(t, "Number of lines which match regexp = ")
	typ("show running-config\r")
	tio.waitScreen(t, "\n"+run[len(run)-1]+"\n")
	typ("exit\r")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	screen := tio.String()
	first := screen[strings.Index(screen, "Device#show running-config\n"):]
	first = first[:strings.Index(first, "Device#show clock")]
	more := " --More-- \r" + strings.Repeat(" ", len(" --More-- ")) + "\r"
	if strings.Count(first, more) != 2 || strings.ReplaceAll(first, more, "") != "Device#show running-config\n"+strings.Join(run[:8], "\n")+"\n" {
		t.Errorf("paged output (pages of 4 lines, q after the second):\n%s", first)
	}
	last := screen[strings.LastIndex(screen, "Device#show running-config\n"):]
	if strings.Contains(last, "--More--") {
		t.Errorf("terminal length 0 still pages:\n%s", last)
	}
}

// proves: O2 (issue 18: `show crypto gdoi ks members A.B.C.D` on a
// running key server's socket: an address that is not registered is
// an IOS-like error (exit 1 in a script); a malformed one is refused by
// the parser)
func TestShowOneKSMemberUnknown(t *testing.T) {
	_, client := seedDaemon(t)
	ctx := context.Background()
	r, err := client.Run(ctx, "show crypto gdoi ks members 192.0.2.9")
	if err != nil || r.OK || r.Error != "% No group member 192.0.2.9 is registered with this key server" {
		t.Fatalf("unknown member: %+v %v", r, err)
	}
	r, err = client.Run(ctx, "show crypto gdoi ks members 192.0.2.300")
	if err != nil || r.OK || !strings.Contains(r.Error, "Invalid input") {
		t.Fatalf("malformed address: %+v %v", r, err)
	}
	r, err = client.Run(ctx, "show crypto gdoi ks members | count")
	if err != nil || !r.OK || !strings.HasPrefix(r.Text, "Number of lines which match regexp = ") {
		t.Fatalf("| count: %+v %v", r, err)
	}
}
