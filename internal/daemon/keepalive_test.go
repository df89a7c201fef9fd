package daemon_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/policy"
)

// proves: O1 (issue 14 item 2: keepalive) — crypto isakmp keepalive
// reaches the node's endpoints, show running-config prints it, and a
// reload changes it live (on, periodic, on-demand, off); a reload that
// also changes what cannot change live is refused whole and leaves the
// keepalive in force.
func TestReloadAppliesKeepalive(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gm.conf")
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(gmFailClose+extra), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("crypto isakmp keepalive 30\n")
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := daemon.Options(cfg, nil, 848); err != nil || o.IKE.DPD != (ike.DPD{Interval: 30 * time.Second, Retry: 2 * time.Second}) {
		t.Fatalf("node options: %+v %v", o.IKE.DPD, err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 24998, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, "") }()
	t.Cleanup(func() { cancel(); <-done })
	inForce := func() ike.DPD {
		var x ike.DPD
		d.Node.Do(ctx, func() { x = d.Node.DPD() })
		return x
	}
	for _, c := range []struct {
		line string
		want ike.DPD
	}{
		{"crypto isakmp keepalive 10 3 periodic", ike.DPD{Interval: 10 * time.Second, Retry: 3 * time.Second, Periodic: true}},
		{"crypto isakmp keepalive 10 on-demand", ike.DPD{Interval: 10 * time.Second, Retry: 2 * time.Second}},
		{"", ike.DPD{}},
		{"crypto isakmp keepalive 20 5", ike.DPD{Interval: 20 * time.Second, Retry: 5 * time.Second}},
	} {
		write(c.line + "\n")
		if err := d.Reload(); err != nil {
			t.Fatalf("reload %q: %v", c.line, err)
		}
		if got := inForce(); got != c.want {
			t.Fatalf("after %q: %+v in force, want %+v", c.line, got, c.want)
		}
		if out := d.Config().Render(); c.line != "" && !strings.Contains(out, strings.TrimSuffix(c.line, " on-demand")+"\n") {
			t.Fatalf("after %q, show running-config:\n%s", c.line, out)
		}
	}
	running := d.Config()
	if err := os.WriteFile(file, []byte(strings.Replace(gmFailClose, "127.0.9.9", "127.0.9.8", 1)+"crypto isakmp keepalive 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "server address ipv4 would change") {
		t.Fatalf("reload with another key server: %v", err)
	}
	if d.Config() != running || inForce() != (ike.DPD{Interval: 20 * time.Second, Retry: 5 * time.Second}) {
		t.Fatalf("a refused reload changed the keepalive: %+v", inForce())
	}
}
