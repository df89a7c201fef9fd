package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzServeLine feeds arbitrary request lines to the server's handling of
// one line of the control socket (JSON decode, version check, built-ins,
// command matching, prompts and tokens, output filters), over the test
// command table, several lines per session.
//
// proves: S4 (issue 11: a fuzz target for the control-socket protocol: no
// panic; every non-blank line gets one response that encodes as one JSON
// line, echoing the request's id)
func FuzzServeLine(f *testing.F) {
	for _, l := range []string{
		`{"v":1,"id":41,"cmd":"sh cry gd ks mem | count"}`,
		`{"v":1,"id":1,"cmd":"show crypto gdoi ks members | include 10.0 | json"}`,
		`{"v":1,"id":2,"cmd":"?complete","line":"sh cr"}`,
		`{"v":1,"id":3,"cmd":"?complete","line":"show crypto gdoi | sec"}`,
		`{"v":1,"id":4,"cmd":"?help"}`,
		`{"v":1,"id":5,"cmd":"?hostname"}`,
		`{"v":1,"id":6,"cmd":"clear crypto gdoi group G2 ks members now"}`,
		`{"v":1,"id":7,"cmd":"clear crypto gdoi ks members","answer":"yes","token":"AAAA"}`,
		`{"v":1,"id":8,"cmd":"crypto gdoi ks peer 192.0.2.1 | begin ^C"}`,
		`{"v":1,"id":9,"cmd":"send text hello | world | exclude (a|b)*"}`,
		`{"v":2,"id":10,"cmd":"show clock"}`,
		`{"v":1,"id":11,"cmd":"explode"}`,
		`{"v":1,"id":12,"cmd":"debug level 18446744073709551616"}`,
		`{"v":1,"id":13,"cmd":"crypto gdoi ks peer v6 2001:db8::1%eth0"}`,
		`{"v":1,"id":14,"cmd":"show plain | json | count"}`,
		`[1,2,3]`, `{"v":1,"id":43,"cmd":`, "", "   ", `{"v":1,"cmd":"a\nb"}`,
	} {
		f.Add(l, `{"v":1,"id":99,"cmd":"show clock"}`)
	}
	s := testServer()
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		ss := s.NewSession()
		var last *WireResponse
		for _, l := range []string{line1, line2} {
			if len(l) > MaxRequest {
				return // the connection refuses it before handleLine
			}
			resp, _ := ss.handleLine(context.Background(), []byte(l), nil)
			if strings.TrimSpace(l) == "" {
				if resp != nil {
					t.Fatalf("blank line answered %+v", resp)
				}
				continue
			}
			if resp == nil {
				t.Fatalf("line %q not answered", l)
			}
			b := encodeResponse(resp)
			if strings.Count(string(b), "\n") != 1 || !json.Valid(b[:len(b)-1]) {
				t.Fatalf("response is not one JSON line: %q", b)
			}
			var req WireRequest // decoded as the server does: after trimming white space (\f included)
			if json.Unmarshal(bytes.TrimSpace([]byte(l)), &req) == nil && resp.ID != req.ID {
				t.Fatalf("response id %d to request id %d", resp.ID, req.ID)
			}
			if resp.Pos != nil && (*resp.Pos < 0 || *resp.Pos > len(req.Cmd)) {
				t.Fatalf("pos %d outside cmd %q", *resp.Pos, req.Cmd)
			}
			last = resp
		}
		// answering a prompt with its token works once
		if last != nil && last.Token != "" && json.Unmarshal([]byte(line2), new(WireRequest)) == nil {
			var req WireRequest
			json.Unmarshal([]byte(line2), &req)
			req.Token, req.Answer = last.Token, "no"
			if resp := ss.Do(context.Background(), &req); resp == nil {
				t.Fatal("no answer to a prompt's answer")
			}
		}
	})
}

// FuzzReadLine feeds arbitrary byte streams to the socket's line reader,
// with a limit taken from the first octet.
//
// proves: S4 (lines are bounded by the limit, and the reader always ends)
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("\x10" + `{"v":1,"id":1,"cmd":"show clock"}` + "\n" + `{"v":1}`))
	f.Add([]byte("\x02\n\n\nabc"))
	f.Add([]byte("\xff" + strings.Repeat("x", 5000) + "\nok\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b) > 1<<16 {
			return
		}
		limit := 1 + int(b[0])
		b = b[1:]
		rd := newTestReader(b)
		for i := 0; ; i++ {
			if i > len(b)+1 {
				t.Fatal("readLine does not reach the end")
			}
			line, err := readLine(rd, limit)
			if err != nil && err != errTooLong {
				return
			}
			if len(line) > limit {
				t.Fatalf("line of %d bytes over the limit %d", len(line), limit)
			}
		}
	})
}

func newTestReader(b []byte) *bufio.Reader {
	return bufio.NewReaderSize(bytes.NewReader(b), 16) // small: lines span buffers
}
