package srcnotify

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// proves: S4 (issue 11: the readiness pipe; an over-long line used to stop
// the bufio.Scanner for good, so srcmstr's reader looped on the same error
// forever, logging a warning each time; a refused line was quoted whole)
func TestDecoderSkipsOverlongLineAndBoundsErrors(t *testing.T) {
	in := strings.Repeat("x", 3*MaxLine) + "\n" +
		strings.Repeat("y", 10000) + "\n" +
		`{"state":"ready","detail":"ok"}` + "\n"
	d := NewDecoder(strings.NewReader(in))
	if _, err := d.Next(); !errors.Is(err, ErrLine) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("over-long line: %v", err)
	}
	_, err := d.Next()
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "(10000 bytes)") {
		t.Fatalf("garbage line: error %.300q", err)
	}
	if e, err := d.Next(); err != nil || e.State != Ready || e.Detail != "ok" {
		t.Fatalf("event after: %+v, %v", e, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// FuzzDecoder feeds arbitrary bytes, as a daemon could write them on the
// notify pipe, to srcmstr's decoder.
//
// proves: S4 (issue 11: a fuzz target for the readiness pipe: no panic,
// the decoder always reaches io.EOF, errors are bounded, events have a
// state and survive a round trip)
func FuzzDecoder(f *testing.F) {
	var seed bytes.Buffer
	n := New(nopCloser{&seed})
	n.Send(Event{State: Ready, Addrs: []string{"192.0.2.1:848", "[2001:db8::1]:848"}, Detail: "SA API on /run/groupvpn/tmd.sock"})
	n.Send(Event{State: Refreshed})
	n.Send(Event{State: RefreshFailed, Detail: "ks.conf:3: unknown command"})
	n.Send(Event{State: Stopping})
	f.Add(seed.Bytes())
	f.Add([]byte("garbage\n{\"state\":\"ready\"}"))
	f.Add([]byte("{\"state\":\"\"}\n\n\r\n{\"addrs\":[1]}\n"))
	f.Add([]byte(`{"state":"ready","addrs":null,"detail":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			if i > len(b)+1 {
				t.Fatalf("no io.EOF after %d calls on %d bytes", i, len(b))
			}
			e, err := d.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				// at most 64 quoted bytes, 4 characters each (\x1b)
				if len(err.Error()) > 4*maxQuote+100 {
					t.Fatalf("error of %d bytes", len(err.Error()))
				}
				continue
			}
			if e.State == "" {
				t.Fatal("an event without a state")
			}
			var out bytes.Buffer
			New(nopCloser{&out}).Send(e)
			if e2, err := NewDecoder(&out).Next(); err != nil || e2.State != e.State || e2.Detail != e.Detail || len(e2.Addrs) != len(e.Addrs) {
				t.Fatalf("round trip %+v -> %+v, %v", e, e2, err)
			}
		}
	})
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
