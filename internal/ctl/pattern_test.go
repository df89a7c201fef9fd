package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const membersText = `Group Member Information :

Number of rekeys sent for group G1 : 3

Group Member ID    : 10.0.0.2    GM Version: 1.0.2
 Group ID          : 1234
 Group Name        : G1
 Rekeys sent       : 3
Group Member ID    : 10.0.0.3    GM Version: 1.0.1
 Group ID          : 1234
 Group Name        : G1
 Rekeys sent       : 3
`

type member struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// testServer has commands shaped like the real ones.
func testServer() *Server {
	s := NewServer(nil)
	s.SetHostname("ks1")
	echo := func(ctx context.Context, r *Request) (*Reply, error) {
		b, _ := json.Marshal(r.Args)
		return &Reply{Text: r.Command + " " + string(b) + "\n", Data: r.Params}, nil
	}
	s.Handle("show crypto gdoi", "Show GDOI information", echo)
	s.Handle("show crypto gdoi ks members", "Show the group members of the key server",
		func(ctx context.Context, r *Request) (*Reply, error) {
			return &Reply{Text: membersText, Data: []member{{"10.0.0.2", "1.0.2"}, {"10.0.0.3", "1.0.1"}}}, nil
		})
	s.Handle("show crypto gdoi ks policy", "Show the key server policy", echo)
	s.Handle("show crypto gdoi gm", "Show group member state", echo)
	s.Handle("show crypto gdoi group WORD", "Show one group", echo)
	s.Handle("show crypto gdoi feature [gm-removal]", "Show feature support", echo)
	s.Handle("show crypto ipsec sa", "Show IPsec SAs", echo)
	s.Handle("show clock", "Show the time", echo)
	s.Handle("show plain", "Text without data", func(ctx context.Context, r *Request) (*Reply, error) {
		return &Reply{Text: "alpha\nbeta\ngamma\n"}, nil
	})
	s.Handle("crypto gdoi ks peer addr=A.B.C.D", "Add a COOP peer", echo)
	s.Handle("crypto gdoi ks peer v6=X:X::X", "Add an IPv6 COOP peer", echo)
	s.Handle("debug level NUMBER", "Set the debug level", echo)
	s.Handle("debug level WORD", "Set the debug level by name", echo)
	s.Handle("send text LINE", "Send a line", echo)
	s.Handle("fail", "Always fails", func(ctx context.Context, r *Request) (*Reply, error) {
		return &Reply{Text: "partial output\n"}, errors.New("ERROR for group G1: can only execute this command on Primary KS")
	})
	s.Handle("explode", "Panics", func(ctx context.Context, r *Request) (*Reply, error) {
		panic("boom")
	})
	s.Handle("clear crypto gdoi [group WORD] ks members [now]", "Remove the group members",
		func(ctx context.Context, r *Request) (*Reply, error) {
			ok, err := r.Confirm("Are you sure you want to proceed ? [yes/no]: ")
			if err != nil || !ok {
				return &Reply{Text: "% Aborted\n"}, err
			}
			if r.Has("now") {
				ok, err = r.Confirm("WARNING for group G1: some devices cannot support GM-REMOVAL and can cause network disruption. Please check 'show crypto gdoi feature'.\nAre you sure you want to proceed ? [yes/no]: ")
				if err != nil || !ok {
					return &Reply{Text: "% Aborted\n"}, err
				}
			}
			g := r.Args["group"]
			if g == "" {
				g = "G1"
			}
			return &Reply{Text: fmt.Sprintf("Sending GM-Removal message to group %s...\n", g), Data: r.Answers}, nil
		})
	return s
}

// proves: O2
func TestPatternAbbreviationsResolveUniqueCommand(t *testing.T) {
	s := testServer()
	for line, want := range map[string]string{
		"show crypto gdoi ks members": "show crypto gdoi ks members",
		"sh cry gd ks mem":            "show crypto gdoi ks members",
		"SH CRY GD KS MEM":            "show crypto gdoi ks members",
		"  sh\tcr gdoi  k p ":         "show crypto gdoi ks policy",
		"sh cry gd":                   "show crypto gdoi",
		"sh cl":                       "show clock",
		"sh cry gd gr G7":             "show crypto gdoi group WORD",
		"sh cry gd fea":               "show crypto gdoi feature [gm-removal]",
		"sh cry gd fea gm":            "show crypto gdoi feature [gm-removal]",
		"cl cr gd ks mem":             "clear crypto gdoi [group WORD] ks members [now]",
		"cl cr gd gr ks ks mem now":   "clear crypto gdoi [group WORD] ks members [now]",
		"cr gd ks peer 10.1.1.1":      "crypto gdoi ks peer addr=A.B.C.D",
		"cr gd ks peer 2001:db8::1":   "crypto gdoi ks peer v6=X:X::X",
		"deb lev 7":                   "debug level NUMBER",
		"deb lev verbose":             "debug level WORD",
		"send text hello   big world": "send text LINE",
	} {
		res, err := resolve(s.commands(), line)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if res.cmd.pattern != want {
			t.Errorf("%q resolved to %q, want %q", line, res.cmd.pattern, want)
		}
	}
}

// proves: O2
func TestPatternBindsArgsAndParams(t *testing.T) {
	s := testServer()
	cases := []struct {
		line   string
		args   map[string]string
		params []Param
	}{
		{"cl cr gd gr ks ks mem now",
			map[string]string{"clear": "clear", "crypto": "crypto", "gdoi": "gdoi", "group": "ks", "ks": "ks", "members": "members", "now": "now"},
			[]Param{{"group", "WORD", "ks"}}},
		{"cr gd ks peer 10.1.1.1",
			map[string]string{"crypto": "crypto", "gdoi": "gdoi", "ks": "ks", "peer": "peer", "addr": "10.1.1.1"},
			[]Param{{"addr", "A.B.C.D", "10.1.1.1"}}},
		{"send text hello   big world",
			map[string]string{"send": "send", "text": "hello   big world"},
			[]Param{{"text", "LINE", "hello   big world"}}},
	}
	for _, c := range cases {
		res, err := resolve(s.commands(), c.line)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		var r Request
		res.bind(&r)
		if !reflect.DeepEqual(r.Args, c.args) || !reflect.DeepEqual(r.Params, c.params) {
			t.Errorf("%q: args %v params %v, want %v %v", c.line, r.Args, r.Params, c.args, c.params)
		}
	}
	res, _ := resolve(s.commands(), "cl cr gd ks mem")
	var r Request
	res.bind(&r)
	if r.Has("now") || r.Has("group") || !r.Has("members") {
		t.Errorf("optional parts: %v", r.Args)
	}
	if got := strings.Join(r.Words, " "); got != "clear crypto gdoi ks members" {
		t.Errorf("words %q", got)
	}
}

// proves: O2 (issue 14 item 3: IOS's exact ambiguous-command text, two spaces after the colon)
func TestPatternAmbiguousIOSText(t *testing.T) {
	s := testServer()
	_, err := resolve(s.commands(), "sh c")
	var pe *parseError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v", err)
	}
	if want := `% Ambiguous command:  "sh c"`; pe.msg != want {
		t.Errorf("got %q, want %q", pe.msg, want)
	}
	if pe.pos != -1 { // IOS draws no marker for an ambiguous word
		t.Errorf("pos %d", pe.pos)
	}
	_, err = resolve(s.commands(), "show crypto gdoi g")
	if err == nil || err.Error() != `% Ambiguous command:  "show crypto gdoi g"` {
		t.Errorf("err %v", err)
	}
	// "c" at the start: clear or crypto
	if _, err := resolve(s.commands(), "c gdoi"); err == nil || err.Error() != `% Ambiguous command:  "c"` {
		t.Errorf("err %v", err)
	}
}

// proves: O2
func TestPatternInvalidInputMarksTheWord(t *testing.T) {
	s := testServer()
	for line, pos := range map[string]int{
		"show crypto gdoi foo":           17,
		"shw crypto":                     0,
		"show crypto gdoi ks members xx": 28,
		"show clock now":                 11,
		"cr gd ks peer 300.1.1.1":        14,
		"show  crypto   bogus":           15,
	} {
		_, err := resolve(s.commands(), line)
		var pe *parseError
		if !errors.As(err, &pe) || pe.msg != "% Invalid input detected at '^' marker." || pe.pos != pos {
			t.Errorf("%q: %v (pos %v), want pos %d", line, err, pe, pos)
		}
	}
	for _, line := range []string{"show crypto", "show crypto gdoi group", "clear crypto gdoi group G1"} {
		if _, err := resolve(s.commands(), line); err == nil || err.Error() != "% Incomplete command." {
			t.Errorf("%q: %v", line, err)
		}
	}
}

// proves: O2
func TestHandleRejectsBadPatterns(t *testing.T) {
	for _, p := range []string{"", "show [crypto", "show crypto]", "Show", "show WORD WORD", "show LINE more", "show []", "x=show"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q accepted", p)
				}
			}()
			NewServer(nil).Handle(p, "", func(context.Context, *Request) (*Reply, error) { return nil, nil })
		}()
	}
	s := testServer()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "conflicts") {
			t.Errorf("conflict not detected: %v", r)
		}
	}()
	s.Handle("show crypto gdoi group name=WORD", "", func(context.Context, *Request) (*Reply, error) { return nil, nil })
}

// proves: O2
func TestCompletion(t *testing.T) {
	s := testServer()
	words := func(line string) []string {
		cands, _, err := completeCommand(s.commands(), nil, line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		var out []string
		for _, c := range cands {
			out = append(out, c.Word)
		}
		return out
	}
	for line, want := range map[string][]string{
		"sh cr":              {"crypto"},
		"sh c":               {"clock", "crypto"},
		"sh cry gd ":         {"feature", "gm", "group", "ks", "|", "<cr>"},
		"sh cry gd group ":   {"WORD"},
		"show crypto gdoi k": {"ks"},
		"cr gd ks peer ":     {"A.B.C.D", "X:X::X"},
		"cr gd ks peer 10.":  nil,
		"":                   {"clear", "crypto", "debug", "explode", "fail", "send", "show"},
	} {
		if got := words(line); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
	r := s.NewSession().Do(context.Background(), &WireRequest{V: 1, Cmd: CmdComplete, Line: "sh cry gd ks m"})
	var comp Completion
	if !r.OK || json.Unmarshal(r.Data, &comp) != nil || comp.Partial != "m" || len(comp.Candidates) != 1 ||
		comp.Candidates[0].Word != "members" || !comp.Candidates[0].Keyword || comp.Candidates[0].Help == "" {
		t.Fatalf("%+v %s", r, r.Data)
	}
	if !strings.Contains(r.Text, "members") || !strings.Contains(r.Text, "Show the group members") {
		t.Errorf("listing %q", r.Text)
	}
	// filters complete too
	r = s.NewSession().Do(context.Background(), &WireRequest{V: 1, Cmd: CmdComplete, Line: "sh cry gd ks mem | in"})
	if json.Unmarshal(r.Data, &comp) != nil || len(comp.Candidates) != 1 || comp.Candidates[0].Word != "include" {
		t.Errorf("%s", r.Data)
	}
	r = s.NewSession().Do(context.Background(), &WireRequest{V: 1, Cmd: CmdComplete, Line: "sh cry gd ks mem | include "})
	if !strings.Contains(r.Text, "LINE") {
		t.Errorf("%q", r.Text)
	}
	r = s.NewSession().Do(context.Background(), &WireRequest{V: 1, Cmd: CmdComplete, Line: "sh c "})
	if json.Unmarshal(r.Data, &comp) != nil || !strings.Contains(comp.Error, "Ambiguous") {
		t.Errorf("%s", r.Data)
	}
}
