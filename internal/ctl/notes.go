package ctl

import (
	"io"
	"sync"
)

// Notes are lines the shell's host shows while the operator works (the
// lab's live traffic status): Shell.Notes. On a terminal each is written
// through the line editor (term.Terminal.Write), which clears the prompt
// and the line being edited, prints the note and redraws them, so a note
// never lands in the middle of what the operator types. In a script they
// go to Out between whole writes of the commands' output.

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// showNotes writes each note (with a newline) to w until notes is closed
// or the returned stop is called; stop waits until the writer has
// finished.
func showNotes(notes <-chan string, w io.Writer) (stop func()) {
	if notes == nil {
		return func() {}
	}
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case n, ok := <-notes:
				if !ok {
					return
				}
				io.WriteString(w, ensureNL(n))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

// scriptNotes makes Out and Err safe to share with the notes' writer for
// a script's run, and starts it; the returned func stops it and restores
// them.
func (sh *Shell) scriptNotes() func() {
	if sh.Notes == nil {
		return func() {}
	}
	out, errw := sh.Out, sh.Err
	mu := &sync.Mutex{}
	sh.Out, sh.Err = lockedWriter{mu, out}, lockedWriter{mu, errw}
	stop := showNotes(sh.Notes, sh.Out)
	return func() {
		stop()
		sh.Out, sh.Err = out, errw
	}
}
