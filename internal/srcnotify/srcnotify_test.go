package srcnotify

import (
	"io"
	"os"
	"testing"
)

// proves: D1 (the readiness and refresh outcome reach srcmstr)
func TestRoundTrip(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	n := New(w)
	go func() {
		n.Send(Event{State: Ready, Addrs: []string{"192.0.2.1:848", "[2001:db8::1]:848"}})
		w.Write([]byte("garbage\n"))
		n.Send(Event{State: RefreshFailed, Detail: "ks.conf:3: unknown command"})
		n.Close()
	}()
	d := NewDecoder(r)
	e, err := d.Next()
	if err != nil || e.State != Ready || len(e.Addrs) != 2 || e.Addrs[1] != "[2001:db8::1]:848" {
		t.Fatalf("first event %+v, %v", e, err)
	}
	if _, err := d.Next(); err == nil {
		t.Fatal("a line that is not an event was accepted")
	}
	e, err = d.Next()
	if err != nil || e.State != RefreshFailed || e.Detail != "ks.conf:3: unknown command" {
		t.Fatalf("third line %+v, %v", e, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
	var none *Notifier
	if err := none.Send(Event{State: Ready}); err != nil {
		t.Fatal(err)
	}
}
