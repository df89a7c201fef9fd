package ctl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

func newShell(t *testing.T, path string) (*Shell, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var out, errb bytes.Buffer
	return &Shell{Client: c, Out: &out, Err: &errb}, &out, &errb
}

// proves: O2
func TestShellOneShotOutputAndCaret(t *testing.T) {
	path := serve(t, testServer())
	sh, out, errb := newShell(t, path)
	ctx := context.Background()
	if err := sh.RunCommand(ctx, "sh cry gd ks mem | include 10.0.0.3"); err != nil {
		t.Fatal(err, errb)
	}
	if out.String() != "Group Member ID    : 10.0.0.3    GM Version: 1.0.1\n" {
		t.Errorf("%q", out)
	}
	out.Reset()
	err := sh.RunCommand(ctx, "show crypto gdoi foo")
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("%v", err)
	}
	want := "groupvpn cli: show crypto gdoi foo\n" +
		strings.Repeat(" ", len("groupvpn cli: show crypto gdoi ")) + "^\n" +
		"% Invalid input detected at '^' marker.\n"
	if errb.String() != want {
		t.Errorf("got\n%s\nwant\n%s", errb, want)
	}
	errb.Reset()
	if err := sh.RunCommand(ctx, "fail"); !errors.Is(err, ErrFailed) || out.String() != "partial output\n" ||
		errb.String() != "groupvpn cli: fail\nERROR for group G1: can only execute this command on Primary KS\n" {
		t.Errorf("%v %q %q", err, out, errb)
	}
}

// proves: O2
func TestShellNonInteractiveNeverPrompts(t *testing.T) {
	path := serve(t, testServer())
	ctx := context.Background()

	sh, out, errb := newShell(t, path)
	err := sh.RunCommand(ctx, "clear crypto gdoi ks members")
	if !errors.Is(err, ErrNoTerminal) {
		t.Fatalf("%v", err)
	}
	for _, w := range []string{`"Are you sure you want to proceed ? [yes/no]:"`, "--yes", "--answer no"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("refusal lacks %q: %s", w, errb)
		}
	}
	if strings.Contains(out.String(), "Sending") {
		t.Errorf("ran anyway: %s", out)
	}

	sh, out, _ = newShell(t, path)
	sh.Yes = true
	if err := sh.RunCommand(ctx, "clear crypto gdoi group G9 ks members now"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Are you sure you want to proceed ? [yes/no]: yes\n") ||
		!strings.Contains(out.String(), "WARNING for group G1") ||
		!strings.HasSuffix(out.String(), "Sending GM-Removal message to group G9...\n") {
		t.Errorf("%s", out)
	}

	sh, out, _ = newShell(t, path)
	sh.Answers = []string{"no"}
	if err := sh.RunCommand(ctx, "clear crypto gdoi ks members"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "% Aborted\n") {
		t.Errorf("%s", out)
	}

	// one answer given, the second question has none: refuse
	sh, _, errb = newShell(t, path)
	sh.Answers = []string{"yes"}
	if err := sh.RunCommand(ctx, "clear crypto gdoi ks members now"); !errors.Is(err, ErrNoTerminal) || !strings.Contains(errb.String(), "--yes") {
		t.Errorf("%v %s", err, errb)
	}
}

// proves: O2
func TestShellScriptFromReader(t *testing.T) {
	path := serve(t, testServer())
	sh, out, errb := newShell(t, path)
	script := "! a comment\n\nsh clock\nsh cry gd ks mem | count\nexit\nshow clock\n"
	if err := sh.RunScript(context.Background(), strings.NewReader(script)); err != nil {
		t.Fatal(err, errb)
	}
	if strings.Count(out.String(), "show clock") != 1 || !strings.Contains(out.String(), "= 12") {
		t.Errorf("%s", out)
	}
	out.Reset()
	err := sh.RunScript(context.Background(), strings.NewReader("sh clock\nsh bogus\nsh clock\n"))
	if !errors.Is(err, ErrFailed) || strings.Count(out.String(), "show clock") != 1 || !strings.Contains(errb.String(), "Invalid input") {
		t.Errorf("%v\n%s\n%s", err, out, errb)
	}
}

// termIO feeds keystrokes to a Terminal and collects what it draws.
type termIO struct {
	in  io.Reader
	out testnet.Buffer
}

func (p *termIO) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *termIO) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *termIO) String() string              { return strings.ReplaceAll(p.out.String(), "\r", "") }

// WaitFor waits until the screen (without carriage returns) satisfies cond.
func (p *termIO) WaitFor(d time.Duration, cond func(string) bool) bool {
	return p.out.WaitFor(d, func(s string) bool { return cond(strings.ReplaceAll(s, "\r", "")) })
}

// proves: O2
func TestShellInteractive(t *testing.T) {
	path := serve(t, testServer())
	sh, _, _ := newShell(t, path)
	keys := strings.Join([]string{
		"sh cry gd ks mem | count\r",
		"sh cry gd k\tmem\t| include 1.0.1\r", // TAB completes keywords
		"show crypto gdoi foo\r",
		"sh cry gd ?gm\r",        // '?' lists, then the line goes on
		"sh clock\r", "\x1b[A\r", // up arrow repeats
		"clear crypto gdoi ks members\r", "maybe\r", "yes\r",
		"clear crypto gdoi ks members\r", "no\r",
		"sh c\t\r",
		"exit\r",
		"show plain\r", // never runs
	}, "")
	tio := &termIO{in: strings.NewReader(keys)}
	if err := sh.Interactive(context.Background(), tio, 80, 24); err != nil {
		t.Fatal(err)
	}
	got := tio.String()
	for _, w := range []string{
		"ks1#",
		"Number of lines which match regexp = 12",
		"sh cry gd ks members | include 1.0.1\n",
		"Group Member ID    : 10.0.0.3    GM Version: 1.0.1\n",
		"ks1#show crypto gdoi foo\n" + strings.Repeat(" ", 4+17) + "^\n% Invalid input detected at '^' marker.\n",
		"ks1#sh cry gd ?\n",
		"  ks  ",
		"  <cr>",
		"show crypto gdoi gm {",
		"Are you sure you want to proceed ? [yes/no]: ",
		"% Please answer 'yes' or 'no'.",
		"Sending GM-Removal message to group G1...",
		"% Aborted",
		"sh c\n% Ambiguous command:  \"sh c\"\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("screen lacks %q", w)
		}
	}
	if n := strings.Count(got, "show clock {"); n != 2 {
		t.Errorf("history: show clock ran %d times", n)
	}
	if strings.Contains(got, "alpha") {
		t.Errorf("ran past exit")
	}
	if t.Failed() {
		t.Logf("screen:\n%s", got)
	}
}

// proves: O2
func TestShellInteractiveCtrlDAndHostnameFallback(t *testing.T) {
	s := NewServer(nil)
	s.Handle("show hostname", "", func(context.Context, *Request) (*Reply, error) { return &Reply{Text: "gm7\n"}, nil })
	path := serve(t, s)
	sh, _, _ := newShell(t, path)
	tio := &termIO{in: strings.NewReader("\x04")}
	if err := sh.Interactive(context.Background(), tio, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tio.String(), "gm7#") {
		t.Errorf("%q", tio.String())
	}
}

// proves: O2
func TestHistorySkipsEmptyAndRepeats(t *testing.T) {
	var h history
	for _, s := range []string{"a", "", "a", "b", "  "} {
		h.Add(s)
	}
	if h.Len() != 2 || h.At(0) != "b" || h.At(1) != "a" {
		t.Errorf("%v", h.lines)
	}
}
