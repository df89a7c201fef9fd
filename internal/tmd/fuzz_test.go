package tmd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzServeLines feeds an arbitrary byte stream, as a client of the API
// socket could send it, to the server's line reader and its handling of
// each line (hello, operations, malformed lines), then sweeps and lists
// what was installed.
//
// proves: S4 (issue 11: a fuzz target for the tmd API: no panic; every
// non-blank line is answered with one JSON line; nothing but a hello is
// served before the hello; every refusal is counted; issue 12: every
// policy tmd holds is valid and is what its backend holds, with the
// group's fail mode, and the backend holds tmd's TEKs)
func FuzzServeLines(f *testing.F) {
	line := func(v any) string {
		b, err := encodeLine(v)
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	hello := line(Request{Hello: &Hello{API: APIVersion, Client: "isakmpd", PID: 42}})
	tek, kek := fullTEK("G1", 0x1234), fullKEK("G1")
	ops := []string{
		line(Request{Op: OpInstallTEK, TEK: &tek}),
		line(Request{Op: OpInstallKEK, KEK: &kek}),
		line(Request{Op: OpSetFailMode, Group: "G1", Mode: "fail-close"}),
		line(Request{Op: OpFailMode, Group: "G1"}),
		line(Request{Op: OpSetPolicy, Group: "G1", Policy: testPolicy(0x1234)}),
		line(Request{Op: OpSetFailMode, Group: "G1", Mode: "fail-open"}),
		line(Request{Op: OpList}),
		line(Request{Op: OpStatus}),
		line(Request{Op: OpDeleteTEK, Group: "G1", SPI: 0x1234}),
		line(Request{Op: OpDeleteKEK, Group: "G1"}),
		line(Request{Op: OpSetPolicy, Group: "G1"}), // removes it
	}
	f.Add([]byte(hello + strings.Join(ops, "")))
	for _, op := range ops {
		f.Add([]byte(hello + op))
	}
	f.Add([]byte(ops[0]))                                     // no hello
	f.Add([]byte(`{"hello":{"api":1,"client":"x"}}` + "\n"))  // another version
	f.Add([]byte(hello + hello + "\n\r\n" + `{"op":"frob"}`)) // hello twice, blank, unknown
	f.Add([]byte(hello + `{"op":"install-tek","tek":{"Src":"10.0.0.0/33","Expires":"x"}}` + "\n" + `{"op":"install-tek"}`))
	f.Add([]byte(hello + `{"op":"set-policy","group":"G1","policy":[{"Action":"allow","Src":"10.0.0.0/8","Dst":"::/0"}]}` + "\n" +
		`{"op":"set-policy","group":"G1","policy":[{"Action":"permit","Src":"10.0.0.0/8","Dst":"10.0.0.0/8"}]}` + "\n" +
		`{"op":"set-policy","policy":[{"Action":"deny","Src":"10.0.0.0/8","Dst":"10.0.0.0/8"}]}` + "\n" +
		`{"op":"set-policy","group":"G1","policy":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		s := NewServer(Options{Now: func() time.Time { return t0 }})
		sc := &serverConn{}
		var h *Hello
		rd := bufio.NewReaderSize(bytes.NewReader(b), 64<<10)
		answered, refused := 0, uint64(0)
		for i := 0; ; i++ {
			if i > len(b)+1 {
				t.Fatal("the line reader does not reach the end")
			}
			l, err := readLine(rd)
			if err != nil && !errors.Is(err, errLineTooLong) {
				break
			}
			before := h
			resp, last := s.serveLine(sc, &h, l, err)
			if resp == nil {
				if err != nil || len(bytes.TrimSpace(l)) != 0 {
					t.Fatalf("line %q not answered", l)
				}
				continue
			}
			answered++
			if !resp.OK {
				refused++
			}
			if before == nil && resp.OK && (resp.Server != "tmd" || h == nil) {
				t.Fatalf("served %+v before a hello", resp)
			}
			out, err := encodeLine(resp)
			if err != nil || bytes.Count(out, []byte("\n")) != 1 || !json.Valid(out) {
				t.Fatalf("response is not one JSON line: %q, %v", out, err)
			}
			if h != nil && len(h.Client) > maxClientName {
				t.Fatalf("client name of %d bytes kept", len(h.Client))
			}
			if last {
				break
			}
		}
		st := s.Status()
		if st.Malformed > refused {
			t.Fatalf("%d malformed counted, %d refusals answered", st.Malformed, refused)
		}
		s.Sweep(t0.Add(time.Hour))
		s.Sweep(t0.Add(100 * 365 * 24 * time.Hour))
		pols := s.db.Policies()
		if _, err := encodeLine(Response{OK: true, TEKs: s.db.TEKs(), KEKs: s.db.KEKs(), Policies: pols}); err != nil {
			t.Fatalf("list not encodable: %v", err)
		}
		be := s.be.(*MemoryBackend)
		for g, p := range pols {
			if err := validatePolicy(g, p); err != nil || len(p) == 0 {
				t.Fatalf("tmd holds an invalid policy of %q: %v", g, err)
			}
			if got, f := be.Policy(g), be.FailMode(g); !slices.Equal(got, p) || f != s.db.FailMode(g) {
				t.Fatalf("backend holds %+v (%v) for %q, tmd %+v (%v)", got, f, g, p, s.db.FailMode(g))
			}
		}
		if len(be.TEKs()) != len(s.db.TEKs()) {
			t.Fatalf("backend holds %d TEKs, tmd %d", len(be.TEKs()), len(s.db.TEKs()))
		}
	})
}
