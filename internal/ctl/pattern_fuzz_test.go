package ctl_test

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
)

const fuzzGM = `hostname gm1
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key fuzz-secret address 127.0.0.1
crypto gdoi group G
 identity number 1
 server address ipv4 127.0.0.1
crypto map M 10 gdoi
 set group G
interface lo
 crypto map M
end
`

var (
	realOnce sync.Once
	realSrv  *ctl.Server
	realErr  error
)

// realServer is the control server of a daemon as isakmpd builds it: the
// real command table (the node is never run, and no handler is called).
func realServer(tb testing.TB) *ctl.Server {
	realOnce.Do(func() {
		var c *policy.Config
		c, realErr = policy.Parse("fuzz.conf", []byte(fuzzGM))
		if realErr != nil {
			return
		}
		var d *daemon.Daemon
		d, realErr = daemon.New(c, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, nil)
		if realErr == nil {
			realSrv = d.Ctl
		}
	})
	if realErr != nil {
		tb.Fatal(realErr)
	}
	return realSrv
}

// FuzzCommandMatch matches arbitrary command lines against the daemon's
// real command table, as the control socket does before it runs a handler.
//
// proves: S4 (issue 11: a fuzz target for the command patterns: no panic;
// a matched line names a registered pattern and binds words in full that
// match it again; an error's '^' is inside the line)
func FuzzCommandMatch(f *testing.F) {
	s := realServer(f)
	for _, p := range s.Patterns() {
		f.Add(p)
	}
	for _, l := range []string{
		"sh cry gd ks mem", "sh cry gd", "show crypto gdoi ks members | include 10.0",
		"clear crypto gdoi group G ks members now", "cle cry gd ks m n",
		"crypto gdoi ks group G rekey replace-now", "show crypto isakmp sa | json",
		"configure terminal", "conf t", "configure session ABCDEF complete", "write", "wr mem",
		"sh", "s", "show crypto gdoi foo", "show  crypto\tgdoi\r", "| include x", "",
		"show version extra words here", "show crypto gdoi group " + strings.Repeat("G", 300),
	} {
		f.Add(l)
	}
	known := map[string]bool{}
	for _, p := range s.Patterns() {
		known[p] = true
	}
	f.Fuzz(func(t *testing.T, line string) {
		if len(line) > ctl.MaxRequest {
			return
		}
		req, pos, err := s.Match(line)
		if err != nil {
			if pos < -1 || pos > len(line) {
				t.Fatalf("'^' at %d outside %q", pos, line)
			}
			return
		}
		if !known[req.Command] {
			t.Fatalf("%q matched %q, which is not registered", line, req.Command)
		}
		for _, p := range req.Params {
			if req.Args[p.Name] != p.Value {
				t.Fatalf("param %+v but Args[%q] = %q", p, p.Name, req.Args[p.Name])
			}
		}
		// The words in full, placeholders as typed, match the same command.
		if strings.ContainsAny(line, "|") || len(req.Params) > 0 {
			return // a placeholder's value may itself be a keyword
		}
		again, _, err := s.Match(strings.Join(req.Words, " "))
		if err != nil || again.Command != req.Command {
			t.Fatalf("%q matched %q; its words %q match %v, %v", line, req.Command, req.Words, again, err)
		}
	})
}
