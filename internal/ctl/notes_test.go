package ctl

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitScreen waits until s() contains want.
func waitScreen(t *testing.T, s func() string, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(s(), want) {
			return
		}
	}
	t.Fatalf("screen lacks %q:\n%s", want, s())
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
	waitScreen(t, tio.String, "ks1#sh clo")
	notes <- "[lab] 6 pairs, 60 pkt/s; lost 0"
	waitScreen(t, tio.String, "[lab] 6 pairs, 60 pkt/s; lost 0\n")
	io.WriteString(feed, "ck\r")
	waitScreen(t, tio.String, "show clock {")
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
	var out syncBuf
	sh.Out = &out
	notes := make(chan string)
	sh.Notes = notes
	cmds, feed := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- sh.RunScript(context.Background(), cmds) }()
	io.WriteString(feed, "sh clock\n")
	waitScreen(t, out.String, "show clock {")
	notes <- "status one"
	waitScreen(t, out.String, "status one\n")
	feed.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sh.Out != &out {
		t.Errorf("RunScript did not restore Out")
	}
}

// syncBuf is a strings.Builder safe for the shell's and the test's
// goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
