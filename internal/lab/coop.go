package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/daemon"
)

// Cooperative key servers in the lab (Options.KeyServers 2 or 3; SPEC
// C1, issue 16): ks1, ks2 (, ks3) on 127.0.1.1, .2 (, .3) with
// `redundancy`, priorities 100, 50 (, 25), each listing the others as
// peers, one rekey signing key (the lab's rekey.pem, imported by each) and
// short COOP timers so that an election and a failover show in seconds.
// Every member lists every key server and registers with the first that
// answers. The lab's own control socket (ServeCLI) lets the operator kill
// and start key servers and forwards commands to any node.

// The lab's COOP timers: a 2 s announcement period, a 6 s dead interval
// (three periods) and a 2 s startup wait (IOS's fixed timers and
// groupvpn's defaults are 20 s, 60 s and 20 s).
const (
	LabCOOPPeriod = 2 * time.Second
	LabCOOPDead   = 6 * time.Second
	LabCOOPWait   = 2 * time.Second
)

// coopTimers are the lab's COOP timers, defaults filled in, whole seconds.
func (o Options) coopTimers() (period, dead, wait time.Duration) {
	def := func(d, v time.Duration) time.Duration {
		if d <= 0 {
			return v
		}
		return max(d.Truncate(time.Second), time.Second)
	}
	period, dead, wait = def(o.COOPPeriod, LabCOOPPeriod), def(o.COOPDead, LabCOOPDead), def(o.COOPWait, LabCOOPWait)
	if dead <= period {
		dead = 3 * period
	}
	return period, dead, wait
}

// COOPTimers are the COOP timers of a lab started with o.
func (o Options) COOPTimers() (period, dead, wait time.Duration) { return o.coopTimers() }

// coopPriority is key server i's `local priority`: ks1 100, ks2 50, ks3 25.
func coopPriority(i int) int { return 100 >> i }

// KeyServers is the number of key servers of the lab.
func (l *Lab) KeyServers() int { return len(l.kss) }

// KSName is key server i's (0-based) name: "ks" for a lab's one key
// server, ks1, ks2, ks3 for cooperative ones.
func (l *Lab) KSName(i int) string { return l.kss[i].name }

// KeyServer is key server i's daemon (the one running now, or the last
// one killed).
func (l *Lab) KeyServer(i int) *daemon.Daemon { return l.kss[i].d }

// KSUp is whether key server i runs (not killed by KillKSN).
func (l *Lab) KSUp(i int) bool { return !l.kss[i].down }

// KSRole is what a key server says of its COOP role.
type KSRole struct {
	Name     string
	Addr     netip.Addr
	Up       bool      // running and answering
	Role     coop.Role // zero: no COOP status (down, or no redundancy)
	Primary  netip.Addr
	Priority uint8
	Peers    []coop.PeerStatus
}

// Roles asks every key server its COOP role in group LAB.
func (l *Lab) Roles(ctx context.Context) []KSRole {
	var out []KSRole
	for _, k := range l.kss {
		r := KSRole{Name: k.name, Addr: k.addr}
		if !k.down {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := k.d.Node.State(sctx)
			cancel()
			if err == nil {
				r.Up = true
				if st, ok := s.COOP["LAB"]; ok {
					r.Role, r.Primary, r.Priority, r.Peers = st.Role, st.Primary, st.Priority, st.Peers
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// Agreed returns the index of the one primary that every running key
// server follows (-1, false: none, two, or some do not follow it yet).
func Agreed(rs []KSRole) (int, bool) {
	p := -1
	for i, r := range rs {
		if r.Up && r.Role == coop.Primary {
			if p >= 0 {
				return -1, false
			}
			p = i
		}
	}
	if p < 0 {
		return -1, false
	}
	for _, r := range rs {
		if r.Up && r.Primary != rs[p].Addr {
			return -1, false
		}
	}
	return p, true
}

// WaitPrimary waits until the running key servers agree on one primary
// and returns its index and the roles then.
func (l *Lab) WaitPrimary(ctx context.Context, timeout time.Duration) (int, []KSRole, error) {
	deadline := time.Now().Add(timeout)
	for {
		rs := l.Roles(ctx)
		if p, ok := Agreed(rs); ok {
			return p, rs, nil
		}
		if time.Now().After(deadline) {
			return -1, rs, fmt.Errorf("lab: the key servers agree on no primary within %s: %s", timeout, RolesLine(rs))
		}
		select {
		case <-ctx.Done():
			return -1, rs, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RolesLine is the key servers' roles on one line: "ks1 Primary, ks2
// Secondary (primary 127.0.1.1)".
func RolesLine(rs []KSRole) string {
	var parts []string
	for _, r := range rs {
		switch {
		case !r.Up:
			parts = append(parts, r.Name+" down")
		case r.Role == 0:
			parts = append(parts, r.Name+" (no COOP status)")
		case r.Role == coop.Primary:
			parts = append(parts, r.Name+" Primary")
		case r.Primary.IsValid():
			parts = append(parts, fmt.Sprintf("%s %s (primary %s)", r.Name, r.Role, r.Primary))
		default:
			parts = append(parts, fmt.Sprintf("%s %s", r.Name, r.Role))
		}
	}
	return strings.Join(parts, ", ")
}

// COOPLines prints the COOP lines of `show crypto gdoi` of every running
// key server (the election as each one shows it).
func (l *Lab) COOPLines(ctx context.Context, out io.Writer) {
	for _, k := range l.kss {
		if k.down {
			fmt.Fprintf(out, "%s: down\n", k.name)
			continue
		}
		r := k.d.Ctl.Exec(ctx, "show crypto gdoi | include Redundancy|Local [AKP]")
		if !r.OK {
			fmt.Fprintf(out, "%s# show crypto gdoi: %s\n", k.name, r.Error)
			continue
		}
		fmt.Fprintf(out, "%s# show crypto gdoi | include Redundancy|Local [AKP]\n%s", k.name, ensureNL(r.Text))
	}
}

func ensureNL(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// KeysView is what the members hold: every member's KEK SPI and TEK SPIs.
type KeysView struct {
	KEK   []string   // by member, hex ("" none)
	TEKs  [][]uint32 // by member, sorted; live TEKs only
	NoTEK []int      // members holding no live TEK
	Down  []int      // members whose control plane does not answer
}

// Keys asks every member what it holds.
func (l *Lab) Keys(ctx context.Context) KeysView {
	var v KeysView
	for i, g := range l.GMs {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := g.Node.State(sctx)
		cancel()
		kek, teks := "", []uint32{}
		if err != nil {
			v.Down = append(v.Down, i)
		} else {
			for _, k := range s.KEKs {
				kek = fmt.Sprintf("%x", k.SPI)
			}
			for _, t := range s.TEKs {
				if t.Expires.After(s.Now) {
					teks = append(teks, t.SPI)
				}
			}
			slices.Sort(teks)
			if len(teks) == 0 {
				v.NoTEK = append(v.NoTEK, i)
			}
		}
		v.KEK = append(v.KEK, kek)
		v.TEKs = append(v.TEKs, teks)
	}
	return v
}

// Sets is the number of distinct KEKs and TEK sets among the members.
func (v KeysView) Sets() (keks, tekSets int) {
	k, t := map[string]bool{}, map[string]bool{}
	for i := range v.KEK {
		k[v.KEK[i]] = true
		t[fmt.Sprint(v.TEKs[i])] = true
	}
	return len(k), len(t)
}

// PrimaryIndex is the index of the key server with address a (-1: none).
func (l *Lab) PrimaryIndex(a netip.Addr) int {
	for i, k := range l.kss {
		if k.addr == a {
			return i
		}
	}
	return -1
}

// ServeCLI serves the lab's own control socket at path until ctx ends: the
// operator's CLI of a lab of cooperative key servers (`groupvpn lab
// --key-servers 2 --cli`), which survives the death of any key server:
//
//	show lab                     every key server's COOP role, the members' keys
//	lab kill ks1|ks2|ks3|primary kill -9 a key server (its goroutine ends, sockets close)
//	lab start ks1|ks2|ks3        start a killed key server again (from its configuration)
//	ks1 COMMAND, ks2 ..., gm N COMMAND   run COMMAND on that node (prompts are relayed)
func (l *Lab) ServeCLI(ctx context.Context, path string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := ctl.NewServer(logger)
	srv.SetHostname("lab")
	srv.Handle("show lab", "the key servers' COOP roles and what the members hold", func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		return &ctl.Reply{Text: l.labStatus(ctx)}, nil
	})
	srv.HandleHelp("lab", "kill or start a key server of the lab")
	srv.Handle("lab kill which=WORD", "kill -9 a key server: ks1, ks2, ks3 or primary", func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		i, err := l.ksByName(ctx, req.Args["which"])
		if err != nil {
			return nil, err
		}
		if err := l.KillKSN(i); err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "lab: "))
		}
		return &ctl.Reply{Text: fmt.Sprintf("%s (%s) killed at %s; a secondary takes over within the dead interval (%s): watch `show lab`\n",
			l.kss[i].name, l.kss[i].addr, time.Now().Format("15:04:05.000"), l.deadInterval())}, nil
	})
	srv.Handle("lab start which=WORD", "start a killed key server again: ks1, ks2 or ks3", func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		i, err := l.ksByName(ctx, req.Args["which"])
		if err != nil {
			return nil, err
		}
		if err := l.StartKSN(i); err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "lab: "))
		}
		return &ctl.Reply{Text: fmt.Sprintf("%s (%s) started; it stays secondary while a primary lives (no preemption)\n", l.kss[i].name, l.kss[i].addr)}, nil
	})
	srv.Handle("lab rekey", "the primary sends a rekey now (as a scheduled one)", func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		i, err := l.ksByName(ctx, "primary")
		if err != nil {
			return nil, err
		}
		if err := l.kss[i].d.Node.Rekey(ctx, "LAB"); err != nil {
			return nil, fmt.Errorf("%s: %v", l.kss[i].name, err)
		}
		return &ctl.Reply{Text: fmt.Sprintf("%s sent a rekey: `show lab` shows when every member holds its TEKs\n", l.kss[i].name)}, nil
	})
	for i, k := range l.kss {
		srv.Handle(k.name+" cmd=LINE", "run a command on "+k.name, func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			if l.kss[i].down {
				return nil, fmt.Errorf("%s is down (lab start %s)", l.kss[i].name, l.kss[i].name)
			}
			return forward(ctx, l.kss[i].d.Ctl, req, req.Args["cmd"])
		})
	}
	srv.Handle("gm n=NUMBER cmd=LINE", "run a command on member N", func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		n, err := strconv.Atoi(req.Args["n"])
		if err != nil || n < 1 || n > len(l.GMs) {
			return nil, fmt.Errorf("no member %s (1 to %d)", req.Args["n"], len(l.GMs))
		}
		return forward(ctx, l.GMs[n-1].Ctl, req, req.Args["cmd"])
	})
	return srv.Serve(ctx, path)
}

// forward runs line on a node's control server, relaying its prompts to
// the operator (the handler runs again with every answer: the node's
// command too, in a new session each time, as the server asks).
func forward(ctx context.Context, srv *ctl.Server, req *ctl.Request, line string) (*ctl.Reply, error) {
	ss := srv.NewSession()
	resp := ss.Do(ctx, &ctl.WireRequest{V: 1, Cmd: line})
	for resp.Prompt != "" {
		a, err := req.Ask(resp.Prompt)
		if err != nil {
			return nil, err
		}
		resp = ss.Do(ctx, &ctl.WireRequest{V: 1, Cmd: line, Answer: a, Token: resp.Token})
	}
	if !resp.OK {
		if resp.Text != "" {
			return &ctl.Reply{Text: resp.Text}, errors.New(resp.Error)
		}
		return nil, errors.New(resp.Error)
	}
	r := &ctl.Reply{Text: resp.Text}
	if len(resp.Data) > 0 {
		r.Data = json.RawMessage(resp.Data)
	}
	return r, nil
}

// ksByName finds a key server by name, or the primary.
func (l *Lab) ksByName(ctx context.Context, name string) (int, error) {
	if name == "primary" {
		rs := l.Roles(ctx)
		for i, r := range rs {
			if r.Up && r.Role == coop.Primary {
				return i, nil
			}
		}
		return -1, fmt.Errorf("no key server is primary now (%s)", RolesLine(rs))
	}
	for i, k := range l.kss {
		if k.name == name {
			return i, nil
		}
	}
	var names []string
	for _, k := range l.kss {
		names = append(names, k.name)
	}
	return -1, fmt.Errorf("no key server %q (%s or primary)", name, strings.Join(names, ", "))
}

// deadInterval is the dead interval key server 0 shows (the lab's timers).
func (l *Lab) deadInterval() time.Duration {
	if l.coopDead > 0 {
		return l.coopDead
	}
	return LabCOOPDead
}

// labStatus is `show lab`.
func (l *Lab) labStatus(ctx context.Context) string {
	var b strings.Builder
	rs := l.Roles(ctx)
	fmt.Fprintf(&b, "Key servers (COOP, group LAB; announcement period %s, dead interval %s):\n", l.coopPeriod, l.deadInterval())
	fmt.Fprintf(&b, "  %-5s %-11s %-9s %-10s %-12s %s\n", "KS", "address", "priority", "role", "primary", "peers (reachable)")
	for _, r := range rs {
		role, prim, prio, peers := "down", "-", "-", []string{}
		if r.Up {
			role = r.Role.String()
			if r.Role == 0 {
				role = "-"
			}
			if r.Primary.IsValid() {
				prim = r.Primary.String()
			}
			prio = strconv.Itoa(int(r.Priority))
			for _, p := range r.Peers {
				s := p.Addr.String()
				if !p.Reachable {
					s += " (unreachable)"
				}
				peers = append(peers, s)
			}
		}
		fmt.Fprintf(&b, "  %-5s %-11s %-9s %-10s %-12s %s\n", r.Name, r.Addr, prio, role, prim, strings.Join(peers, ", "))
	}
	v := l.Keys(ctx)
	keks, sets := v.Sets()
	fmt.Fprintf(&b, "Members: %d; %d without a live TEK, %d not answering; %d KEK(s), %d distinct TEK set(s)\n",
		len(l.GMs), len(v.NoTEK), len(v.Down), keks, sets)
	return b.String()
}

// FailoverReport is what Failover measured.
type FailoverReport struct {
	Primary, NewPrimary int           // key server indexes
	Takeover            time.Duration // from the kill to the survivors' agreement on a new primary
	Dead                time.Duration // the dead interval in force
	RekeyAccepted       time.Duration // from the new primary's rekey to every member holding its TEKs
	KEKs, TEKSets       int           // distinct KEKs and TEK sets among the members at the end
	NoTEK               int           // the most members seen without a live TEK at any sample
	Rejoined            bool          // the old primary came back as a secondary of the new one
}

// Failover is the lab's COOP proof, run on a lab of cooperating key
// servers whose members send live traffic: the key servers agree on a
// primary; it is killed (kill -9); the survivors elect a new primary within
// the dead interval; the new primary's rekey (Node.Rekey, a scheduled
// rekey sent now) reaches every member; the old primary starts again and
// stays secondary (no preemption). The members are sampled every 200 ms
// for a live TEK throughout. It writes what happens to out.
func (l *Lab) Failover(ctx context.Context, out io.Writer) (FailoverReport, error) {
	var rep FailoverReport
	if len(l.kss) < 2 {
		return rep, errors.New("lab: failover needs cooperating key servers (--key-servers 2)")
	}
	rep.Dead = l.deadInterval()
	p, rs, err := l.WaitPrimary(ctx, LabCOOPWait+3*rep.Dead)
	if err != nil {
		return rep, err
	}
	rep.Primary = p
	fmt.Fprintf(out, "\nElection: %s.\n", RolesLine(rs))
	l.COOPLines(ctx, out)

	// Sample the members' TEKs every 200 ms from here to the end.
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan int, 1)
	go func() {
		worst := 0
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			if n := len(l.Keys(sctx).NoTEK); n > worst && sctx.Err() == nil {
				worst = n
			}
			select {
			case <-sctx.Done():
				sampled <- worst
				return
			case <-tk.C:
			}
		}
	}()
	defer func() {
		stopSampling()
		rep.NoTEK = <-sampled
	}()

	before := l.Keys(ctx)
	old := map[uint32]bool{}
	for _, ts := range before.TEKs {
		for _, s := range ts {
			old[s] = true
		}
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return rep, err
	}
	killed := time.Now()
	if err := l.KillKSN(p); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "\n%s: killed the primary %s (%s) as kill -9 would; dead interval %s.\n", killed.Format("15:04:05.000"), l.kss[p].name, l.kss[p].addr, rep.Dead)
	q, rs, err := l.WaitPrimary(ctx, 3*rep.Dead)
	if err != nil {
		return rep, err
	}
	rep.NewPrimary, rep.Takeover = q, time.Since(killed)
	fmt.Fprintf(out, "%s: %s took over %s after the kill (dead interval %s): %s.\n", time.Now().Format("15:04:05.000"),
		l.kss[q].name, rep.Takeover.Round(time.Millisecond), rep.Dead, RolesLine(rs))
	if rep.Takeover > rep.Dead+l.coopPeriod {
		fmt.Fprintf(out, "(longer than the dead interval plus one announcement period)\n")
	}

	rekeyed := time.Now()
	if err := l.kss[q].d.Node.Rekey(ctx, "LAB"); err != nil {
		return rep, fmt.Errorf("lab: the new primary's rekey: %w", err)
	}
	for {
		v := l.Keys(ctx)
		all := true
		for i, ts := range v.TEKs {
			fresh := false
			for _, s := range ts {
				fresh = fresh || !old[s]
			}
			if !fresh || v.KEK[i] == "" {
				all = false
			}
		}
		if all {
			rep.RekeyAccepted = time.Since(rekeyed)
			rep.KEKs, rep.TEKSets = v.Sets()
			break
		}
		if time.Since(rekeyed) > 15*time.Second {
			return rep, fmt.Errorf("lab: the new primary's rekey did not reach every member within 15 s")
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return rep, err
		}
	}
	fmt.Fprintf(out, "%s's rekey reached every member in %s: %d KEK, %d TEK set(s) among %d members.\n",
		l.kss[q].name, rep.RekeyAccepted.Round(time.Millisecond), rep.KEKs, rep.TEKSets, len(l.GMs))

	if err := l.StartKSN(p); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "%s: %s started again.\n", time.Now().Format("15:04:05.000"), l.kss[p].name)
	deadline := time.Now().Add(LabCOOPWait + 2*rep.Dead)
	for {
		rs := l.Roles(ctx)
		if r, ok := Agreed(rs); ok && r == q && rs[p].Up && rs[p].Role == coop.Secondary {
			rep.Rejoined = true
			fmt.Fprintf(out, "%s: %s is a secondary of %s (no preemption): %s.\n", time.Now().Format("15:04:05.000"), l.kss[p].name, l.kss[q].name, RolesLine(rs))
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "%s did not settle as a secondary of %s: %s\n", l.kss[p].name, l.kss[q].name, RolesLine(rs))
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return rep, err
		}
	}
	l.COOPLines(ctx, out)
	return rep, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
