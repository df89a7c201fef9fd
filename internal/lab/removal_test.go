package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/version"
)

// The seed's prompts, byte for byte (SPEC R1, R4, R5).
const (
	wantPromptRemoval    = "% This GM-Removal message will shorten all GMs' key lifetimes and cause them to re-register before keys expiry.\nAre you sure you want to proceed ? [yes/no]: "
	wantPromptRemovalNow = "% This GM-Removal immediate message will cleanup all GMs downloaded policies\n% This will cause all GMs to re-register.\nAre you sure you want to proceed ? [yes/no]: "
	wantWarning          = "WARNING for group LAB: some devices cannot support GM-REMOVAL and can cause network disruption. Please check 'show crypto gdoi feature'.\nAre you sure you want to proceed ? [yes/no]: "
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// logs records every node's log messages.
type logs struct {
	mu    sync.Mutex
	lines []string // "node: message"
}

type logHandler struct {
	l    *logs
	node string
}

func (h logHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h logHandler) Handle(_ context.Context, r slog.Record) error {
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, h.node+": "+r.Message)
	h.l.mu.Unlock()
	return nil
}
func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		if a.Key == "node" {
			h.node = a.Value.String()
		}
	}
	return h
}
func (h logHandler) WithGroup(string) slog.Handler { return h }

// count returns how many of node's messages start with prefix.
func (l *logs) count(node, prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.HasPrefix(s, node+": "+prefix) {
			n++
		}
	}
	return n
}

func (l *logs) find(node, prefix string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.HasPrefix(s, node+": "+prefix) {
			return strings.TrimPrefix(s, node+": ")
		}
	}
	return ""
}

type removalLab struct {
	t   *testing.T
	ctx context.Context
	l   *Lab
	clk *clock
	log *logs
}

func state(t *testing.T, ctx context.Context, d *daemon.Daemon) node.Snapshot {
	t.Helper()
	s, err := d.Node.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *removalLab) registrations(i int) int {
	s := state(r.t, r.ctx, r.l.GMs[i])
	return s.GM[0].Registrations
}

// eventually wakes every node until cond holds (packets cross loopback in
// real time while the nodes' clock stands still).
func (r *removalLab) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for i, g := range r.l.GMs {
				s := state(r.t, r.ctx, g)
				r.t.Logf("gm%d: %+v, %d TEKs", i+1, s.GM[0], len(validTEKs(s)))
			}
			r.t.Fatalf("timed out waiting for %s", what)
		}
		r.wake()
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *removalLab) wake() {
	r.l.KS.Node.Do(r.ctx, func() {})
	for _, g := range r.l.GMs {
		g.Node.Do(r.ctx, func() {})
	}
}

// exec runs a KS command in one session, answering its prompts in turn,
// and returns the prompts asked and the final response.
func (r *removalLab) exec(line string, answers ...string) ([]string, *ctl.WireResponse) {
	ss := r.l.KS.Ctl.NewSession()
	resp := ss.Do(r.ctx, &ctl.WireRequest{V: ctl.Version, Cmd: line})
	var prompts []string
	for resp.Prompt != "" {
		prompts = append(prompts, resp.Prompt)
		if len(answers) == 0 {
			return prompts, resp
		}
		resp = ss.Do(r.ctx, &ctl.WireRequest{V: ctl.Version, Cmd: line, Token: resp.Token, Answer: answers[0]})
		answers = answers[1:]
	}
	return prompts, resp
}

// validTEKs returns the SPIs of the TEKs of a member usable now.
func validTEKs(s node.Snapshot) []sadb.TEK {
	var v []sadb.TEK
	for _, t := range s.TEKs {
		if s.Now.Before(t.Expires) {
			v = append(v, t)
		}
	}
	return v
}

func (r *removalLab) ksSPIs() []uint32 {
	s := state(r.t, r.ctx, r.l.KS)
	var spis []uint32
	for _, t := range s.KS[0].TEKs {
		spis = append(spis, t.SPI)
	}
	return spis
}

func holdsAll(s node.Snapshot, spis []uint32) bool {
	for _, spi := range spis {
		if !slices.ContainsFunc(validTEKs(s), func(t sadb.TEK) bool { return t.SPI == spi }) {
			return false
		}
	}
	return true
}

// ksConfig returns the lab KS configuration with edit applied, parsed by
// the real parser from a file, as a reload would read it.
func (r *removalLab) ksConfig(name string, edit func(string) string) *policy.Config {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.l.Dir, "ks.conf"))
	if err != nil {
		r.t.Fatal(err)
	}
	path := filepath.Join(r.l.Dir, name)
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o600); err != nil {
		r.t.Fatal(err)
	}
	c, err := policy.Load(path)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// proves: V4, R1, R2, R3, R4, R5, P1, P2, P3, P6 — a group of 50 members,
// one announcing 1.0.1, driven through the operator's commands on the KS
// over real UDP: the feature tables, a policy change that waits for
// `crypto gdoi ks rekey`, a GM removal after revoking one member's key,
// and a removal with `now`. The nodes share a manual clock, so TEK
// lifetimes of an hour run in milliseconds.
func TestRemovalAndPolicyReplaceThroughTheCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := &clock{now: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	lg := &logs{}
	const members, old, revoked = 50, 5, 1 // gm6 runs 1.0.1; gm2's key gets revoked
	l, err := Start(ctx, Options{Members: members, Port: 22848, Dir: t.TempDir(), Now: clk.Now, Old: []int{old},
		Logger: slog.New(logHandler{l: lg})})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := &removalLab{t: t, ctx: ctx, l: l, clk: clk, log: lg}
	r.eventually("every member registered", func() bool {
		for i := range members {
			if s := state(t, ctx, l.GMs[i]); len(s.GM) == 0 || s.GM[0].State != "registered" {
				return false
			}
		}
		return true
	})

	// V4: the feature tables name the 1.0.1 member, and filters work.
	for _, f := range []string{"gm-removal", "policy-replace"} {
		resp := l.KS.Ctl.Exec(ctx, "show crypto gdoi feature "+f+" | include No")
		if !resp.OK || strings.Join(strings.Fields(resp.Text), " ") != GMAddr(old).String()+" 1.0.1 No" {
			t.Fatalf("show crypto gdoi feature %s | include No:\n%q %s", f, resp.Text, resp.Error)
		}
		resp = l.KS.Ctl.Exec(ctx, "show crypto gdoi feature "+f)
		words := strings.Join(strings.Fields(resp.Text), " ") // the table's column padding aside
		for _, w := range []string{"Group Name: LAB", "Key Server ID Version Feature Supported", "Group Member ID Version Feature Supported",
			GMAddr(0).String() + " " + version.Current.String() + " Yes"} {
			if !strings.Contains(words, w) {
				t.Fatalf("show crypto gdoi feature %s lacks %q:\n%s", f, w, resp.Text)
			}
		}
	}

	// P1: a committed policy change (esp-aes 128 -> 256 in the voice
	// transform set) is logged and sends nothing.
	before := r.ksSPIs()
	cfg256 := r.ksConfig("ks-aes256.conf", func(s string) string {
		return strings.Replace(s, "esp-aes 128 esp-sha256-hmac", "esp-aes 256 esp-sha256-hmac", 1)
	})
	l.KS.SetConfig(cfg256) // a reload
	if m := lg.find("ks", "%GDOI-5-POLICY_CHANGE:"); m != "%GDOI-5-POLICY_CHANGE: GDOI group LAB policy has changed. Use 'crypto gdoi ks rekey' to send a rekey, or the changes will be send in the next scheduled rekey" {
		t.Fatalf("POLICY_CHANGE log: %q", m)
	}
	if resp := l.KS.Ctl.Exec(ctx, "show crypto gdoi ks policy"); !strings.Contains(resp.Text, "esp-aes 256") || strings.Contains(resp.Text, "(none)") {
		t.Fatalf("show crypto gdoi ks policy does not list the pending change:\n%s", resp.Text)
	}
	r.wake()
	time.Sleep(50 * time.Millisecond)
	r.wake()
	for i := range members {
		for _, tk := range state(t, ctx, l.GMs[i]).TEKs {
			if tk.KeyBits == 256 && tk.Transform == 12 {
				t.Fatalf("gm%d got the new policy without a rekey", i+1)
			}
		}
	}

	// P2, P3, P6: the triggered rekey.
	if _, resp := r.exec("crypto gdoi ks rekey"); !resp.OK || resp.Text != "Rekey with policy-replace sent for group LAB\n" {
		t.Fatalf("crypto gdoi ks rekey: %q %s", resp.Text, resp.Error)
	}
	if m := lg.find("ks", "%GDOI-5-KS_SEND_UNICAST_REKEY: Sending Unicast Rekey with policy-replace for group LAB from address "+KSAddr.String()+" with seq #"); m == "" {
		t.Fatal("no KS_SEND_UNICAST_REKEY with policy-replace log")
	}
	after := r.ksSPIs()
	if slices.ContainsFunc(after, func(s uint32) bool { return slices.Contains(before, s) }) {
		t.Fatalf("the policy-replace rekey kept old TEKs: before %x after %x", before, after)
	}
	r.eventually("every member holding the new policy", func() bool {
		for i := range members {
			if !holdsAll(state(t, ctx, l.GMs[i]), after) {
				return false
			}
		}
		return true
	})
	for i := range members {
		s := state(t, ctx, l.GMs[i])
		for _, tk := range validTEKs(s) {
			if !slices.Contains(before, tk.SPI) {
				if tk.Transform == 12 && tk.KeyBits != 256 {
					t.Errorf("gm%d: new CBC TEK has %d-bit keys", i+1, tk.KeyBits)
				}
				continue
			}
			left := tk.Expires.Sub(s.Now)
			slt := min(max(90*time.Second, tk.Configured/20), time.Hour)
			if i == old && left <= slt {
				t.Errorf("gm%d (1.0.1) shortened an old TEK to %s: it must not know policy replace (P6)", i+1, left)
			}
			if i != old && left > slt {
				t.Errorf("gm%d kept an old TEK for %s, beyond TEK_SLT %s (P3)", i+1, left, slt)
			}
		}
	}

	// R3: revoke gm2's pre-shared key on the KS (a more specific key
	// for its address), then remove all members.
	revokedCfg := r.ksConfig("ks-revoked.conf", func(s string) string {
		return strings.Replace(s, "crypto isakmp key lab-secret address 127.0.0.0 255.0.0.0",
			"crypto isakmp key lab-secret address 127.0.0.0 255.0.0.0\ncrypto isakmp key revoked-gm2 address "+GMAddr(revoked).String()+" 255.255.255.255", 1)
	})
	l.KS.SetConfig(revokedCfg)
	regs := make([]int, members)
	for i := range members {
		regs[i] = r.registrations(i)
	}
	removedAt := clk.Now()

	// R1, R5: two questions (the group has a 1.0.1 member), then sent.
	prompts, resp := r.exec("clear crypto gdoi ks members", "yes", "yes")
	if !slices.Equal(prompts, []string{wantPromptRemoval, wantWarning}) {
		t.Fatalf("prompts:\n%q", prompts)
	}
	if !resp.OK || resp.Text != "Sending GM-Removal message to group LAB...\n" {
		t.Fatalf("clear crypto gdoi ks members: %q %s", resp.Text, resp.Error)
	}
	removal := r.ksSPIs()
	// R2: each 1.0.2 member logs, drops its KEK, shortens its TEKs and
	// keeps them until it re-registers.
	r.eventually("the removal to reach every 1.0.2 member", func() bool {
		for i := range members {
			if i != old && lg.count(fmt.Sprintf("gm%d", i+1), "%GDOI-4-GM_RECV_DELETE: GM received delete-msg from KS in group LAB. TEKs lifetime are reduced") == 0 {
				return false
			}
		}
		return true
	})
	for i := range members {
		s := state(t, ctx, l.GMs[i])
		if i == old {
			continue
		}
		if len(s.KEKs) != 0 {
			t.Errorf("gm%d kept its KEK after the removal", i+1)
		}
		if len(validTEKs(s)) == 0 {
			t.Errorf("gm%d holds no TEK right after the removal: traffic would stop", i+1)
		}
		for _, tk := range validTEKs(s) {
			if left := tk.Expires.Sub(s.Now); left > min(max(90*time.Second, tk.Configured/20), time.Hour) {
				t.Errorf("gm%d: TEK 0x%08x still has %s", i+1, tk.SPI, left)
			}
		}
	}
	// The clock runs through the shortened lifetimes; members re-register
	// before their TEKs expire, and always hold a valid TEK, except the
	// revoked one, which falls out of the group.
	for clk.Now().Sub(removedAt) < 6*time.Minute {
		clk.Add(5 * time.Second)
		r.eventually("re-registrations to settle", func() bool {
			for i := range members {
				if i == revoked {
					continue
				}
				if s := state(t, ctx, l.GMs[i]); s.GM[0].State != "registered" {
					return false
				}
			}
			return true
		})
		for i := range members {
			if s := state(t, ctx, l.GMs[i]); i != revoked && len(validTEKs(s)) == 0 {
				t.Fatalf("gm%d holds no valid TEK %s after the removal", i+1, clk.Now().Sub(removedAt))
			}
		}
	}
	for i := range members {
		s := state(t, ctx, l.GMs[i])
		switch {
		case i == revoked:
			if len(validTEKs(s)) != 0 || slices.ContainsFunc(s.TEKs, func(tk sadb.TEK) bool { return slices.Contains(removal, tk.SPI) }) {
				t.Errorf("the revoked gm2 still holds keys: %+v", validTEKs(s))
			}
		case i == old:
			// A 1.0.1 member gets the new keys by its next registration,
			// as it would on a KS without GM removal.
		default:
			if r.registrations(i) <= regs[i] {
				t.Errorf("gm%d did not re-register after the removal", i+1)
			}
			if !holdsAll(s, removal) {
				t.Errorf("gm%d does not hold the post-removal TEKs %x", i+1, removal)
			}
		}
	}
	for _, m := range state(t, ctx, l.KS).KS[0].Members {
		if m.Address == GMAddr(revoked) && !m.Removed {
			t.Errorf("the KS counts the revoked gm2 as a member again: %+v", m)
		}
	}

	// R4: removal now. Members drop everything at once and re-register
	// within 2% of the configured TEK lifetime.
	prompts, resp = r.exec("clear crypto gdoi group LAB ks members now", "yes", "yes")
	if !slices.Equal(prompts, []string{wantPromptRemovalNow, wantWarning}) || !resp.OK {
		t.Fatalf("clear ... now: prompts %q, %q %s", prompts, resp.Text, resp.Error)
	}
	nowAt := clk.Now()
	r.eventually("REMOVAL-NOW at every 1.0.2 member", func() bool {
		for i := range members {
			if i != old && i != revoked && lg.count(fmt.Sprintf("gm%d", i+1), "%GDOI-4-GM_RECV_DELETE_IMMEDIATE: GM receive REMOVAL-NOW in group LAB to cleanup downloaded policy now. Re-registration will start in a randomly chosen period of ") == 0 {
				return false
			}
		}
		return true
	})
	for i := range members {
		if i == old || i == revoked {
			continue
		}
		if s := state(t, ctx, l.GMs[i]); len(s.TEKs) != 0 || len(s.KEKs) != 0 {
			// A member may already have re-registered if its random wait
			// was 0 s; then it holds only the new keys.
			if !holdsAll(s, r.ksSPIs()) {
				t.Errorf("gm%d kept keys after REMOVAL-NOW: %d TEKs", i+1, len(s.TEKs))
			}
		}
	}
	// 2% of the longest configured TEK lifetime (7200 s) is 144 s.
	for clk.Now().Sub(nowAt) <= 150*time.Second {
		clk.Add(5 * time.Second)
		r.eventually("registrations in flight to finish", func() bool {
			for i := range members {
				if st := state(t, ctx, l.GMs[i]).GM[0].State; i != revoked && st != "registered" && st != "idle" {
					return false
				}
			}
			return true
		})
	}
	final := r.ksSPIs()
	r.eventually("every 1.0.2 member back with the new keys", func() bool {
		for i := range members {
			if i != old && i != revoked && !holdsAll(state(t, ctx, l.GMs[i]), final) {
				return false
			}
		}
		return true
	})
}

// proves: R6, P5 — a key server configured as a secondary (`redundancy`)
// refuses GM removal and the triggered rekey with the exact texts, before
// asking anything, and still registers GMs.
func TestSecondaryKSRefuses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, Options{Members: 1, Port: 23848, Dir: t.TempDir(), Secondary: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Wait(ctx, &strings.Builder{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cmd, want string }{
		{"clear crypto gdoi ks members", "ERROR for group LAB: can only execute this command on Primary KS"},
		{"clear crypto gdoi group LAB ks members now", "ERROR for group LAB: can only execute this command on Primary KS"},
		{"crypto gdoi ks rekey", "ERROR for group LAB: This command must be executed on Pri-KS"},
		{"crypto gdoi ks group LAB rekey replace-now", "ERROR for group LAB: This command must be executed on Pri-KS"},
	} {
		resp := l.KS.Ctl.Exec(ctx, c.cmd)
		if resp.OK || resp.Prompt != "" || resp.Error != c.want {
			t.Errorf("%s on a secondary KS: ok=%v prompt=%q error=%q, want %q", c.cmd, resp.OK, resp.Prompt, resp.Error, c.want)
		}
	}
}
