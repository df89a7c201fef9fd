package ikev2d

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
)

// isakmpdKS is a GDOI key server for group G2 (the name ksGroup gives the
// G-IKEv2 one), so that both daemons' texts name the same group.
const isakmpdKS = `hostname Device
crypto isakmp policy 10
 encryption aes 128
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key seed-secret address 127.0.0.0 255.0.0.0
crypto key import ec REKEY file rekey.pem
ip access-list extended traffic
 permit ip 10.70.0.0 0.0.255.255 10.70.0.0 0.0.255.255
crypto ipsec transform-set ts-cbc esp-aes 128 esp-sha-hmac
crypto ipsec profile gdoi-p
 set transform-set ts-cbc
crypto gdoi group G2
 identity number 1111
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 127.0.0.1
  sa ipsec 1
   profile gdoi-p
   match address ipv4 traffic
end
`

// ctlClient serves srv on a control socket in dir until the test ends.
func ctlClient(t *testing.T, dir, name string, serve func(context.Context, net.Listener) error) *ctl.Client {
	t.Helper()
	sock := filepath.Join(dir, name)
	ln, err := ctl.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	c, err := ctl.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange runs cmd and answers its prompts in order; it returns every
// response (each prompt, then the result).
func exchange(t *testing.T, c *ctl.Client, cmd string, answers ...string) []*ctl.WireResponse {
	t.Helper()
	ctx := context.Background()
	r, err := c.Run(ctx, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	out := []*ctl.WireResponse{r}
	for r.Token != "" {
		if len(answers) == 0 {
			return out
		}
		if r, err = c.Do(ctx, &ctl.WireRequest{V: ctl.Version, Cmd: cmd, Token: r.Token, Answer: answers[0]}); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		answers = answers[1:]
		out = append(out, r)
	}
	return out
}

// proves: R1, P2 for G-IKEv2 groups (issue 17). On ikev2d's control
// socket `clear crypto gdoi [group NAME] ks members [now]` asks isakmpd's
// questions (the removal and the immediate-removal prompt, IOS's "Please
// answer" on anything but yes/no), a "no" leaves the group alone, a "yes"
// prints isakmpd's line and the G-IKEv2 member registers again; `crypto
// gdoi ks rekey [replace-now]` prints isakmpd's line; an unknown group is
// refused with isakmpd's text (ikev2d read the group from the wrong
// argument before and acted on every group). Each exchange is compared
// byte for byte with isakmpd's for the same command; `show crypto gdoi
// feature gm-removal` lists the G-IKEv2 member as supporting it, so no
// mixed-version warning is asked.
func TestCLIRemovalReplaceTextsAsIsakmpd(t *testing.T) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "v2cli") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	// isakmpd, a GDOI KS of group G2.
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	file := filepath.Join(dir, "ks.conf")
	if err := os.WriteFile(file, []byte(isakmpdKS), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var v1logs testnet.Buffer
	d, err := daemon.New(cfg, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, 0, slog.New(slog.NewTextHandler(&v1logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	v1 := ctlClient(t, dir, "isakmpd.sock", d.Serve)

	// ikev2d, a G-IKEv2 KS of group G2 with one registered member.
	var logs testnet.Buffer
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: []netip.AddrPort{kr.Addrs()[0]}, Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:0")}, Dataplane: sadb.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	run(t, gr)
	srv := ctl.NewServer(logger)
	kr.Serve(srv)
	v2 := ctlClient(t, dir, "ikev2d.sock", srv.ServeListener)
	registrations := func() uint64 {
		var n uint64
		gr.Do(ctx, func() {
			if ms := gr.Members(); len(ms) == 1 && ms[0].Registered {
				n = ms[0].Registrations
			}
		})
		return n
	}
	waitFor(t, "GM registration", func() bool { return registrations() == 1 })

	// The member supports both features: Yes, and its version is unknown
	// (G-IKEv2 carries none).
	for _, f := range []string{"gm-removal", "policy-replace"} {
		r := exchange(t, v2, "show crypto gdoi feature "+f)[0]
		if !r.OK || !strings.Contains(r.Text, "Group Name: G2") || !strings.Contains(r.Text, "127.0.0.3         unknown         Yes") ||
			strings.Contains(r.Text, " No\n") {
			t.Fatalf("show crypto gdoi feature %s on ikev2d:\n%+v", f, r)
		}
	}

	same := func(cmd string, answers ...string) []*ctl.WireResponse {
		t.Helper()
		a, b := exchange(t, v1, cmd, answers...), exchange(t, v2, cmd, answers...)
		if len(a) != len(b) {
			t.Fatalf("%s %q: isakmpd answered %d times, ikev2d %d", cmd, answers, len(a), len(b))
		}
		for i := range a {
			if a[i].OK != b[i].OK || a[i].Prompt != b[i].Prompt || a[i].Text != b[i].Text || a[i].Error != b[i].Error {
				t.Fatalf("%s %q, response %d:\nisakmpd %+v\nikev2d  %+v", cmd, answers, i, a[i], b[i])
			}
		}
		return b
	}
	r := same("clear crypto gdoi ks members", "maybe", "no")
	if len(r) != 3 || !strings.Contains(r[0].Prompt, "GM-Removal message will shorten") || !strings.HasPrefix(r[1].Prompt, "% Please answer 'yes' or 'no'.") || !r[2].OK || r[2].Text != "" {
		t.Fatalf("removal answered no: %+v", r)
	}
	same("clear crypto gdoi ks members now") // the immediate prompt, unanswered
	r = same("clear crypto gdoi group NOPE ks members now", "yes")
	if len(r) != 1 || r[0].OK || !strings.Contains(r[0].Error, "group NOPE is not served by this key server") {
		t.Fatalf("unknown group: %+v", r)
	}
	if n := registrations(); n != 1 {
		t.Fatalf("the member registered %d times before any removal was confirmed", n)
	}
	r = same("clear crypto gdoi group g2 ks members now", "yes")
	if last := r[len(r)-1]; !last.OK || last.Text != "Sending GM-Removal message to group G2...\n" {
		t.Fatalf("removal: %+v", r)
	}
	waitFor(t, "the removed member registering again", func() bool { return registrations() == 2 })
	r = same("crypto gdoi ks rekey")
	if !r[0].OK || r[0].Text != "Rekey with policy-replace sent for group G2\n" {
		t.Fatalf("rekey: %+v", r)
	}
	same("crypto gdoi ks group G2 rekey replace-now")
	// Both audit the same commands with the same lines (O6; ctl tells
	// the audit of every state-changing command that ran, answered no or
	// refused included).
	const audited = "CFGLOG_LOGGEDCMD: User:"
	auditOf := func(l *testnet.Buffer) []string {
		var lines []string
		for _, line := range strings.Split(l.String(), "\n") {
			if i := strings.Index(line, audited); i >= 0 {
				lines = append(lines, line[i:])
			}
		}
		return lines
	}
	a1, a2 := auditOf(&v1logs), auditOf(&logs)
	if !slices.Equal(a1, a2) || !slices.ContainsFunc(a2, func(s string) bool {
		return strings.Contains(s, "logged command:clear crypto gdoi group g2 ks members now")
	}) {
		t.Fatalf("audit lines:\nisakmpd %q\nikev2d  %q", a1, a2)
	}
	// isakmpd's log line of a rekey, from ks.
	waitFor(t, "KS_SEND_UNICAST_REKEY logged", func() bool {
		return strings.Contains(logs.String(), "Sending Unicast Rekey with policy-replace for group G2 from address 127.0.0.1")
	})
}

// proves: R1 for G-IKEv2 groups (issue 17: without `group NAME` the
// removal asks about every group before it removes any, since ctl runs
// the handler again for each answer; "yes" then "no" removes the first
// group once and leaves the second alone)
func TestCLIRemovalAsksEveryGroupFirst(t *testing.T) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "v2cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g3 := ksGroup(t)
	g3.Name, g3.ID = "G3", 91
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t), g3}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	srv := ctl.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	kr.Serve(srv)
	c := ctlClient(t, dir, "ikev2d.sock", srv.ServeListener)
	seqs := func() (a, b uint32) {
		kr.Do(ctx, func() { a, b = kr.Server().Seq("G2"), kr.Server().Seq("G3") })
		return a, b
	}
	a0, b0 := seqs()
	r := exchange(t, c, "clear crypto gdoi ks members", "yes", "no")
	if len(r) != 3 || !r[2].OK || r[2].Text != daemon.RemovalSent("G2") {
		t.Fatalf("removal of G2, not G3: %+v", r[len(r)-1])
	}
	if a, b := seqs(); a != a0+1 || b != b0 {
		t.Fatalf("sequence numbers G2 %d -> %d, G3 %d -> %d; want G2 advanced once, G3 unchanged", a0, a, b0, b)
	}
}
