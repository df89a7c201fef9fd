package daemon_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// fcReload is a member whose key server never answers (nothing listens on
// 127.0.9.9), fail-close with a fail-close ACL: %s is the ACL's entries,
// %s the fail-close block's sub-commands.
const fcReload = `hostname gm
crypto isakmp policy 10
 authentication pre-share
crypto isakmp key k address 127.0.0.0 255.0.0.0
ip access-list extended FC
%s
crypto gdoi group G
 identity number 7
 server address ipv4 127.0.9.9
crypto map m 10 gdoi
 set group G
crypto map m gdoi fail-close
%s
interface lo
 crypto map m
`

// policyText is a policy as one line per entry.
func policyText(p []sadb.PolicyEntry) string {
	var b []string
	for _, e := range p {
		b = append(b, fmt.Sprintf("%s %d %s:%d %s:%d", e.Action, e.IPProto, e.Src, e.SrcPort, e.Dst, e.DstPort))
	}
	return strings.Join(b, "\n")
}

// proves: T3, D4 (issue 12: fail-close drops before registration) — a
// reload applies a changed fail-close ACL to the bootstrap policy of a
// member that has not registered yet; a fail-close ACL with a permit entry
// is refused with the parser's line and reason and changes nothing;
// `no activate` removes the bootstrap (fail-open: nothing is covered
// without a key server's policy), `activate` brings it back.
func TestReloadFailCloseACL(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gm.conf")
	write := func(acl, block string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(fmt.Sprintf(fcReload, acl, block)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(" deny tcp any any eq 22", " match address FC\n activate")
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 24999, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })
	state := func() (string, sadb.FailMode) {
		var p []sadb.PolicyEntry
		var m sadb.FailMode
		d.Node.Do(ctx, func() {
			db := d.Node.Dataplane().(*sadb.Memory)
			p, m = db.Policy("G"), db.FailMode("G")
		})
		return policyText(p), m
	}
	const control = "deny 17 0.0.0.0/0:0 127.0.9.9/32:24999\ndeny 17 127.0.9.9/32:24999 0.0.0.0/0:0\n"
	const all = "\npermit 0 0.0.0.0/0:0 0.0.0.0/0:0"
	if p, m := state(); p != control+"deny 6 0.0.0.0/0:0 0.0.0.0/0:22"+all || m != sadb.FailClose {
		t.Fatalf("at start: %v\n%s", m, p)
	}

	write(" deny tcp any any eq 22\n deny 89 any any", " match address FC\n activate")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	want := control + "deny 6 0.0.0.0/0:0 0.0.0.0/0:22\ndeny 89 0.0.0.0/0:0 0.0.0.0/0:0" + all
	if p, _ := state(); p != want {
		t.Fatalf("after the ACL change:\n%s\nwant\n%s", p, want)
	}

	running := d.Config()
	write(" deny tcp any any eq 22\n permit ip any any", " match address FC\n activate")
	err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), `gm.conf:14: crypto map m gdoi fail-close: match address FC: entry "20 permit ip any any" (line 7) is a permit entry; a fail-close access list takes deny entries only`) {
		t.Fatalf("reload with a permit entry: %v", err)
	}
	if p, _ := state(); d.Config() != running || p != want {
		t.Fatalf("a refused reload changed something:\n%s", p)
	}

	write(" deny tcp any any eq 22", " match address FC")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, m := state(); p != "" || m != sadb.FailOpen {
		t.Fatalf("after no activate: %v\n%s", m, p)
	}
	write(" deny tcp any any eq 22", " activate")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, m := state(); p != strings.TrimSuffix(control, "\n")+all || m != sadb.FailClose {
		t.Fatalf("activate without a fail-close ACL: %v\n%s", m, p)
	}
}
