package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/lab"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// DisruptionOptions configure `groupvpn bench disruption`.
type DisruptionOptions struct {
	Members int    // at least 3
	Port    uint16 // the lab's UDP port
	// Speed is how many times faster than real time the lab's clock runs
	// through the events that promise no loss (their TEKs live minutes);
	// the events with an outage run in real time, so that the outage is
	// what an operator would see. Default 20.
	Speed float64
	// Interval is how often every ordered pair of members sends a packet
	// (real time); 0: 20 ms, longer for large groups (at most about 8000
	// packets per second in all).
	Interval time.Duration
	Out      io.Writer    // progress; nil: none
	Logger   *slog.Logger // the nodes' logs; nil: none
	// Events, when set, runs only these events of the script (1-based,
	// in script order; the last two run in a second lab with a 1.0.1
	// member).
	Events []int
}

// The lab's lifetimes during the run: short, so that scheduled rekeys come
// within the run (the configuration's minimums are 120 s and 300 s).
const (
	disruptTEK   = 120 * time.Second
	disruptVoice = 180 * time.Second
	disruptKEK   = 300 * time.Second
)

// Promise is what an event promises.
type Promise int

const (
	NoLoss Promise = iota // 0 packets lost
	Outage                // an outage no longer than the bound
	Shown                 // disruption shown, not promised away (1.0.1 members)
)

// EventResult is one event's account: every ordered pair's packets sent
// from the event until the next one.
type EventResult struct {
	Num     int // in the script (1-based)
	Name    string
	Command string
	Promise Promise
	Bound   time.Duration // Outage: the longest gap allowed
	Speed   float64       // the lab clock's speed during the event
	Start   time.Time     // lab time the event's window opened
	Lab     time.Duration // lab time from the event to the next
	Real    time.Duration // the same in real time
	Note    string        // what happened (rekeys sent, who re-registered)
	Flows   []flowmeter.Stats
	// Old, for a Shown event: the 1.0.1 member (0-based); pairs with it
	// may lose packets, the others may not.
	Old int
	// Drops are the engines' drop counters that moved during the event,
	// summed over the members (name: count).
	Drops map[string]uint64
	Met   bool
	Why   string // when not met
}

// DisruptionReport is the result of the scenario.
type DisruptionReport struct {
	Members  int
	Speed    float64
	Interval time.Duration
	Register time.Duration // the group's first registration (real time): the allowance for re-registration
	Window   time.Duration // the removal-now re-registration window: 2% of the longest configured TEK lifetime
	Events   []EventResult
	Unknown  uint64 // delivered payloads that were not packets sent by the meter
	// Setup, when set, replaces the description of the lab at the top of
	// Print (the --netns variant's processes and namespaces).
	Setup string
}

// Met reports whether every event kept its promise.
func (r *DisruptionReport) Met() bool {
	for _, e := range r.Events {
		if !e.Met {
			return false
		}
	}
	return len(r.Events) > 0
}

// labClock is the lab's clock: lab time runs rate times faster than real
// time, and the rate can change at any moment (lab time stays monotonic).
type labClock struct {
	mu       sync.Mutex
	baseLab  time.Time
	baseReal time.Time
	rate     float64
}

func newLabClock(rate float64) *labClock {
	now := time.Now()
	return &labClock{baseLab: now.Round(0), baseReal: now, rate: rate}
}

func (c *labClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.baseLab.Add(time.Duration(float64(time.Since(c.baseReal)) * c.rate))
}

func (c *labClock) setRate(r float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.baseLab = c.baseLab.Add(time.Duration(float64(now.Sub(c.baseReal)) * c.rate))
	c.baseReal, c.rate = now, r
}

func (c *labClock) Rate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate
}

// run is one lab with traffic between all its members.
type run struct {
	ctx    context.Context
	o      DisruptionOptions
	out    io.Writer
	clk    *labClock
	l      *lab.Lab
	meter  *flowmeter.Meter
	nodes  sync.Mutex // held while a node is killed or started: the pump leaves them alone
	stop   context.CancelFunc
	done   sync.WaitGroup
	allReg time.Duration
}

// startRun starts a lab with traffic. old lists 1.0.1 members.
func startRun(ctx context.Context, o DisruptionOptions, old []int, out io.Writer) (*run, error) {
	r := &run{ctx: ctx, o: o, out: out, clk: newLabClock(1), meter: flowmeter.New()}
	dir, err := os.MkdirTemp("", "groupvpn-disruption-")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	r.l, err = lab.Start(ctx, lab.Options{Members: o.Members, Port: o.Port, Dir: dir, Now: r.clk.Now, Old: old, Logger: labLogger(o.Logger, r.clk.Now),
		DataPlane: true, NoGMSockets: true, State: true, TEKLifetime: disruptTEK, VoiceLifetime: disruptVoice, KEKLifetime: disruptKEK,
		Deliver: func(_ int, p []byte) { r.meter.Received(p, r.clk.Now()) }})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	pctx, stop := context.WithCancel(ctx)
	r.stop = stop
	r.done.Add(1)
	go r.pump(pctx)
	if err := r.l.Wait(ctx, io.Discard, 2*time.Minute); err != nil {
		r.close()
		return nil, err
	}
	r.allReg = time.Since(start)
	seq := map[flowmeter.Flow]uint64{}
	g := &flowmeter.Generator{Meter: r.meter, Flows: flowmeter.Pairs(o.Members), Interval: o.Interval, Now: r.clk.Now,
		Send: func(f flowmeter.Flow, p []byte) {
			// Odd packets on the lab-voice SA (AES-CBC, TBAR), even ones
			// on lab-traffic (AES-GCM, counter replay).
			voice := seq[f]%2 == 1
			seq[f]++
			r.l.SendUDP(pctx, int(f.Src), int(f.Dst), voice, p)
		}}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		g.Run(pctx)
	}()
	return r, nil
}

// labLogger stamps the nodes' log records with the lab clock, the clock
// of the report's times; nil stays nil (the lab discards).
func labLogger(l *slog.Logger, now func() time.Time) *slog.Logger {
	if l == nil {
		return nil
	}
	return slog.New(labTimeHandler{l.Handler(), now})
}

type labTimeHandler struct {
	slog.Handler
	now func() time.Time
}

func (h labTimeHandler) Handle(ctx context.Context, rec slog.Record) error {
	rec.Time = h.now()
	return h.Handler.Handle(ctx, rec)
}

func (h labTimeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return labTimeHandler{h.Handler.WithAttrs(as), h.now}
}

func (h labTimeHandler) WithGroup(name string) slog.Handler {
	return labTimeHandler{h.Handler.WithGroup(name), h.now}
}

// pump wakes every node often: the nodes sleep in real time until their
// next timer, computed in lab time, which runs faster.
func (r *run) pump(ctx context.Context) {
	defer r.done.Done()
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if r.clk.Rate() == 1 {
			continue // the nodes' own timers are right
		}
		r.nodes.Lock()
		wake := func(n interface {
			Do(context.Context, func()) error
		}) {
			c, cancel := context.WithTimeout(ctx, time.Second)
			n.Do(c, func() {})
			cancel()
		}
		wake(r.l.KS.Node)
		for _, g := range r.l.GMs {
			wake(g.Node)
		}
		r.nodes.Unlock()
	}
}

func (r *run) close() {
	r.stop()
	r.done.Wait()
	r.l.Close()
	os.RemoveAll(r.l.Dir)
}

// sleep waits d of lab time.
func (r *run) sleep(d time.Duration) error {
	end := r.clk.Now().Add(d)
	for r.clk.Now().Before(end) {
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// until waits (at most limit of lab time) for cond.
func (r *run) until(limit time.Duration, what string, cond func() (bool, error)) error {
	end := r.clk.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if r.clk.Now().After(end) {
			return fmt.Errorf("bench disruption: %s: not within %s (lab time)", what, limit)
		}
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ksGroup is the KS's view of the group.
func (r *run) ksGroup() (ks.GroupSnapshot, error) {
	r.nodes.Lock()
	defer r.nodes.Unlock()
	s, err := r.l.KS.Node.State(r.ctx)
	if err != nil {
		return ks.GroupSnapshot{}, err
	}
	if len(s.KS) == 0 {
		return ks.GroupSnapshot{}, errors.New("bench disruption: the KS serves no group")
	}
	return s.KS[0], nil
}

// settled reports whether every member is registered and holds every TEK
// the KS holds, unexpired (members in skip excepted).
func (r *run) settled(skip ...int) (bool, error) {
	g, err := r.ksGroup()
	if err != nil {
		return false, err
	}
	r.nodes.Lock()
	defer r.nodes.Unlock()
	for i, gm := range r.l.GMs {
		if slices.Contains(skip, i) {
			continue
		}
		s, err := gm.Node.State(r.ctx)
		if err != nil {
			return false, err
		}
		if len(s.GM) == 0 || s.GM[0].State != "registered" {
			return false, nil
		}
		for _, t := range g.TEKs {
			if !slices.ContainsFunc(s.TEKs, func(h sadb.TEK) bool { return h.SPI == t.SPI && s.Now.Before(h.Expires) }) {
				return false, nil
			}
		}
	}
	return true, nil
}

// exec runs a KS command in one control session, as `groupvpn ctl` does,
// answering yes to each of its questions.
func (r *run) exec(line string) (string, error) {
	ss := r.l.KS.Ctl.NewSession()
	resp := ss.Do(r.ctx, &ctl.WireRequest{V: ctl.Version, Cmd: line})
	for i := 0; resp.Prompt != "" && i < 3; i++ {
		resp = ss.Do(r.ctx, &ctl.WireRequest{V: ctl.Version, Cmd: line, Token: resp.Token, Answer: "yes"})
	}
	if !resp.OK {
		return "", fmt.Errorf("bench disruption: %s: %s", line, resp.Error)
	}
	return resp.Text, nil
}

// editKS rewrites the KS's configuration file and reloads it (SIGHUP).
func (r *run) editKS(edit func(string) string) error {
	path := filepath.Join(r.l.Dir, "ks.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := edit(string(b))
	if n == string(b) {
		return errors.New("bench disruption: the configuration edit changed nothing")
	}
	if err := os.WriteFile(path, []byte(n), 0o600); err != nil {
		return err
	}
	return r.l.KS.Reload()
}

// now is the lab clock's time.
func (r *run) now() time.Time { return r.clk.Now() }

// killKS stops the KS without saving (kill -9).
func (r *run) killKS() error {
	r.nodes.Lock()
	defer r.nodes.Unlock()
	return r.l.KillKS()
}

// startKS restarts the KS from its state file.
func (r *run) startKS() error {
	r.nodes.Lock()
	defer r.nodes.Unlock()
	return r.l.StartKS()
}

func (r *run) ksDown() time.Duration { return 10 * time.Second }

// ksRestarted waits for the restarted KS's next scheduled rekey: it goes
// on rekeying the group.
func (r *run) ksRestarted() (string, error) {
	g, err := r.ksGroup()
	if err != nil {
		return "", err
	}
	rekeys := g.Rekeys
	if err := r.until(disruptTEK, "a rekey from the restarted KS", func() (bool, error) {
		g, err = r.ksGroup()
		return err == nil && g.Rekeys > rekeys, err
	}); err != nil {
		return "", err
	}
	return "the restarted KS sent its next scheduled rekey", nil
}

// killGM stops member i's control plane (kill -9); its engine stays.
func (r *run) killGM(i int) error {
	r.nodes.Lock()
	defer r.nodes.Unlock()
	return r.l.KillGM(i)
}

func (r *run) startGM(i int) error {
	r.nodes.Lock()
	defer r.nodes.Unlock()
	return r.l.StartGM(i)
}

// rig is what the events' bodies drive: the in-process lab (*run) or the
// real processes of the --netns variant (*nrun).
type rig interface {
	now() time.Time                                                          // the clock the events are timed by
	sleep(d time.Duration) error                                             // waits d
	until(limit time.Duration, what string, cond func() (bool, error)) error // waits for cond
	ksGroup() (ks.GroupSnapshot, error)                                      // the KS's view of the group
	settled(skip ...int) (bool, error)                                       // every member registered with every TEK
	exec(line string) (string, error)                                        // a KS command, yes to its questions
	editKS(edit func(string) string) error                                   // rewrites the KS's configuration, reloads it
	killKS() error                                                           // kill -9 of the KS
	startKS() error                                                          // restarts it from its state file
	ksDown() time.Duration                                                   // how long the KS stays down
	// ksRestarted waits, once the KS is back, for the rekey that shows it
	// kept the group; returns a note.
	ksRestarted() (string, error)
	killGM(i int) error  // kill -9 of member i's control plane
	startGM(i int) error // restarts it
}

// event is one step of the script.
type event struct {
	num           int // in the script, 1-based (set by Disruption)
	name, command string
	promise       Promise
	realTime      bool                        // run it at 1x: an outage is measured as it happens
	do            func(r rig) (string, error) // runs it; returns a note
	watch         time.Duration               // lab time to watch after it
}

// policyReplace is the KS configuration edit of the policy-replace event:
// lab-traffic moves from AES-GCM-256 to AES-CBC, lab-voice's CBC key from
// 128 to 256 bits, and lab-traffic's ACL widens from 10.10.0.0/16 to
// 10.8.0.0/13.
func policyReplace(s string) string {
	s = strings.Replace(s, "crypto ipsec profile lab-data\n set transform-set lab-gcm", "crypto ipsec profile lab-data\n set transform-set lab-cbc", 1)
	s = strings.Replace(s, "esp-aes 128 esp-sha256-hmac", "esp-aes 256 esp-sha256-hmac", 1)
	return strings.Replace(s, "permit ip 10.10.0.0 0.0.255.255 10.10.0.0 0.0.255.255", "permit ip 10.8.0.0 0.7.255.255 10.8.0.0 0.7.255.255", 1)
}

func policyRestore(s string) string {
	s = strings.Replace(s, "crypto ipsec profile lab-data\n set transform-set lab-cbc", "crypto ipsec profile lab-data\n set transform-set lab-gcm", 1)
	s = strings.Replace(s, "esp-aes 256 esp-sha256-hmac", "esp-aes 128 esp-sha256-hmac", 1)
	return strings.Replace(s, "permit ip 10.8.0.0 0.7.255.255 10.8.0.0 0.7.255.255", "permit ip 10.10.0.0 0.0.255.255 10.10.0.0 0.0.255.255", 1)
}

func script() []event {
	return []event{
		{name: "scheduled TEK and KEK rekeys", command: "(TEK lifetimes 120 s and 180 s, KEK 300 s)", promise: NoLoss,
			do: func(r rig) (string, error) {
				g, err := r.ksGroup()
				if err != nil {
					return "", err
				}
				kek, rekeys := g.KEKSPI, g.Rekeys
				// Until a rekey brought a new KEK, then the new TEKs'
				// activation delay: every switch of sending key included.
				if err := r.until(disruptKEK+time.Minute, "a KEK rekey", func() (bool, error) {
					g, err = r.ksGroup()
					return err == nil && g.KEKSPI != kek, err
				}); err != nil {
					return "", err
				}
				if err := r.sleep(ks.RekeyATD + 5*time.Second); err != nil {
					return "", err
				}
				if g, err = r.ksGroup(); err != nil {
					return "", err
				}
				return fmt.Sprintf("%d rekeys sent, one with a new KEK", g.Rekeys-rekeys), nil
			}},
		{name: "policy replace", command: "crypto gdoi ks rekey (after a reload: GCM to CBC, CBC key 128 to 256 bits, ACL /16 to /13)", promise: NoLoss,
			watch: ks.RekeyDTD + 15*time.Second,
			do: func(r rig) (string, error) {
				if err := r.editKS(policyReplace); err != nil {
					return "", err
				}
				return r.exec("crypto gdoi ks rekey")
			}},
		{name: "GM removal", command: "clear crypto gdoi ks members", promise: NoLoss,
			do: func(r rig) (string, error) {
				start := r.now()
				txt, err := r.exec("clear crypto gdoi ks members")
				if err != nil {
					return "", err
				}
				// Temporary SAs live at most 90 s; every member
				// re-registers before, and sends with the new keys
				// once all have.
				if err := reregistered(r, 95*time.Second); err != nil {
					return "", err
				}
				return txt, r.sleep(start.Add(95 * time.Second).Sub(r.now()))
			}},
		{name: "policy replace now", command: "crypto gdoi ks rekey replace-now (after a reload back to the first policy)", promise: Outage, realTime: true,
			watch: 3 * time.Second,
			do: func(r rig) (string, error) {
				if err := r.editKS(func(s string) string {
					if strings.Contains(s, "profile lab-data\n set transform-set lab-cbc") {
						return policyRestore(s)
					}
					return policyReplace(s)
				}); err != nil {
					return "", err
				}
				return r.exec("crypto gdoi ks rekey replace-now")
			}},
		{name: "GM removal now", command: "clear crypto gdoi ks members now", promise: Outage, realTime: true,
			do: func(r rig) (string, error) {
				txt, err := r.exec("clear crypto gdoi ks members now")
				if err != nil {
					return "", err
				}
				return txt, reregistered(r, disruptVoice/50+time.Minute)
			}, watch: 3 * time.Second},
		{name: "KS kill -9 and restart", command: "(the KS stops without saving; down 10 s; restarted from its state file)", promise: NoLoss,
			do: func(r rig) (string, error) {
				if err := r.killKS(); err != nil {
					return "", err
				}
				if err := r.sleep(r.ksDown()); err != nil {
					return "", err
				}
				if err := r.startKS(); err != nil {
					return "", err
				}
				note, err := r.ksRestarted()
				if err != nil {
					return "", err
				}
				return note, r.sleep(ks.RekeyATD + 5*time.Second)
			}},
		{name: "GM control plane kill -9 and restart", command: "(gm1's isakmpd stops; its SA database and engine, tmd's, stay; down 5 s)", promise: NoLoss,
			realTime: true, watch: 5 * time.Second,
			do: func(r rig) (string, error) {
				if err := r.killGM(0); err != nil {
					return "", err
				}
				if err := r.sleep(5 * time.Second); err != nil {
					return "", err
				}
				if err := r.startGM(0); err != nil {
					return "", err
				}
				return "gm1 registered again", r.until(time.Minute, "gm1's registration", func() (bool, error) { return r.settled() })
			}},
	}
}

// reregistered waits until every member (but the skipped ones) registered
// after the KS's removal and holds its new keys.
func reregistered(r rig, limit time.Duration, skip ...int) error {
	return r.until(limit, "re-registration after the removal", func() (bool, error) { return r.settled(skip...) })
}

// oldScript is the events of the second lab, whose member old is 1.0.1:
// the policy replace of the first lab (the 1.0.1 member gets the rekey
// without the policy-replace instruction: it installs the new SAs and lets
// the old ones run out, SPEC P6), then a removal.
func oldScript(old int) []event {
	replace := script()[1]
	replace.name = "policy replace, one 1.0.1 member"
	replace.command = "crypto gdoi ks rekey (the same change; the 1.0.1 member gets no policy-replace instruction)"
	return []event{replace, oldRemoval(old)}
}

// oldRemoval is a removal in the second lab, whose member old is 1.0.1.
func oldRemoval(old int) event {
	return event{name: "GM removal, one 1.0.1 member", command: "clear crypto gdoi ks members (yes to the WARNING)", promise: Shown,
		do: func(r rig) (string, error) {
			txt, err := r.exec("clear crypto gdoi ks members")
			if err != nil {
				return "", err
			}
			if err := reregistered(r, 95*time.Second, old); err != nil {
				return "", err
			}
			// The 1.0.1 member ignores the removal and keeps the old
			// keys until its own next registration.
			return txt, r.until(disruptVoice+time.Minute, "the 1.0.1 member's next registration", func() (bool, error) { return r.settled() })
		}, watch: 10 * time.Second}
}

// Disruption runs the event script against a lab of o.Members members
// exchanging numbered packets, then a GM removal in a second lab with one
// 1.0.1 member, and accounts every event.
func Disruption(ctx context.Context, o DisruptionOptions) (*DisruptionReport, error) {
	if o.Members < 3 {
		return nil, errors.New("bench disruption: at least 3 members")
	}
	if o.Speed <= 0 {
		o.Speed = 20
	}
	flows := o.Members * (o.Members - 1)
	if o.Interval <= 0 {
		o.Interval = max(20*time.Millisecond, time.Duration(flows)*time.Second/8000)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	rep := &DisruptionReport{Members: o.Members, Speed: o.Speed, Interval: o.Interval, Window: max(disruptTEK, disruptVoice) / 50}
	fmt.Fprintf(out, "starting %d members with their engines (every ordered pair: a packet every %s)...\n", o.Members, o.Interval)
	r, err := startRun(ctx, o, nil, out)
	if err != nil {
		return nil, err
	}
	rep.Register = r.allReg
	old := o.Members - 1
	first, second := script(), oldScript(old)
	total := len(first) + len(second)
	pick := func(evs []event, from int) []event {
		var out []event
		for k, ev := range evs {
			ev.num = from + k
			if len(o.Events) == 0 || slices.Contains(o.Events, ev.num) {
				out = append(out, ev)
			}
		}
		return out
	}
	res, err := r.script(pick(first, 1), -1, total)
	r.close()
	rep.Unknown += r.meter.Unknown()
	rep.Events = append(rep.Events, res...)
	check := func() {
		for i := range rep.Events {
			rep.Events[i].check(rep)
		}
	}
	if err != nil {
		check()
		return rep, err
	}
	if evs := pick(second, len(first)+1); len(evs) > 0 {
		fmt.Fprintf(out, "starting a second lab whose gm%d announces 1.0.1...\n", old+1)
		o.Port++
		r, err = startRun(ctx, o, []int{old}, out)
		if err != nil {
			check()
			return rep, err
		}
		res, err = r.script(evs, old, total)
		r.close()
		rep.Unknown += r.meter.Unknown()
		rep.Events = append(rep.Events, res...)
	}
	check()
	return rep, err
}

// Events is how many events the script has (the -events numbers).
func Events() int { return len(script()) + len(oldScript(0)) }

// script runs the events in turn, each once the group has settled, then
// stops the traffic and accounts each event's window.
func (r *run) script(evs []event, old, total int) ([]EventResult, error) {
	var res []EventResult
	var starts, realStarts []time.Time
	var snaps []map[string]uint64
	var runErr error
	for k, ev := range evs {
		// Settling belongs to the previous event's window, at its speed.
		if err := r.until(2*time.Minute, "the group to settle", func() (bool, error) { return r.settled() }); err != nil {
			runErr = err
			break
		}
		pause := 5 * time.Second // of lab time: quiet traffic before the event
		if r.clk.Rate() == 1 {
			pause = 2 * time.Second
		}
		if err := r.sleep(pause); err != nil {
			runErr = err
			break
		}
		speed := r.o.Speed
		if ev.realTime {
			speed = 1
		}
		r.clk.setRate(speed)
		fmt.Fprintf(r.out, "event %d/%d: %s: %s\n", ev.num, total, ev.name, ev.command)
		starts = append(starts, r.clk.Now())
		realStarts = append(realStarts, time.Now())
		snaps = append(snaps, r.engineCounters())
		note, err := ev.do(r)
		if err == nil && ev.watch > 0 {
			err = r.sleep(ev.watch)
		}
		res = append(res, EventResult{Num: ev.num, Name: ev.name, Command: ev.command, Promise: ev.promise, Speed: speed, Old: old,
			Note: strings.TrimSpace(note)})
		if err != nil {
			runErr = fmt.Errorf("%s: %w", ev.name, err)
			break
		}
		_ = k
	}
	end, realEnd := r.clk.Now(), time.Now()
	r.clk.setRate(1)
	time.Sleep(300 * time.Millisecond) // the last packets arrive
	r.stop()
	r.done.Wait()
	snaps = append(snaps, r.engineCounters())
	for k := range res {
		to, realTo := end, realEnd
		if k+1 < len(starts) {
			to, realTo = starts[k+1], realStarts[k+1]
		}
		res[k].Real = realTo.Sub(realStarts[k])
		res[k].Drops = map[string]uint64{}
		for name, v := range snaps[k+1] {
			if d := v - snaps[k][name]; d > 0 {
				res[k].Drops[name] = d
			}
		}
		res[k].Start, res[k].Lab = starts[k], to.Sub(starts[k])
		res[k].Flows = r.meter.Window(starts[k], to)
	}
	return res, runErr
}

// engineCounters sums the drop counters of every member's engine (and
// fail-open clear sends: covered traffic that left unprotected).
func (r *run) engineCounters() map[string]uint64 {
	sum := map[string]uint64{}
	for i := range r.o.Members {
		st, err := r.l.EngineStats(i)
		if err != nil {
			continue
		}
		for _, c := range st.Counters() {
			switch c.Name {
			case "encaps", "decaps", "bypass", "not_group":
				continue
			}
			sum[c.Name] += c.Value
		}
	}
	return sum
}

// check decides whether the event kept its promise.
func (e *EventResult) check(rep *DisruptionReport) {
	tot := flowmeter.Total(e.Flows)
	switch e.Promise {
	case NoLoss:
		e.Met = tot.Sent > 0 && tot.Lost == 0
		if !e.Met {
			e.Why = fmt.Sprintf("%d of %d packets lost", tot.Lost, tot.Sent)
		}
	case Outage:
		// The re-registration window, a registration (what the whole
		// group's first one took here, at least half a second: a main
		// mode and a pull on a loaded machine), and one sending
		// interval.
		e.Bound = rep.Window + max(rep.Register, 500*time.Millisecond) + rep.Interval
		e.Met = tot.Sent > 0 && tot.LongestGap <= e.Bound
		if !e.Met {
			e.Why = fmt.Sprintf("longest gap %s beyond the bound %s", tot.LongestGap, e.Bound)
		}
	case Shown:
		// The warning's prediction: pairs with the 1.0.1 member may be
		// disrupted, no other pair is.
		var others []flowmeter.Stats
		for _, f := range e.Flows {
			if int(f.Src) != e.Old && int(f.Dst) != e.Old {
				others = append(others, f)
			}
		}
		o := flowmeter.Total(others)
		e.Met = tot.Sent > 0 && o.Lost == 0
		if !e.Met {
			e.Why = fmt.Sprintf("%d packets lost between members of 1.0.2 or later", o.Lost)
		}
	}
}

func (p Promise) String() string {
	switch p {
	case NoLoss:
		return "0 lost"
	case Outage:
		return "outage bounded"
	default:
		return "shown"
	}
}

// Print writes the report: per event, the table of member pairs (all of
// them for small groups; else the pairs that lost packets, the worst one
// and the totals).
func (r *DisruptionReport) Print(w io.Writer) {
	if r.Setup != "" {
		fmt.Fprint(w, r.Setup)
	} else {
		r.printLab(w)
	}
	r.printEvents(w)
}

func (r *DisruptionReport) printLab(w io.Writer) {
	fmt.Fprintf(w, "scenario disruption: %d members in one process (groupvpn lab: ESP engines on in-memory TUNs, ESP in UDP on loopback),\n", r.Members)
	fmt.Fprintf(w, "  every ordered pair sends a numbered packet every %s (alternately on the AES-GCM and the AES-CBC SA);\n", r.Interval)
	fmt.Fprintf(w, "  the lab clock runs %gx real time through the events that promise no loss, 1x through the outages;\n", r.Speed)
	fmt.Fprintf(w, "  gaps are in lab time: the interval between the send times of two packets delivered one after the other.\n")
	fmt.Fprintf(w, "  Ceiling for the outages: the removal-now re-registration window (2%% of the TEK lifetime: %s)\n", r.Window)
	fmt.Fprintf(w, "  + a registration (the group's first one here: %s; at least 500ms) + one interval.\n", r.Register.Round(time.Millisecond))
}

func (r *DisruptionReport) printEvents(w io.Writer) {
	for _, e := range r.Events {
		tot := flowmeter.Total(e.Flows)
		fmt.Fprintf(w, "\nevent %d: %s: %s\n", e.Num, e.Name, e.Command)
		if e.Note != "" {
			fmt.Fprintf(w, "  %s\n", strings.ReplaceAll(e.Note, "\n", "; "))
		}
		fmt.Fprintf(w, "  %-12s %8s %6s %6s %7s %12s\n", "pair", "sent", "lost", "dup", "reord", "longest gap")
		row := func(name string, s flowmeter.Stats) {
			fmt.Fprintf(w, "  %-12s %8d %6d %6d %7d %12s\n", name, s.Sent, s.Lost, s.Duplicated, s.Reordered, s.LongestGap.Round(time.Millisecond))
		}
		shown := 0
		for _, f := range e.Flows {
			if r.Members <= 4 || f.Lost > 0 && shown < 10 {
				row(fmt.Sprintf("gm%d->gm%d", f.Src+1, f.Dst+1), f)
				shown++
			}
		}
		if r.Members > 4 {
			if lossy := countLossy(e.Flows); lossy > shown {
				fmt.Fprintf(w, "  (%d more pairs lost packets)\n", lossy-shown)
			}
			if worst, ok := flowmeter.Worst(e.Flows); ok {
				row(fmt.Sprintf("worst gm%d->gm%d", worst.Src+1, worst.Dst+1), worst)
			}
		}
		row(fmt.Sprintf("all %d pairs", len(e.Flows)), tot)
		if e.Promise != Outage {
			// When the losses were, against the nodes' logs (stamped
			// in lab time too).
			shown = 0
			for _, f := range e.Flows {
				if f.Lost > 0 && shown < 10 {
					fmt.Fprintf(w, "  gm%d->gm%d lost packets sent from %s to %s after the event began (lab time %s to %s)\n",
						f.Src+1, f.Dst+1, f.FirstLost.Sub(e.Start).Round(time.Millisecond), f.LastLost.Sub(e.Start).Round(time.Millisecond),
						f.FirstLost.Format("15:04:05.000"), f.LastLost.Format("15:04:05.000"))
					shown++
				}
			}
		}
		if len(e.Drops) > 0 {
			var ds []string
			for name, v := range e.Drops {
				ds = append(ds, fmt.Sprintf("%s %d", name, v))
			}
			slices.Sort(ds)
			fmt.Fprintf(w, "  engines' drops: %s\n", strings.Join(ds, ", "))
		}
		verdict := "met"
		if !e.Met {
			verdict = "NOT MET: " + e.Why
		}
		switch e.Promise {
		case NoLoss:
			if r.Setup != "" {
				fmt.Fprintf(w, "  promise: 0 lost over %s (real time): %s\n", e.Real.Round(100*time.Millisecond), verdict)
				break
			}
			fmt.Fprintf(w, "  promise: 0 lost over %s (lab time, %gx; %s real): %s\n", e.Lab.Round(time.Second), e.Speed, e.Real.Round(100*time.Millisecond), verdict)
			if e.Speed == 1 && r.Setup == "" {
				fmt.Fprintf(w, "  (in real time: the restart's own latency is not multiplied by the lab clock's speed)\n")
			}
		case Outage:
			fmt.Fprintf(w, "  promise: outage per pair at most %s (real time): longest gap %s over %s: %s\n", e.Bound.Round(time.Millisecond), tot.LongestGap.Round(time.Millisecond), e.Lab.Round(100*time.Millisecond), verdict)
		case Shown:
			fmt.Fprintf(w, "  the seed's WARNING: pairs with the 1.0.1 gm%d lost %d packets (longest gap %s); pairs of members of 1.0.2 or later lost none: %s\n",
				e.Old+1, tot.Lost, tot.LongestGap.Round(time.Millisecond), verdict)
		}
	}
	if r.Unknown > 0 {
		fmt.Fprintf(w, "\n%d delivered payloads were not packets the meter sent\n", r.Unknown)
	}
}

func countLossy(ss []flowmeter.Stats) int {
	n := 0
	for _, s := range ss {
		if s.Lost > 0 {
			n++
		}
	}
	return n
}
