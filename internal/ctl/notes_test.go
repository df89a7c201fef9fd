package ctl

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// screen is what a test reads a shell's output from: a termIO or a
// testnet.Buffer, woken by each write.
type screen interface {
	WaitFor(time.Duration, func(string) bool) bool
	String() string
}

// waitScreen waits until the screen shows want.
func waitScreen(t *testing.T, s screen, want string) {
	t.Helper()
	if !s.WaitFor(10*time.Second, func(text string) bool { return strings.Contains(text, want) }) {
		t.Fatalf("screen lacks %q:\n%s", want, s.String())
	}
}

// proves: O2 (issue 13: the lab's live traffic status) — a note shown
// while the operator is typing a line goes above the prompt, and the
// prompt and the half-typed line are redrawn after it: the line runs as
// typed, the note never becomes part of it.
func TestShellInteractiveNotesAbovePrompt(t *testing.T) {
	path := serve(t, testServer())
	sh, _, _ := newShell(t, path)
	notes := make(chan string)
	sh.Notes = notes
	keys, feed := io.Pipe()
	tio := &termIO{in: keys}
	done := make(chan error, 1)
	go func() { done <- sh.Interactive(context.Background(), tio, 80, 24) }()
	io.WriteString(feed, "sh clo")
	waitScreen(t, tio, "ks1#sh clo")
	notes <- "[lab] 6 pairs, 60 pkt/s; lost 0"
	waitScreen(t, tio, "[lab] 6 pairs, 60 pkt/s; lost 0\n")
	io.WriteString(feed, "ck\r")
	waitScreen(t, tio, "show clock {")
	io.WriteString(feed, "exit\r")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := tio.String()
	note := strings.Index(got, "[lab] 6 pairs")
	if !strings.Contains(got[note:], "\nks1#sh clo") {
		t.Errorf("the prompt and the half-typed line are not redrawn after the note:\n%q", got)
	}
	if strings.Contains(got, "sh clo[lab]") || strings.Contains(got, "lost 0ck") {
		t.Errorf("the note is mixed into the line being edited:\n%q", got)
	}
}

// proves: O2 (issue 13: the lab's live traffic status) — in a script the
// notes go to Out between the commands' output.
func TestShellScriptNotes(t *testing.T) {
	path := serve(t, testServer())
	sh, _, _ := newShell(t, path)
	var out testnet.Buffer
	sh.Out = &out
	notes := make(chan string)
	sh.Notes = notes
	cmds, feed := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- sh.RunScript(context.Background(), cmds) }()
	io.WriteString(feed, "sh clock\n")
	waitScreen(t, &out, "show clock {")
	notes <- "status one"
	waitScreen(t, &out, "status one\n")
	feed.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sh.Out != &out {
		t.Errorf("RunScript did not restore Out")
	}
}
