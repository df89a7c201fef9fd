package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// fakeConfig is a ConfigSession with the seed's modes.
type fakeConfig struct {
	mu        *sync.Mutex
	committed *[]string
	modes     []string
	lines     []string
}

func (f *fakeConfig) Mode() string { return f.modes[len(f.modes)-1] }
func (f *fakeConfig) Commands() []string {
	return []string{"abort", "crypto", "do", "end", "exit", "no", "profile", "sa", "server"}
}

func (f *fakeConfig) Line(_ context.Context, line string) (string, string, error) {
	switch {
	case line == "end" || (line == "exit" && len(f.modes) == 1):
		f.mu.Lock()
		*f.committed = append(*f.committed, strings.Join(f.lines, "; "))
		f.mu.Unlock()
		return "", "", nil
	case line == "exit":
		f.modes = f.modes[:len(f.modes)-1]
	case strings.HasPrefix(line, "crypto gdoi group "):
		f.modes = append(f.modes[:1], "(config-gdoi-group)")
	case line == "server local":
		f.modes = append(f.modes, "(gdoi-local-server)")
	case strings.HasPrefix(line, "sa ipsec "):
		f.modes = append(f.modes, "(gdoi-sa-ipsec)")
	case strings.HasPrefix(line, "profile ") || strings.HasPrefix(line, "no profile "):
	default:
		return "", f.Mode(), fmt.Errorf("%% unknown command %q", line)
	}
	f.lines = append(f.lines, line)
	return "", f.Mode(), nil
}

func configServer(t *testing.T) (*Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	committed := &[]string{}
	s := NewServer(nil)
	s.SetHostname("Device")
	s.Handle("show clock", "", func(context.Context, *Request) (*Reply, error) { return &Reply{Text: "*09:15:15.527 UTC\n"}, nil })
	s.HandleConfigure(func(context.Context) (ConfigSession, error) {
		return &fakeConfig{mu: &mu, committed: committed, modes: []string{"(config)"}}, nil
	})
	t.Cleanup(func() { mu.Lock(); mu.Unlock() })
	return s, committed
}

var seedSession = []struct{ line, mode string }{
	{"configure terminal", "(config)"},
	{"crypto gdoi group GET", "(config-gdoi-group)"},
	{"server local", "(gdoi-local-server)"},
	{"sa ipsec 1", "(gdoi-sa-ipsec)"},
	{"no profile gdoi-p", "(gdoi-sa-ipsec)"},
	{"profile gdoi-p2", "(gdoi-sa-ipsec)"},
	{"end", ""},
}

// proves: O2
func TestConfigProtocolRaw(t *testing.T) {
	s, committed := configServer(t)
	r := dialRaw(t, serve(t, s))
	resp := r.roundTrip(t, `{"v":1,"id":1,"cmd":"conf t"}`)
	st, ok := ParseConfigState(&resp)
	if !resp.OK || !ok || st.Session == "" || st.Mode != "(config)" || resp.Text != EnterConfig {
		t.Fatalf("conf t: %+v", resp)
	}
	line := func(id int, input string, complete bool) WireResponse {
		cmd := CmdConfigSession + " " + st.Session
		if complete {
			cmd += " complete"
		}
		b, _ := json.Marshal(WireRequest{V: 1, ID: uint64(id), Cmd: cmd, Input: input})
		return r.roundTrip(t, string(b))
	}
	for i, step := range seedSession[1 : len(seedSession)-1] {
		resp := line(i+2, step.line, false)
		got, ok := ParseConfigState(&resp)
		if !resp.OK || !ok || got.Mode != step.mode || got.Session != st.Session {
			t.Fatalf("%q: %+v", step.line, resp)
		}
	}
	// A refused line keeps the mode; the client keeps its prompt.
	resp = line(20, "frobnicate", false)
	if resp.OK || resp.Error != `% unknown command "frobnicate"` || len(resp.Data) != 0 {
		t.Fatalf("bad line: %+v", resp)
	}
	// do runs an EXEC command, filters included; the mode stays.
	resp = line(21, "do show clock | include UTC", false)
	if got, _ := ParseConfigState(&resp); !resp.OK || resp.Text != "*09:15:15.527 UTC\n" || got.Mode != "(gdoi-sa-ipsec)" {
		t.Fatalf("do: %+v", resp)
	}
	resp = line(22, "do show bogus", false)
	if resp.OK || !strings.Contains(resp.Error, "Invalid input") {
		t.Fatalf("do bogus: %+v", resp)
	}
	// Completion of the mode's commands.
	resp = line(23, "s", true)
	var comp Completion
	json.Unmarshal(resp.Data, &comp)
	if !resp.OK || comp.Partial != "s" || len(comp.Candidates) != 2 || comp.Candidates[0].Word != "sa" || comp.Candidates[1].Word != "server" {
		t.Fatalf("complete: %+v %s", resp, resp.Data)
	}
	resp = line(24, "no p", true)
	json.Unmarshal(resp.Data, &comp)
	if len(comp.Candidates) != 1 || comp.Candidates[0].Word != "profile" {
		t.Fatalf("complete after no: %s", resp.Data)
	}
	resp = line(25, "do sh cl", true)
	json.Unmarshal(resp.Data, &comp)
	if len(comp.Candidates) != 1 || comp.Candidates[0].Word != "clock" {
		t.Fatalf("complete after do: %s", resp.Data)
	}
	resp = line(26, "end", false)
	if got, ok := ParseConfigState(&resp); !resp.OK || !ok || got != (ConfigState{}) {
		t.Fatalf("end: %+v", resp)
	}
	if len(*committed) != 1 || (*committed)[0] != "crypto gdoi group GET; server local; sa ipsec 1; no profile gdoi-p; profile gdoi-p2" {
		t.Fatalf("committed %q", *committed)
	}
	// The session is gone.
	resp = line(27, "exit", false)
	if !IsNoConfigSession(&resp) {
		t.Fatalf("after end: %+v", resp)
	}
	// abort discards.
	resp = r.roundTrip(t, `{"v":1,"id":30,"cmd":"configure terminal"}`)
	st, _ = ParseConfigState(&resp)
	resp = line(31, "abort", false)
	if got, ok := ParseConfigState(&resp); !ok || got.Session != "" || !strings.Contains(resp.Text, "discarded") {
		t.Fatalf("abort: %+v", resp)
	}
	if len(*committed) != 1 {
		t.Fatal("abort committed")
	}
}

// proves: P1
// proves: O2
func TestConfigShellSeedSessionOneConnection(t *testing.T) {
	s, committed := configServer(t)
	sh, out, errb := newShell(t, serve(t, s))
	cs := NewConfigShell(sh)
	ctx := context.Background()
	for _, step := range seedSession {
		if err := cs.RunCommand(ctx, step.line); err != nil {
			t.Fatalf("%q: %v %s", step.line, err, errb)
		}
		if cs.Mode() != step.mode {
			t.Fatalf("%q: mode %q, want %q", step.line, cs.Mode(), step.mode)
		}
	}
	if err := cs.Close(ctx); err != nil || len(*committed) != 1 || out.String() != EnterConfig {
		t.Fatalf("close %v, committed %q, out %q", err, *committed, out)
	}

	// A failure in configuration mode stops a script; Close discards.
	out.Reset()
	cs.RunCommand(ctx, "conf t")
	cs.RunCommand(ctx, "crypto gdoi group GET")
	if err := cs.RunCommand(ctx, "bogus"); !errors.Is(err, ErrFailed) || !strings.Contains(errb.String(), "groupvpn cli: bogus\n% unknown command \"bogus\"\n") {
		t.Fatalf("%v %q", err, errb)
	}
	if cs.Mode() != "(config-gdoi-group)" {
		t.Fatalf("mode after a refused line: %q", cs.Mode())
	}
	if err := cs.Close(ctx); !errors.Is(err, ErrUncommitted) || !strings.Contains(errb.String(), "changes were discarded") || len(*committed) != 1 {
		t.Fatalf("close: %v %q", err, errb)
	}

	// A script: exit in configuration mode goes up, not out.
	out.Reset()
	script := "show clock\nconf t\n! comment\ncrypto gdoi group GET\nexit\nexit\nshow clock\nexit\nshow never\n"
	if err := cs.RunScript(ctx, strings.NewReader(script)); err != nil {
		t.Fatal(err, errb)
	}
	if strings.Count(out.String(), "UTC") != 2 || len(*committed) != 2 || cs.Mode() != "" {
		t.Fatalf("script: %q %q", out, *committed)
	}
}

// proves: O2
func TestConfigShellInteractive(t *testing.T) {
	s, committed := configServer(t)
	sh, _, _ := newShell(t, serve(t, s))
	cs := NewConfigShell(sh)
	keys := strings.Join([]string{
		"conf t\r",
		"crypto gdoi group GET\r",
		"ser\tlocal\r", // TAB completes the mode's commands
		"sa ipsec 1\r",
		"no profile gdoi-p\r",
		"?",
		"profile gdoi-p2\r",
		"do show clock\r",
		"bogus\r",
		"prof\x1a", // Ctrl-Z: end
		"show clock\r",
		"conf t\r",
		"exit\r", // exit at the top leaves configuration mode
		"exit\r",
		"show never\r",
	}, "")
	tio := &termIO{in: strings.NewReader(keys)}
	if err := cs.Interactive(context.Background(), tio, 80, 24); err != nil {
		t.Fatal(err)
	}
	got := tio.String()
	for _, w := range []string{
		"Device#conf t\nEnter configuration commands, one per line.  End with CNTL/Z.\n",
		"Device(config)#crypto gdoi group GET\n",
		"server local\nDevice(gdoi-local-server)#",
		"Device(gdoi-local-server)#sa ipsec 1\n",
		"Device(gdoi-sa-ipsec)#no profile gdoi-p\n",
		"Device(gdoi-sa-ipsec)#?\n  abort",
		"Device(gdoi-sa-ipsec)#do show clock\n*09:15:15.527 UTC\n",
		"Device(gdoi-sa-ipsec)#bogus\n% unknown command \"bogus\"\n",
		"end \x1b[D\nDevice#show clock\n*09:15:15.527 UTC\n", // the line redrawn as "end"
		"Device(config)#exit\nDevice#exit\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("screen lacks %q", w)
		}
	}
	if len(*committed) != 2 || (*committed)[0] != "crypto gdoi group GET; server local; sa ipsec 1; no profile gdoi-p; profile gdoi-p2" {
		t.Errorf("committed %q", *committed)
	}
	if t.Failed() {
		t.Logf("screen:\n%s", got)
	}
}

// proves: O2 (issue 14 item 3: Ctrl-C no longer ends the shell, and with it
// `groupvpn lab --cli`: it abandons the line typed in EXEC mode, a question
// being asked, and ends configuration mode like Ctrl-Z)
func TestConfigShellCtrlCKeepsTheShell(t *testing.T) {
	s, committed := configServer(t)
	s.Handle("clear thing", "", func(_ context.Context, req *Request) (*Reply, error) {
		ok, err := req.Confirm("Are you sure you want to proceed ? [yes/no]: ")
		if err != nil || !ok {
			return nil, err
		}
		return &Reply{Text: "cleared\n"}, nil
	})
	sh, _, _ := newShell(t, serve(t, s))
	cs := NewConfigShell(sh)
	keys := strings.Join([]string{
		"show never\x03",    // EXEC: the line is abandoned, not run
		"clear thing\r\x03", // the question is abandoned
		"conf t\r",
		"crypto gdoi group GET\r",
		"prof\x03", // configuration mode: like Ctrl-Z, end
		"show clock\r",
		"exit\r",
		"show never\r",
	}, "")
	tio := &termIO{in: strings.NewReader(keys)}
	if err := cs.Interactive(context.Background(), tio, 80, 24); err != nil {
		t.Fatal(err)
	}
	got := tio.String()
	for _, w := range []string{
		"Are you sure you want to proceed ? [yes/no]: \n% Aborted\n",
		"end \x1b[D\nDevice#show clock\n*09:15:15.527 UTC\n",
		"Device#exit\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("screen lacks %q", w)
		}
	}
	if strings.Contains(got, "cleared") || strings.Contains(got, "% Invalid input") {
		t.Errorf("an abandoned line ran")
	}
	if len(*committed) != 1 || (*committed)[0] != "crypto gdoi group GET" {
		t.Errorf("committed %q", *committed)
	}
	if t.Failed() {
		t.Logf("screen:\n%s", got)
	}
}
