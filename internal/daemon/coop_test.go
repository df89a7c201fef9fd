package daemon_test

import (
	"context"
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
	return d, serve(t, d, filepath.Join(dir, "ks.sock"))
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
