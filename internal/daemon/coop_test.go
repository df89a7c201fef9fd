package daemon_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// coopRedundancy is the redundancy block of the cooperative test KS: a
// peer that never answers (nothing listens on 127.0.0.2 in these tests)
// and an election wait long enough for the KS to stay a secondary while
// a test runs.
const coopRedundancy = "  redundancy\n   local priority 10\n   peer address ipv4 127.0.0.2\n   timers election-wait 3600\n"

// runningConfigKS starts a key server with src (rekey.pem beside it) and
// its control socket.
func runningConfigKS(t *testing.T, src string) (*daemon.Daemon, *ctl.Client) {
	t.Helper()
	d, c, _ := runningConfigKSFile(t, src)
	return d, c
}

// runningConfigKSFile is runningConfigKS, also returning the file.
func runningConfigKSFile(t *testing.T, src string) (*daemon.Daemon, *ctl.Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "coop") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(file, []byte(src), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d, serve(t, d, filepath.Join(dir, "ks.sock")), file
}

func coopSeedKS(t *testing.T) string {
	t.Helper()
	at := "  address ipv4 127.0.0.1\n"
	if !strings.Contains(seedKS, at) {
		t.Fatalf("seedKS lacks %q", at)
	}
	return strings.Replace(seedKS, at, at+coopRedundancy, 1)
}

// proves: C1 (issue 16: `show crypto gdoi ks coop` on the control socket:
// a lone KS says COOP is not configured; a cooperative one shows its
// group in IOS's layout with its peer, and `show crypto gdoi` its
// Redundancy lines)
func TestShowCOOPOnTheControlSocket(t *testing.T) {
	ctx := context.Background()
	_, lone := runningConfigKS(t, seedKS)
	r, err := lone.Run(ctx, "show crypto gdoi ks coop")
	if err != nil || !r.OK || r.Text != "% COOP is not configured for any group\n" {
		t.Fatalf("lone KS: %v %+v", err, r)
	}

	_, c := runningConfigKS(t, coopSeedKS(t))
	r, err = c.Run(ctx, "show crypto gdoi ks coop")
	if err != nil || !r.OK {
		t.Fatalf("cooperative KS: %v %+v", err, r)
	}
	for _, want := range []string{
		"Crypto Gdoi Group Name :GET\n",
		"        Local Address: 127.0.0.1\n",
		"        Local Priority: 10\n",
		"                Peer Address: 127.0.0.2\n",
		"                Peer Version: unknown\n",
		", Peer KS Status: Dead\n",
	} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("show crypto gdoi ks coop lacks %q:\n%s", want, r.Text)
		}
	}
	if !strings.Contains(r.Text, "        Local KS Role: Secondary , Local KS Status: Alive\n") &&
		!strings.Contains(r.Text, "        Local KS Role: Electing  , Local KS Status: Alive\n") {
		t.Errorf("a KS waiting for its election is not a secondary:\n%s", r.Text)
	}
	r, err = c.Run(ctx, "show crypto gdoi")
	if err != nil || !r.OK || !strings.Contains(r.Text, "    Redundancy               : Configured\n        Local Address        : 127.0.0.1\n        Local Priority       : 10\n        Local KS Status      : Alive\n        Local KS Role        : ") {
		t.Fatalf("show crypto gdoi: %v\n%s", err, r.Text)
	}
	r, err = c.Run(ctx, "show crypto gdoi ks coop | json")
	if err != nil || !r.OK || !strings.Contains(r.Text, `"local_priority": 10`) || !strings.Contains(r.Text, `"status": "dead"`) {
		t.Fatalf("show crypto gdoi ks coop | json: %v\n%s", err, r.Text)
	}
}

// proves: R6, P5 (issue 16: on a key server that the COOP election has
// not made primary, `clear crypto gdoi ks members [now]` and `crypto gdoi
// ks rekey [replace-now]` are refused on the control socket with the
// SPEC's texts, verbatim, before any prompt), V3 (the feature table lists
// the peer KS, its version unknown)
func TestSecondaryRefusesRemovalAndRekey(t *testing.T) {
	ctx := context.Background()
	_, c := runningConfigKS(t, coopSeedKS(t))
	for cmd, want := range map[string]string{
		"clear crypto gdoi ks members":               "ERROR for group GET: can only execute this command on Primary KS",
		"clear crypto gdoi ks members now":           "ERROR for group GET: can only execute this command on Primary KS",
		"clear crypto gdoi group GET ks members":     "ERROR for group GET: can only execute this command on Primary KS",
		"crypto gdoi ks rekey":                       "ERROR for group GET: This command must be executed on Pri-KS",
		"crypto gdoi ks rekey replace-now":           "ERROR for group GET: This command must be executed on Pri-KS",
		"crypto gdoi ks group GET rekey replace-now": "ERROR for group GET: This command must be executed on Pri-KS",
	} {
		r, err := c.Run(ctx, cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if r.OK || r.Token != "" || r.Error != want {
			t.Errorf("%s: ok=%v token=%q error %q, want %q", cmd, r.OK, r.Token, r.Error, want)
		}
	}
	r, err := c.Run(ctx, "show crypto gdoi feature gm-removal")
	if err != nil || !r.OK || !strings.Contains(r.Text, "          127.0.0.2         unknown         No\n") {
		t.Fatalf("show crypto gdoi feature gm-removal: %v\n%s", err, r.Text)
	}
	// The lone KS is primary: the same commands ask for confirmation.
	_, lone := runningConfigKS(t, seedKS)
	if r, err := lone.Run(ctx, "clear crypto gdoi ks members"); err != nil || r.Token == "" {
		t.Fatalf("lone KS: clear crypto gdoi ks members: %v %+v", err, r)
	}
}

// proves: C1 (issue 16: a reload that changes the redundancy block, the
// priority and a peer added, is applied live: show crypto
// gdoi ks coop shows the new values; one that removes redundancy is
// refused with the reason, and the running configuration and the node
// stay as they were)
func TestReloadRedundancyBlock(t *testing.T) {
	ctx := context.Background()
	src := coopSeedKS(t)
	d, c, file := runningConfigKSFile(t, src)
	changed := strings.Replace(src, "   local priority 10\n   peer address ipv4 127.0.0.2\n",
		"   local priority 42\n   peer address ipv4 127.0.0.2\n   peer address ipv4 127.0.0.3\n   timers announce 5\n", 1)
	if changed == src {
		t.Fatal("the redundancy block was not changed")
	}
	if err := os.WriteFile(file, []byte(changed), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("Reload of a changed redundancy block: %v", err)
	}
	r, err := c.Run(ctx, "show crypto gdoi ks coop")
	if err != nil || !r.OK {
		t.Fatalf("show crypto gdoi ks coop: %v %+v", err, r)
	}
	for _, want := range []string{"        Local Priority: 42\n", "                Peer Address: 127.0.0.3\n"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("after the reload, show crypto gdoi ks coop lacks %q:\n%s", want, r.Text)
		}
	}
	if r, err := c.Run(ctx, "show running-config"); err != nil || !strings.Contains(r.Text, "   local priority 42\n") {
		t.Fatalf("show running-config: %v\n%s", err, r.Text)
	}

	// Removing redundancy is refused; nothing changes.
	cfg := d.Config()
	i := strings.Index(changed, "  redundancy\n")
	j := strings.Index(changed, "  sa ipsec 1\n")
	if i < 0 || j < i {
		t.Fatal("no redundancy block")
	}
	if err := os.WriteFile(file, []byte(changed[:i]+changed[j:]), 0o640); err != nil {
		t.Fatal(err)
	}
	err = d.Reload()
	var na *daemon.NotAppliedError
	if !errors.As(err, &na) || !na.Restart || !strings.Contains(err.Error(), "crypto gdoi group GET: redundancy would be removed (the node serves the group as a cooperative key server)") {
		t.Fatalf("Reload removing redundancy: %v", err)
	}
	unchanged(t, d, c, cfg, file)
	if r, err := c.Run(ctx, "show crypto gdoi ks coop"); err != nil || !strings.Contains(r.Text, "        Local Priority: 42\n") {
		t.Fatalf("after the refused reload: %v\n%s", err, r.Text)
	}
}
