package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// CounterSource is a section of `show crypto isakmp statistics` read,
// each time the command runs, from a process the daemon works through
// (the iked broker, tmd): their drops are the daemon's operator's to see
// (SPEC S5).
type CounterSource struct {
	Key   string // `| json` key, snake_case
	Title string
	Read  func(context.Context) ([]ike.Counter, error)
}

// sourceTimeout bounds reading one CounterSource: a stuck peer process
// delays the command by at most this, and its section says why.
const sourceTimeout = 2 * time.Second

// AddCounters adds a section to `show crypto isakmp statistics`, after
// those added before it.
func (d *Daemon) AddCounters(src CounterSource) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources = append(d.sources, src)
}

func (d *Daemon) counterSources() []CounterSource {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sources)
}

// controlCounters are the control socket's drops (ctl.Limits).
func controlCounters(st ctl.ConnStats) []ike.Counter {
	return []ike.Counter{
		{Name: "connections_open", Help: "connections being served now", Value: uint64(max(st.Open, 0))},
		{Name: "connections_accepted", Help: "connections served", Value: st.Accepted},
		{Name: "connections_refused", Help: "connections refused over the limit", Value: st.Refused},
		{Name: "idle_closed", Help: "connections closed after the idle timeout without a request", Value: st.IdleClosed},
		{Name: "write_timeouts", Help: "connections closed: a reply could not be written in time", Value: st.WriteTimeouts},
		{Name: "requests_oversize", Help: "request lines over the size limit, discarded", Value: st.Oversize},
		{Name: "requests_malformed", Help: "request lines that are not a JSON request", Value: st.BadRequests},
		{Name: "monitor_lines_dropped", Help: "log lines terminal monitor sessions missed (too slow)", Value: st.MonitorDropped},
	}
}

// statistics renders `show crypto isakmp statistics`: the node's phase-1
// counters, then the broker's and tmd's (sources), the control socket's,
// the state store's and the log rate limiter's.
func statistics(srv *ctl.Server, n *node.Node, sources func() []CounterSource) ctl.Handler {
	return func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		s, err := state(ctx, n)
		if err != nil {
			return nil, err
		}
		var secs []show.Section
		for _, src := range sources() {
			rctx, cancel := context.WithTimeout(ctx, sourceTimeout)
			cs, err := src.Read(rctx)
			cancel()
			sec := show.Section{Key: src.Key, Title: src.Title, Counters: cs}
			if err != nil {
				sec.Err = err.Error()
			}
			secs = append(secs, sec)
		}
		secs = append(secs, show.Section{Key: "control_socket", Title: "Control socket", Counters: controlCounters(srv.Stats())})
		secs = append(secs, show.StatisticsSections(s)...)
		text, data := show.ISAKMPStatistics(s, secs...)
		return &ctl.Reply{Text: text, Data: data}, nil
	}
}

// saCounterReader is a remote SA database that counts packets (tmd's
// client).
type saCounterReader interface {
	Counters(ctx context.Context) ([]tmd.TEKCounters, *tmd.DataPlaneCounters, error)
}

// ipsecSA renders `show crypto ipsec sa`, with the packet counters of
// tmd's data plane when the SAs live in tmd.
func ipsecSA(n *node.Node, running func() *policy.Config) ctl.Handler {
	return withCounters(n, func(s node.Snapshot, c *show.IPsecCounters) (string, any) {
		return show.IPsecSAAt(s, c, cryptoMaps(running()))
	})
}

// cryptoMaps names, per group, the crypto map that carries it and the
// interface that map is applied to (the first, in configuration order).
func cryptoMaps(c *policy.Config) map[string]show.CryptoMapRef {
	out := map[string]show.CryptoMapRef{}
	if c == nil {
		return out
	}
	for _, ifc := range c.Interfaces {
		for _, e := range ifc.Entries {
			if e.Group == nil {
				continue
			}
			if _, ok := out[e.Group.Name]; !ok {
				out[e.Group.Name] = show.CryptoMapRef{Map: ifc.CryptoMap, Interface: ifc.Name}
			}
		}
	}
	return out
}

// withCounters renders a show command from the node's state and the packet
// counters of tmd's data plane when the SAs live in tmd.
func withCounters(n *node.Node, render func(node.Snapshot, *show.IPsecCounters) (string, any)) ctl.Handler {
	return func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		s, err := state(ctx, n)
		if err != nil {
			return nil, err
		}
		var c *show.IPsecCounters
		if r, ok := n.Dataplane().(saCounterReader); ok {
			rctx, cancel := context.WithTimeout(ctx, sourceTimeout)
			sas, dp, err := r.Counters(rctx)
			cancel()
			c = &show.IPsecCounters{SAs: sas, DataPlane: dp}
			if err != nil {
				c.Err = err.Error()
			}
		}
		text, data := render(s, c)
		return &ctl.Reply{Text: text, Data: data}, nil
	}
}

// Register adds the show commands of a node to a control server. running
// returns the configuration in force (for show running-config), sources
// the sections of show crypto isakmp statistics read from other processes.
func Register(srv *ctl.Server, n *node.Node, running func() *policy.Config, sources func() []CounterSource) {
	snap := func(f func(node.Snapshot) (string, any)) ctl.Handler {
		return func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
			s, err := state(ctx, n)
			if err != nil {
				return nil, err
			}
			text, data := f(s)
			return &ctl.Reply{Text: text, Data: data}, nil
		}
	}
	for path, help := range keywordHelp {
		srv.HandleHelp(path, help)
	}
	srv.HandleTerminal() // terminal length/width/monitor
	srv.HandleReadOnly("show crypto gdoi", "groups, their policy and registration state", snap(show.GDOI))
	srv.HandleReadOnly("show crypto gdoi ks members [member=A.B.C.D]", "group members registered with this key server (or the one at A.B.C.D)", ksOnly(n, ksMembers(n)))
	srv.HandleReadOnly("show crypto gdoi ks coop", "cooperative key servers: role, priority, timers, peers and their versions, announcement counters", ksOnly(n, snap(show.COOP)))
	srv.HandleReadOnly("show crypto gdoi gm", "this group member's registrations, KEK and TEK policy", gmOnly(n, snap(show.GM)))
	srv.HandleReadOnly("show crypto ipsec sa", "the group SAs installed and their packet counters", ipsecSA(n, running))
	srv.HandleReadOnly("show crypto isakmp sa", "phase-1 SAs", phase1SAs(n, false))
	srv.HandleReadOnly("show crypto isakmp sa detail", "phase-1 SAs in detail: algorithms, lifetime, dead peer detection", phase1SAs(n, true))
	srv.HandleReadOnly("show crypto isakmp listen", "the local addresses isakmpd serves (UDP)", snap(listening))
	srv.HandleReadOnly("show running-config", "the configuration in force", func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		c := running()
		text := c.Render()
		return &ctl.Reply{Text: text, Data: show.RunningConfigView(n.Now(), text)}, nil
	})
	// The hostname of the configuration in force: a reload or commit
	// changes it live, the node keeps the one it started with.
	start := n.Now()
	srv.HandleReadOnly("show version", "System hardware and software status: version, uptime, hostname", snap(func(s node.Snapshot) (string, any) {
		s.Hostname = running().Hostname
		text, _ := show.Version(s)
		host := s.Hostname
		if host == "" {
			host = "groupvpn"
		}
		up := s.Now.Sub(start)
		text += fmt.Sprintf("%s uptime is %s\nStarted at %s\nRunning on %s/%s, built with %s\n",
			host, uptime(up), start.UTC().Format("15:04:05 UTC Mon Jan 2 2006"), runtime.GOOS, runtime.GOARCH, runtime.Version())
		return text, show.VersionView(s, show.Build{Started: start, OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()})
	}))
	srv.HandleReadOnly("show clock", "Display the system clock", snap(func(s node.Snapshot) (string, any) {
		// IOS's layout; no '*': the time is the host's, whatever keeps it.
		now := s.Now.UTC()
		return now.Format("15:04:05.000 UTC Mon Jan 2 2006") + "\n", show.ClockView(now)
	}))
	srv.HandleReadOnly("show crypto gdoi ks replay", "anti-replay policy and TBAR pseudotime of the groups this KS serves", ksOnly(n, snap(show.KSReplay)))
	srv.HandleReadOnly("show crypto gdoi gm replay", "anti-replay state of this GM's TEKs: method, window, TBAR pseudotime and drops", gmOnly(n, withCounters(n, show.GMReplayWith)))
	srv.HandleReadOnly("show crypto isakmp statistics", "every drop counter: phase 1 (all local addresses), broker, control socket, state store, log limiter", statistics(srv, n, sources))
	srv.HandleReadOnly("show crypto gdoi gm counters", "group member counters: registrations, rekeys and every drop reason", gmOnly(n, snap(show.GMCounters)))
	srv.HandleReadOnly("show crypto gdoi ks counters", "key server counters: refused pulls, rekey acknowledgements and their drops", ksOnly(n, snap(show.KSCounters)))
	srv.Handle("clear crypto gdoi [group WORD]", "GM: register again now over a new phase 1 (installed keys stay until replaced)",
		func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
			var groups []string
			var err error
			if derr := n.Do(ctx, func() { groups, err = n.Reregister(req.Args["group"], n.Now()) }); derr != nil {
				return nil, derr
			}
			if err != nil {
				return nil, fmt.Errorf("%% %w", err)
			}
			var b strings.Builder
			for _, g := range groups {
				fmt.Fprintf(&b, "Re-registering group %s with its key server\n", g)
			}
			return &ctl.Reply{Text: b.String(), Data: map[string][]string{"groups": groups}}, nil
		})
	srv.Handle("clear crypto isakmp", "delete every phase-1 SA, telling each peer",
		func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
			var k int
			if err := n.Do(ctx, func() { k = n.ClearPhase1(n.Now()) }); err != nil {
				return nil, err
			}
			return &ctl.Reply{Text: fmt.Sprintf("%d phase-1 SAs deleted\n", k), Data: map[string]int{"deleted": k}}, nil
		})
}

// The answers of a role's command on a node without that role (issue 14
// item 3): IOS-like, instead of an empty output. They are errors, so a
// script's `groupvpn cli -c` exits 1.
const (
	errNotKS = "% This device is not a key server for any group (no crypto gdoi group has server local)"
	errNotGM = "% This device is not a group member of any group (no crypto gdoi group has server address ipv4)"
)

// ksOnly runs h only on a node with the key server role.
func ksOnly(n *node.Node, h ctl.Handler) ctl.Handler {
	return roleOnly(n, h, func(s node.Snapshot) bool { return s.KSCounters != nil }, errNotKS)
}

// gmOnly runs h only on a node with the group member role.
func gmOnly(n *node.Node, h ctl.Handler) ctl.Handler {
	return roleOnly(n, h, func(s node.Snapshot) bool { return s.GMCounters != nil }, errNotGM)
}

func roleOnly(n *node.Node, h ctl.Handler, has func(node.Snapshot) bool, msg string) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		s, err := n.StateCounts(ctx)
		if err != nil {
			return nil, err
		}
		if !has(s) {
			return nil, errors.New(msg)
		}
		// h renders this snapshot: one copy of the node's state per
		// command (at 100,000 members a copy is not free; issue 18).
		return h(context.WithValue(ctx, snapKey{}, &s), req)
	}
}

type snapKey struct{}

// state is the snapshot roleOnly took for this command, else a new one:
// without the KS groups' member lists nor the phase-1 SAs
// (node.StateCounts), which only `show crypto gdoi ks members` and `show
// crypto isakmp sa` read (they take node.StateMembers, node.StatePhase1).
func state(ctx context.Context, n *node.Node) (node.Snapshot, error) {
	if s, ok := ctx.Value(snapKey{}).(*node.Snapshot); ok {
		return *s, nil
	}
	return n.StateCounts(ctx)
}

// phase1SAs is `show crypto isakmp sa [detail]`, streamed (issue 18: a
// key server holds a phase-1 SA per member), the only commands whose
// snapshot copies the phase-1 SAs (node.StatePhase1; the others count
// them: Snapshot.Phase1Count).
func phase1SAs(n *node.Node, detail bool) ctl.Handler {
	return func(ctx context.Context, _ *ctl.Request) (*ctl.Reply, error) {
		s, err := n.StatePhase1(ctx)
		if err != nil {
			return nil, err
		}
		return &ctl.Reply{
			Stream:     func(w io.Writer) error { return show.WriteISAKMPSA(w, s, detail) },
			StreamJSON: func(w io.Writer) error { return show.WriteISAKMPSAJSON(w, s, detail) },
		}, nil
	}
}

// ksMembers is `show crypto gdoi ks members [A.B.C.D]`, streamed (issue
// 18: 100,000 members are 2-3 million lines; the control server passes
// them through the filters as they are written). With an address, only
// that member, found by a binary search.
func ksMembers(n *node.Node) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		var only netip.Addr
		if a, ok := req.Args["member"]; ok {
			var err error
			if only, err = netip.ParseAddr(a); err != nil {
				return nil, fmt.Errorf("%% Invalid address %q", a)
			}
		}
		var s node.Snapshot
		var err error
		if only.IsValid() {
			s, err = n.StateOfMember(ctx, only) // that member only
		} else {
			s, err = n.StateMembers(ctx) // with the members (not the phase-1 SAs)
		}
		if err != nil {
			return nil, err
		}
		if only.IsValid() {
			if !show.FindKSMember(s, only) {
				return nil, fmt.Errorf("%% No group member %s is registered with this key server", only)
			}
		}
		return &ctl.Reply{
			Stream:     func(w io.Writer) error { return show.WriteKSMembers(w, s, only) },
			StreamJSON: func(w io.Writer) error { return show.WriteKSMembersJSON(w, s, only) },
		}, nil
	}
}

// uptime is IOS's "1 week, 2 days, 3 hours, 4 minutes".
func uptime(d time.Duration) string {
	m := int64(d / time.Minute)
	parts := []struct {
		n    int64
		unit string
	}{{m / (7 * 24 * 60), "week"}, {m / (24 * 60) % 7, "day"}, {m / 60 % 24, "hour"}, {m % 60, "minute"}}
	var out []string
	for _, p := range parts {
		if p.n == 0 {
			continue
		}
		u := p.unit
		if p.n != 1 {
			u += "s"
		}
		out = append(out, fmt.Sprintf("%d %s", p.n, u))
	}
	if len(out) == 0 {
		return "0 minutes"
	}
	return strings.Join(out, ", ")
}

// keywordHelp is the help `?` shows for the keywords several commands
// share, in IOS's words where IOS has them.
var keywordHelp = map[string]string{
	"show":                        "Show running system information",
	"clear":                       "Reset functions",
	"crypto":                      "Encryption related commands",
	"show crypto":                 "Encryption module",
	"clear crypto":                "Encryption module",
	"show crypto gdoi":            "Show crypto GDOI information",
	"show crypto gdoi ks":         "Show crypto GDOI key server information",
	"show crypto gdoi gm":         "Show crypto GDOI group member information",
	"show crypto gdoi feature":    "Show the versions that support a GDOI feature",
	"show crypto isakmp":          "Show ISAKMP information",
	"show crypto ipsec":           "Show IPSEC information",
	"clear crypto gdoi":           "Clear GDOI state (GM: register again)",
	"clear crypto isakmp":         "Clear ISAKMP phase-1 SAs",
	"crypto gdoi":                 "GDOI commands",
	"crypto gdoi ks":              "GDOI key server commands",
	"configure":                   "Enter configuration mode",
	"terminal":                    "Set terminal line parameters",
	"write":                       "Write running configuration to memory",
	"copy":                        "Copy from one file to another",
	"show running-config":         "Current operating configuration",
	"show crypto gdoi ks members": "group members registered with this key server",
}

// listening renders the addresses served, one a line.
func listening(s node.Snapshot) (string, any) {
	var b strings.Builder
	fmt.Fprintf(&b, "ISAKMP listening addresses (UDP): %d\n", len(s.Addrs))
	for _, a := range s.Addrs {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String(), show.ListenView(s)
}
