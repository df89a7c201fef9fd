package daemon_test

import (
	"context"
	"log/slog"
	"net"
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
// priority, a peer added and the timers, is applied live: show crypto
// gdoi ks coop shows the new values; a redundancy change the
// configuration refuses (the KS's own address as a peer, a dead interval
// not above the period) is refused by the reload with file:line and the
// running configuration and the node stay as they were; removing
// redundancy, then adding it back, is applied live)
func TestReloadRedundancyBlock(t *testing.T) {
	ctx := context.Background()
	src := coopSeedKS(t)
	d, c, file := runningConfigKSFile(t, src)
	reload := func(text string) error {
		t.Helper()
		if err := os.WriteFile(file, []byte(text), 0o640); err != nil {
			t.Fatal(err)
		}
		return d.Reload()
	}
	coopText := func() string {
		t.Helper()
		r, err := c.Run(ctx, "show crypto gdoi ks coop")
		if err != nil || !r.OK {
			t.Fatalf("show crypto gdoi ks coop: %v %+v", err, r)
		}
		return r.Text
	}
	changed := strings.Replace(src, "   local priority 10\n   peer address ipv4 127.0.0.2\n",
		"   local priority 42\n   peer address ipv4 127.0.0.2\n   peer address ipv4 127.0.0.3\n   timers announce 5\n", 1)
	if changed == src {
		t.Fatal("the redundancy block was not changed")
	}
	if err := reload(changed); err != nil {
		t.Fatalf("Reload of a changed redundancy block: %v", err)
	}
	text := coopText()
	for _, want := range []string{"        Local Priority: 42\n", "                Peer Address: 127.0.0.3\n", "                Announcement Period: 5 secs\n", "                Dead Interval: 15 secs\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("after the reload, show crypto gdoi ks coop lacks %q:\n%s", want, text)
		}
	}

	// What the configuration refuses is refused by the reload; nothing changes.
	cfg := d.Config()
	for _, bad := range []struct{ from, to, reason string }{
		{"   peer address ipv4 127.0.0.3\n", "   peer address ipv4 127.0.0.1\n", "peer address ipv4 127.0.0.1 is this key server's own address"},
		{"   timers announce 5\n", "   timers announce 5\n   timers dead 5\n", "redundancy: timers dead 5 must be longer than timers announce 5"},
	} {
		err := reload(strings.Replace(changed, bad.from, bad.to, 1))
		if err == nil || !strings.Contains(err.Error(), bad.reason) || !strings.Contains(err.Error(), "ks.conf:") {
			t.Fatalf("Reload with %q: %v, want a refusal with file:line and %q", bad.to, err, bad.reason)
		}
		if err := os.WriteFile(file, []byte(cfg.Render()), 0o640); err != nil {
			t.Fatal(err)
		}
		unchanged(t, d, c, cfg, file)
		if text := coopText(); !strings.Contains(text, "        Local Priority: 42\n") || strings.Contains(text, "Peer Address: 127.0.0.1\n") {
			t.Fatalf("the node changed after a refused reload:\n%s", text)
		}
	}

	// Removing redundancy makes the KS the group's lone primary; adding
	// it back starts COOP again.
	i := strings.Index(changed, "  redundancy\n")
	j := strings.Index(changed, "  sa ipsec 1\n")
	if i < 0 || j < i {
		t.Fatal("no redundancy block")
	}
	if err := reload(changed[:i] + changed[j:]); err != nil {
		t.Fatalf("Reload removing redundancy: %v", err)
	}
	if text := coopText(); text != "% COOP is not configured for any group\n" {
		t.Fatalf("after removing redundancy: %q", text)
	}
	if r, err := c.Run(ctx, "show crypto gdoi"); err != nil || !strings.Contains(r.Text, "    Redundancy               : Not configured\n") {
		t.Fatalf("show crypto gdoi after removing redundancy: %v\n%s", err, r.Text)
	}
	if err := reload(changed); err != nil {
		t.Fatalf("Reload adding redundancy back: %v", err)
	}
	if text := coopText(); !strings.Contains(text, "        Local Priority: 42\n") {
		t.Fatalf("after adding redundancy back:\n%s", text)
	}
}

// proves: R5, V3, C1 (issue 16: a cooperative KS whose peer never answers
// elects itself primary after its election wait; on it `clear crypto gdoi
// ks members` then gives the SPEC R5 warning after the first
// confirmation, because a key server of the group (the peer, its version
// unknown) is not known to support GM removal; answering no sends
// nothing)
func TestPrimaryWarnsOfPeerVersions(t *testing.T) {
	ctx := context.Background()
	src := strings.Replace(coopSeedKS(t), "   timers election-wait 3600\n", "   timers election-wait 1\n", 1)
	_, c := runningConfigKS(t, src)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := c.Run(ctx, "show crypto gdoi ks coop")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(r.Text, "        Local KS Role: Primary   , Local KS Status: Alive\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the KS did not elect itself primary:\n%s", r.Text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, err := c.Run(ctx, "show crypto gdoi")
	if err != nil || !strings.Contains(r.Text, "        Local KS Role        : Primary\n") {
		t.Fatalf("show crypto gdoi: %v\n%s", err, r.Text)
	}
	r, err = c.Run(ctx, "clear crypto gdoi ks members")
	if err != nil || r.Token == "" || !strings.HasPrefix(r.Prompt, "% This GM-Removal message will shorten") {
		t.Fatalf("first prompt: %v %+v", err, r)
	}
	r, err = c.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: "clear crypto gdoi ks members", Token: r.Token, Answer: "yes"})
	want := "WARNING for group GET: some devices cannot support GM-REMOVAL and can cause network disruption. Please check 'show crypto gdoi feature'.\nAre you sure you want to proceed ? [yes/no]: "
	if err != nil || r.Token == "" || r.Prompt != want {
		t.Fatalf("second prompt: %v %+v, want the R5 warning", err, r)
	}
	r, err = c.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: "clear crypto gdoi ks members", Token: r.Token, Answer: "no"})
	if err != nil || strings.Contains(r.Text, "Sending GM-Removal") {
		t.Fatalf("after no: %v %+v", err, r)
	}
}

// coopPair starts two cooperative key servers of group GET on 127.0.0.1
// (priority 100) and 127.0.0.2 (priority 50), the same port, sharing the
// rekey key, with short timers; it returns their control clients.
func coopPair(t *testing.T) (ks1, ks2 *ctl.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "coop2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem")) // one key, both KSs (docs/config.md)
	port := freeUDPPort(t)
	start := func(name, self, peer, prio string) *ctl.Client {
		at := "  address ipv4 127.0.0.1\n"
		src := strings.Replace(seedKS, at, "  address ipv4 "+self+"\n  redundancy\n   local priority "+prio+"\n   peer address ipv4 "+peer+
			"\n   timers announce 1\n   timers dead 3\n   timers election-wait 1\n", 1)
		// The peer KS's own key (docs/coop.md "Peer authorization").
		src = strings.Replace(src, "crypto gdoi group", "crypto isakmp key coop-pair address "+peer+"\ncrypto gdoi group", 1)
		file := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(file, []byte(src), 0o640); err != nil {
			t.Fatal(err)
		}
		cfg, err := policy.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		d, err := daemon.New(cfg, []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(self), port)}, port, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return serve(t, d, filepath.Join(dir, name+".sock"))
	}
	return start("ks1", "127.0.0.1", "127.0.0.2", "100"), start("ks2", "127.0.0.2", "127.0.0.1", "50")
}

// freeUDPPort is a UDP port free on 127.0.0.1 and 127.0.0.2 a moment ago.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
		a.Close()
		if err == nil {
			b.Close()
			return uint16(port)
		}
	}
	t.Fatal("no UDP port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

// waitShow runs cmd on c until its output contains every one of want.
func waitShow(t *testing.T, c *ctl.Client, cmd string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.Run(context.Background(), cmd)
		if err != nil {
			t.Fatal(err)
		}
		ok := r.OK
		for _, w := range want {
			ok = ok && strings.Contains(r.Text, w)
		}
		if ok {
			return r.Text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s%s", cmd, want, r.Text, r.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// proves: C1, V3, R6, P5 (issue 16: two key servers elect over real
// KS-KS SAs on loopback: on the control sockets the priority-100 KS shows
// itself Primary and its peer Secondary and alive with the version it
// announced, the other the reverse; show crypto gdoi feature lists both
// KSs' versions; the secondary refuses removal and rekey with the SPEC
// texts while the primary asks for confirmation)
func TestTwoKeyServersShowTheirElection(t *testing.T) {
	ks1, ks2 := coopPair(t)
	v := version.Current.String()
	waitShow(t, ks1, "show crypto gdoi ks coop",
		"        Local KS Role: Primary   , Local KS Status: Alive\n",
		"                Peer Address: 127.0.0.2\n                Peer Version: "+v+"\n                Peer Priority: 50\n                Peer KS Role: Secondary , Peer KS Status: Alive\n")
	waitShow(t, ks2, "show crypto gdoi ks coop",
		"        Local KS Role: Secondary , Local KS Status: Alive\n",
		"        Primary KS: 127.0.0.1\n",
		"                Peer Address: 127.0.0.1\n                Peer Version: "+v+"\n                Peer Priority: 100\n                Peer KS Role: Primary   , Peer KS Status: Alive\n")
	waitShow(t, ks2, "show crypto gdoi", "        Local KS Role        : Secondary\n        Local KS Version     : "+v+"\n")
	waitShow(t, ks1, "show crypto gdoi feature policy-replace",
		"          127.0.0.1         "+v+"           Yes\n          127.0.0.2         "+v+"           Yes\n")

	ctx := context.Background()
	if r, err := ks2.Run(ctx, "clear crypto gdoi ks members"); err != nil || r.Error != "ERROR for group GET: can only execute this command on Primary KS" {
		t.Errorf("secondary: clear crypto gdoi ks members: %v %+v", err, r)
	}
	if r, err := ks2.Run(ctx, "crypto gdoi ks rekey"); err != nil || r.Error != "ERROR for group GET: This command must be executed on Pri-KS" {
		t.Errorf("secondary: crypto gdoi ks rekey: %v %+v", err, r)
	}
	if r, err := ks1.Run(ctx, "clear crypto gdoi ks members"); err != nil || r.Token == "" {
		t.Errorf("primary: clear crypto gdoi ks members: %v %+v", err, r)
	}
}
