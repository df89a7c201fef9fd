package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/version"
)

// seedDaemon runs the seed's key server with its control socket and
// returns a client of it.
func seedDaemon(t *testing.T) (*daemon.Daemon, *ctl.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cliios") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(file, []byte(seedKS), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ks.sock")
	client := serve(t, d, sock)
	return d, client
}

// proves: O2 (issue 14 item 3: configuration mode takes keywords
// abbreviated to a unique prefix, as IOS does: the seed's session typed
// short commits the same configuration; an ambiguous word is IOS's
// `% Ambiguous command:  "..."`, an unknown command `% Invalid input
// detected at '^' marker.` with the marker under it)
func TestConfigModeAbbreviations(t *testing.T) {
	d, client := seedDaemon(t)
	ctx := context.Background()
	var out, errb bytes.Buffer
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: &out, Err: &errb})
	for _, step := range []struct{ line, mode string }{
		{"conf t", "(config)"},
		{"cry gd gr GET", "(config-gdoi-group)"},
		{"ser loc", "(gdoi-local-server)"},
		{"sa ips 1", "(gdoi-sa-ipsec)"},
		{"no prof gdoi-p", "(gdoi-sa-ipsec)"},
		{"prof gdoi-p2", "(gdoi-sa-ipsec)"},
		{"rek life sec 7200", "(gdoi-local-server)"}, // a command of the enclosing mode
		{"en", ""},
	} {
		if err := cs.RunCommand(ctx, step.line); err != nil {
			t.Fatalf("Device%s#%s: %v\n%s", cs.Mode(), step.line, err, errb.String())
		}
		if cs.Mode() != step.mode {
			t.Fatalf("%q: prompt Device%s#, want Device%s#", step.line, cs.Mode(), step.mode)
		}
	}
	// do: an EXEC command, abbreviated and filtered, in configuration mode.
	out.Reset()
	for _, l := range []string{"conf t", "do sh run | i ^hostname", "end"} {
		if err := cs.RunCommand(ctx, l); err != nil {
			t.Fatal(l, err, errb.String())
		}
	}
	if out.String() != "Enter configuration commands, one per line.  End with CNTL/Z.\nhostname Device\n" {
		t.Errorf("do in configuration mode: %q", out.String())
	}
	run := d.Config().Render()
	for _, w := range []string{"   profile gdoi-p2\n", "  rekey lifetime seconds 7200\n"} {
		if !strings.Contains(run, w) {
			t.Errorf("running configuration lacks %q:\n%s", w, run)
		}
	}
	for _, c := range []struct{ line, stderr string }{
		// "re" in server local: redundancy or rekey.
		{"re", "groupvpn cli: re\n% Ambiguous command:  \"re\"\n"},
		{"rekey a", "groupvpn cli: rekey a\n% Ambiguous command:  \"rekey a\"\n"}, // address, algorithm, authentication
		{"bogus 1", "groupvpn cli: bogus 1\n" + strings.Repeat(" ", len("groupvpn cli: ")) + "^\n% Invalid input detected at '^' marker.\n% unknown command \"bogus\" in crypto gdoi group server local mode\n"},
	} {
		errb.Reset()
		for _, l := range []string{"conf t", "cry gd gr GET", "server local"} {
			if err := cs.RunCommand(ctx, l); err != nil {
				t.Fatal(err, errb.String())
			}
		}
		errb.Reset()
		if err := cs.RunCommand(ctx, c.line); err == nil || errb.String() != c.stderr {
			t.Errorf("%q: err %v, stderr %q, want %q", c.line, err, errb.String(), c.stderr)
		}
		cs.RunCommand(ctx, "abort")
	}
}

// termIO feeds keystrokes to the shell's terminal and collects what it
// draws (a pseudo-terminal without the kernel).
type termIO struct {
	in  io.Reader
	out testnet.Buffer
}

func (p *termIO) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *termIO) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *termIO) String() string              { return strings.ReplaceAll(p.out.String(), "\r\n", "\n") }

// waitScreen waits, woken by each write, until the screen shows what.
func (p *termIO) waitScreen(t *testing.T, what string) {
	t.Helper()
	if !p.out.WaitFor(10*time.Second, func(s string) bool { return strings.Contains(strings.ReplaceAll(s, "\r\n", "\n"), what) }) {
		t.Fatalf("screen lacks %q:\n%s", what, p.String())
	}
}

// proves: O2 (issue 14 item 3: `?` and TAB at any word, in configuration
// mode too, list the candidates of the next word with their help, IOS
// layout; TAB completes an abbreviated keyword beyond the first word)
func TestConfigModeHelpAndTabAtEveryWord(t *testing.T) {
	_, client := seedDaemon(t)
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: io.Discard, Err: io.Discard})
	keys := strings.Join([]string{
		"conf t\r",
		"crypto gdoi group GET\r",
		"server local\r",
		"rekey ?",
		"\x15",         // Ctrl-U: clear the line
		"rekey lif\t?", // TAB completes the second word, then ?
		"\x15",
		"rekey algorithm aes ?",
		"\x15",
		"cry\tgd\t?", // a command of an enclosing mode
		"\x15",
		"abort\r",
		"show crypto gdoi ?",
		"\x15",
		"exit\r",
	}, "")
	tio := &termIO{in: strings.NewReader(keys)}
	if err := cs.Interactive(context.Background(), tio, 200, 24); err != nil {
		t.Fatal(err)
	}
	got := tio.String()
	for _, w := range []string{
		"Device(gdoi-local-server)#rekey ?\n",
		"  address         Usage: rekey address ipv4 ACL\n",
		"  authentication  Usage: rekey authentication mypubkey {rsa | ec} LABEL\n",
		"Device(gdoi-local-server)#rekey lifetime ?\n  seconds  Usage: rekey lifetime seconds SECONDS\n",
		"Device(gdoi-local-server)#rekey algorithm aes ?\n  128  ",
		"  256  ",
		"Device(gdoi-local-server)#crypto gdoi ?\n  group  Usage: crypto gdoi group NAME\n",
		"Device#show crypto gdoi ?\n",
		"  ks ",
		"  <cr>",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("screen lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("screen:\n%s", got)
	}
}

// proves: O2 (issue 14 item 3: help text on every keyword: `?` after any
// keyword of any EXEC command, and of any configuration command of the
// seed's modes, shows help for every keyword it lists)
func TestEveryKeywordHasHelp(t *testing.T) {
	_, client := seedDaemon(t)
	ctx := context.Background()
	type completer func(line string) (*ctl.Completion, error)
	walk := func(name string, complete completer) int {
		n := 0
		var rec func(line string, depth int)
		rec = func(line string, depth int) {
			comp, err := complete(line)
			if err != nil {
				t.Fatalf("%s: %q?: %v", name, line, err)
			}
			for _, c := range comp.Candidates {
				if !c.Keyword {
					continue
				}
				n++
				if strings.TrimSpace(c.Help) == "" {
					t.Errorf("%s: %q? lists %q without help", name, line, c.Word)
				}
				if depth < 8 && !strings.HasPrefix(line+c.Word, "configure session") {
					rec(line+c.Word+" ", depth+1)
				}
			}
		}
		rec("", 0)
		return n
	}
	if n := walk("exec", func(line string) (*ctl.Completion, error) {
		comp, _, err := client.Complete(ctx, line)
		return comp, err
	}); n < 30 {
		t.Errorf("exec: only %d keywords walked", n)
	}
	resp, err := client.Do(ctx, &ctl.WireRequest{Cmd: "configure terminal"})
	if err != nil || !resp.OK {
		t.Fatal(err, resp)
	}
	st, _ := ctl.ParseConfigState(resp)
	cfg := func(input string, complete bool) *ctl.WireResponse {
		cmd := "configure session " + st.Session
		if complete {
			cmd += " complete"
		}
		r, err := client.Do(ctx, &ctl.WireRequest{Cmd: cmd, Input: input})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, enter := range []string{"", "crypto gdoi group GET", "server local", "sa ipsec 1", "crypto isakmp policy 10", "ip access-list extended traffic"} {
		if enter != "" {
			if r := cfg(enter, false); !r.OK {
				t.Fatalf("%s: %s", enter, r.Error)
			}
		}
		if n := walk("config "+enter, func(line string) (*ctl.Completion, error) {
			r := cfg(line, true)
			if !r.OK {
				return nil, errors.New(r.Error)
			}
			var c ctl.Completion
			return &c, json.Unmarshal(r.Data, &c)
		}); n < 5 {
			t.Errorf("config %s: only %d keywords walked", enter, n)
		}
	}
	cfg("abort", false)
}

// proves: O2 (issue 14 item 3: `terminal length 0` (the first command of
// RANCID, Oxidized and Netmiko) and `terminal width` are accepted, `show
// clock` and `show version` answer IOS-like (uptime, hostname), and
// `terminal monitor` shows the daemon's log lines in the session (here the
// CONFIG_I of a commit) until `terminal no monitor`)
func TestTerminalCommandsClockVersionMonitor(t *testing.T) {
	_, client := seedDaemon(t)
	ctx := context.Background()
	for _, c := range []struct {
		cmd  string
		want []string
	}{
		{"terminal length 0", nil},
		{"term width 511", nil},
		{"sh clock", []string{" UTC "}},
		{"show version", []string{"version " + version.Current.String(), "hostname Device\n", "Device uptime is 0 minutes\n"}},
	} {
		r, err := client.Do(ctx, &ctl.WireRequest{Cmd: c.cmd})
		if err != nil || !r.OK {
			t.Fatalf("%s: %v %+v", c.cmd, err, r)
		}
		for _, w := range c.want {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s lacks %q:\n%s", c.cmd, w, r.Text)
			}
		}
		if c.want == nil && r.Text != "" {
			t.Errorf("%s printed %q", c.cmd, r.Text)
		}
	}
	r, _ := client.Do(ctx, &ctl.WireRequest{Cmd: "show clock"})
	if _, err := time.Parse("15:04:05.000 MST Mon Jan 2 2006", strings.TrimSpace(r.Text)); err != nil {
		t.Errorf("show clock %q: %v", r.Text, err)
	}

	pr, pw := io.Pipe()
	tio := &termIO{in: pr}
	cs := ctl.NewConfigShell(&ctl.Shell{Client: client, Out: io.Discard, Err: io.Discard})
	done := make(chan error, 1)
	go func() { done <- cs.Interactive(ctx, tio, 200, 24) }()
	waitScreen := func(what string) {
		t.Helper()
		tio.waitScreen(t, what)
	}
	io.WriteString(pw, "term mon\r")
	waitScreen("Device#term mon\n")
	io.WriteString(pw, "conf t\rend\r")
	waitScreen(": %SYS-5-CONFIG_I: Configured from console by root on vty (pid ")
	io.WriteString(pw, "terminal no monitor\r")
	waitScreen("Device#terminal no monitor\n")
	time.Sleep(100 * time.Millisecond) // the stream is closed when the command returns
	io.WriteString(pw, "conf t\rend\rshow clock\r")
	waitScreen(" UTC ")
	io.WriteString(pw, "exit\r")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(tio.String(), "CONFIG_I"); n != 1 {
		t.Errorf("CONFIG_I shown %d times (terminal no monitor did not stop it?):\n%s", n, tio.String())
	}
}
