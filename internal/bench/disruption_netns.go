package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// NetnsDisruptionOptions configure `groupvpn bench disruption --netns`.
type NetnsDisruptionOptions struct {
	Members int    // GM routers, each with a host behind it; at least 3
	Bin     string // the groupvpn binary the daemons run from
	// Interval is how often every ordered pair of hosts sends a packet;
	// 0: 10 ms.
	Interval time.Duration
	// Events, when set, runs only these events of the script (1-based, the
	// numbers of bench.Events; NetnsEvents lists those this variant has).
	Events []int
	// Tag prefixes the namespaces' and links' names (default "gvdn"; at
	// most 6 characters).
	Tag string
	Out io.Writer // progress; nil: none
}

// NetnsEvents are the script's events the --netns variant runs (the
// numbers of bench.Events): all of them; 8 and 9 in a second group whose
// last member announces 1.0.1.
func NetnsEvents() []int {
	var n []int
	for i := range Events() {
		n = append(n, i+1)
	}
	return n
}

// The addresses of the --netns topology: the KS and the GM routers on
// links of their own to a core namespace (10.237.0.0/16), host i behind
// GM i on 10.10.i.0/24, inside the lab policy's protected 10.10.0.0/16.
var netnsKS = netip.MustParseAddr("10.237.0.1")

func netnsGMCore(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 237, byte(i + 1), 2}) }
func netnsLAN(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 10, byte(i + 1), 0}), 24)
}
func netnsGMLAN(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 10, byte(i + 1), 1}) }
func netnsHost(i int) netip.Addr  { return netip.AddrFrom4([4]byte{10, 10, byte(i + 1), 2}) }

// netnsFlowPort is the UDP port the hosts exchange the numbered packets on.
const netnsFlowPort = 7000

// The KS configuration of the --netns run: the lab's (same names, so the
// script's policy edits apply) on the namespaces' addresses.
const netnsKSConf = `! groupvpn bench disruption --netns: key server
hostname ks
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 19
 lifetime 86400
crypto isakmp key bench-secret address 10.237.0.0 255.255.0.0
crypto key import ec LAB-REKEY file %s
!
ip access-list extended lab-traffic
 permit ip 10.10.0.0 0.0.255.255 10.10.0.0 0.0.255.255
ip access-list extended lab-voice
 permit udp 10.20.0.0 0.0.255.255 10.20.0.0 0.0.255.255 eq 5060
!
crypto ipsec transform-set lab-gcm esp-gcm 256
crypto ipsec transform-set lab-cbc esp-aes 128 esp-sha256-hmac
crypto ipsec profile lab-data
 set transform-set lab-gcm
 set security-association lifetime seconds %d
crypto ipsec profile lab-voice
 set transform-set lab-cbc
 set security-association lifetime seconds %d
!
crypto gdoi group LAB
 identity number 1001
 server local
  rekey algorithm aes 128
  rekey lifetime seconds %d
  rekey authentication mypubkey ec LAB-REKEY
  rekey transport unicast
  address ipv4 10.237.0.1
  sa ipsec 1
   profile lab-data
   match address ipv4 lab-traffic
   replay counter window-size 64
  sa ipsec 2
   profile lab-voice
   match address ipv4 lab-voice
   replay time window-size 5
end
`

const netnsGMConf = `! groupvpn bench disruption --netns: group member %d
hostname gm%[1]d%s
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key bench-secret address 10.237.0.1
!
crypto gdoi group LAB
 identity number 1001
 server address ipv4 10.237.0.1
!
crypto map LAB-MAP 10 gdoi
 set group LAB
interface eth0
 crypto map LAB-MAP
end
`

// proc is one daemon process of the --netns run.
type proc struct {
	name string
	ns   *testnet.Netns
	args []string
	log  string // its output, appended across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := p.ns.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// kill sends SIGKILL (kill -9: nothing saved, nothing cleaned up) and
// waits for the process to end.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (p *proc) signal(s syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	return p.cmd.Process.Signal(s)
}

// tail is the end of the process's output, for error reports.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// nsGM is one GM router: tmd -tun and isakmpd, a host behind it.
type nsGM struct {
	dir          string
	tmd, isakmpd *proc
	ns, host     *testnet.Netns
	conn         *net.UDPConn // the host's socket (in the host namespace)
}

// nrun is the --netns counterpart of run: real processes.
type nrun struct {
	ctx    context.Context
	o      NetnsDisruptionOptions
	out    io.Writer
	bin    string
	ksDir  string
	ks     *proc
	gms    []*nsGM
	meter  *flowmeter.Meter
	stop   context.CancelFunc
	done   sync.WaitGroup
	allReg time.Duration
}

// DisruptionNetns runs the event script with real processes: a KS and
// o.Members GM routers in network namespaces (each GM: `groupvpn tmd -tun`
// with a real TUN device and `groupvpn isakmpd`), a host namespace behind
// every GM and a core namespace routing between them; every ordered pair of
// hosts exchanges numbered UDP packets (flowmeter's payload) through the
// GMs' engines. Everything runs in real time. It needs root; skipped says
// why it did not run.
func DisruptionNetns(ctx context.Context, o NetnsDisruptionOptions) (rep *DisruptionReport, skipped string, err error) {
	if o.Members < 3 {
		return nil, "", errors.New("bench disruption --netns: at least 3 members")
	}
	if o.Members > 50 {
		return nil, "", errors.New("bench disruption --netns: at most 50 members")
	}
	if len(o.Tag) > 6 {
		return nil, "", errors.New("bench disruption --netns: the tag is at most 6 characters")
	}
	for _, e := range o.Events {
		if !slices.Contains(NetnsEvents(), e) {
			return nil, "", fmt.Errorf("bench disruption --netns: event %d does not run in namespaces (they are %v)", e, NetnsEvents())
		}
	}
	if os.Geteuid() != 0 {
		return nil, "needs root (network namespaces, TUN devices, raw sockets)", nil
	}
	if o.Bin == "" {
		if o.Bin, err = os.Executable(); err != nil {
			return nil, "", err
		}
	}
	var runErr error
	skipped, err = runTB(func(t testing.TB) {
		rep, runErr = disruptionNetns(t, ctx, o)
	})
	if err == nil {
		err = runErr
	}
	return rep, skipped, err
}

func disruptionNetns(t testing.TB, ctx context.Context, o NetnsDisruptionOptions) (*DisruptionReport, error) {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.Tag == "" {
		o.Tag = "gvdn"
	}
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ip", "sysctl", "nft")
	if o.Out == nil {
		o.Out = io.Discard
	}
	old := o.Members - 1 // the 1.0.1 member of the second run
	pick := func(evs []event) []event {
		var out []event
		for _, ev := range evs {
			if len(o.Events) == 0 || slices.Contains(o.Events, ev.num) {
				out = append(out, ev)
			}
		}
		return out
	}
	rep := &DisruptionReport{Members: o.Members, Speed: 1, Interval: o.Interval, Window: max(disruptTEK, disruptVoice) / 50}
	runs := []struct {
		tag string
		old int
		evs []event
	}{{o.Tag, -1, pick(netnsScript())}, {o.Tag + "o", old, pick(netnsOldScript(old))}}
	var err error
	for _, run := range runs {
		if len(run.evs) == 0 {
			continue
		}
		if run.old >= 0 {
			fmt.Fprintf(o.Out, "starting a second group whose gm%d announces 1.0.1...\n", run.old+1)
		}
		var r *nrun
		if r, err = startNetns(t, ctx, o, run.tag, run.old); err != nil {
			break
		}
		if rep.Register == 0 {
			rep.Register = r.allReg
		}
		var res []EventResult
		res, err = r.script(run.evs, Events(), run.old)
		r.close()
		rep.Events = append(rep.Events, res...)
		rep.Unknown += r.meter.Unknown()
		if err != nil {
			break
		}
	}
	rep.Setup = netnsSetup(o, rep.Register)
	for i := range rep.Events {
		rep.Events[i].check(rep)
	}
	return rep, err
}

// startNetns builds a topology whose names start with tag, starts the
// daemons (member old, if >= 0, announcing 1.0.1), waits for the group to
// register and starts the traffic.
func startNetns(t testing.TB, ctx context.Context, o NetnsDisruptionOptions, tag string, old int) (*nrun, error) {
	out := o.Out
	r := &nrun{ctx: ctx, o: o, out: out, bin: o.Bin, meter: flowmeter.New()}
	fmt.Fprintf(out, "building %d GM routers, their hosts, a KS and a core in network namespaces...\n", o.Members)
	core := testnet.NewNetns(t, tag+"-core")
	ksNS := testnet.NewNetns(t, tag+"-ks")
	forward := func(ns *testnet.Netns) {
		ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
	}
	forward(core)
	testnet.VethBetween(t, tag+"k", core, ksNS, netip.MustParsePrefix("10.237.0.254/24"), netip.PrefixFrom(netnsKS, 24))
	ksNS.Run(t, "ip", "route", "add", "default", "via", "10.237.0.254")
	for i := range o.Members {
		g := &nsGM{ns: testnet.NewNetns(t, fmt.Sprintf("%s-g%d", tag, i+1)), host: testnet.NewNetns(t, fmt.Sprintf("%s-h%d", tag, i+1))}
		forward(g.ns)
		gw := netip.AddrFrom4([4]byte{10, 237, byte(i + 1), 1})
		testnet.VethBetween(t, fmt.Sprintf("%sc%d", tag, i+1), core, g.ns, netip.PrefixFrom(gw, 24), netip.PrefixFrom(netnsGMCore(i), 24))
		testnet.VethBetween(t, fmt.Sprintf("%sl%d", tag, i+1), g.ns, g.host, netip.PrefixFrom(netnsGMLAN(i), 24), netip.PrefixFrom(netnsHost(i), 24))
		core.Run(t, "ip", "route", "add", netnsLAN(i).String(), "via", netnsGMCore(i).String())
		g.ns.Run(t, "ip", "route", "add", "default", "via", gw.String())
		g.host.Run(t, "ip", "route", "add", "default", "via", netnsGMLAN(i).String())
		r.gms = append(r.gms, g)
	}
	t.Cleanup(r.close)

	// The daemons.
	dir, err := os.MkdirTemp("", "gvdn-") // short: unix socket paths are limited
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r.ksDir = filepath.Join(dir, "ks")
	os.Mkdir(r.ksDir, 0o700)
	testnet.WriteECKey(t, filepath.Join(r.ksDir, "rekey.pem"))
	ksConf := filepath.Join(r.ksDir, "isakmpd.conf")
	if err := os.WriteFile(ksConf, []byte(fmt.Sprintf(netnsKSConf, filepath.Join(r.ksDir, "rekey.pem"),
		int(disruptTEK/time.Second), int(disruptVoice/time.Second), int(disruptKEK/time.Second))), 0o600); err != nil {
		return nil, err
	}
	r.ks = &proc{name: "ks isakmpd", ns: ksNS, log: filepath.Join(r.ksDir, "isakmpd.log"),
		args: []string{r.bin, "isakmpd", "-f", ksConf, "-socket", filepath.Join(r.ksDir, "isakmpd.sock"), "-state", filepath.Join(r.ksDir, "isakmpd.db")}}
	if err := r.ks.start(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := r.waitSocket(r.ks, filepath.Join(r.ksDir, "isakmpd.sock")); err != nil {
		return nil, err
	}
	for i, g := range r.gms {
		g.dir = filepath.Join(dir, fmt.Sprintf("g%d", i+1))
		os.Mkdir(g.dir, 0o700)
		conf := filepath.Join(g.dir, "isakmpd.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(netnsGMConf, i+1, versionLine(i == old))), 0o600); err != nil {
			return nil, err
		}
		g.tmd = &proc{name: fmt.Sprintf("gm%d tmd", i+1), ns: g.ns, log: filepath.Join(g.dir, "tmd.log"),
			args: []string{r.bin, "tmd", "-socket", filepath.Join(g.dir, "tmd.sock"), "-tun", "gvtun",
				"-local", netnsLAN(i).String(), "-src", netnsGMLAN(i).String(), "-group", "LAB"}}
		g.isakmpd = &proc{name: fmt.Sprintf("gm%d isakmpd", i+1), ns: g.ns, log: filepath.Join(g.dir, "isakmpd.log"),
			args: []string{r.bin, "isakmpd", "-f", conf, "-tmd", filepath.Join(g.dir, "tmd.sock"),
				"-socket", filepath.Join(g.dir, "isakmpd.sock"), "-state", filepath.Join(g.dir, "isakmpd.db")}}
		if err := g.tmd.start(); err != nil {
			return nil, err
		}
		if err := r.waitSocket(g.tmd, filepath.Join(g.dir, "tmd.sock")); err != nil {
			return nil, err
		}
		if err := g.isakmpd.start(); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "registering %d members...\n", o.Members)
	if err := r.until(time.Minute, "every member's registration", func() (bool, error) { return r.settled() }); err != nil {
		return nil, err
	}
	for i, g := range r.gms {
		if err := r.until(10*time.Second, fmt.Sprintf("gm%d's protected route into its TUN", i+1), func() (bool, error) {
			out, _ := g.ns.Command("ip", "route", "show", "table", "1001").CombinedOutput()
			return strings.Contains(string(out), "10.10.0.0/16 dev gvtun"), nil
		}); err != nil {
			return nil, err
		}
	}
	r.allReg = time.Since(start)

	// The hosts' sockets, each opened in its namespace and used from here.
	for i, g := range r.gms {
		g.host.Do(t, func() error {
			var err error
			g.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netnsHost(i), netnsFlowPort)))
			return err
		})
	}
	pctx, stop := context.WithCancel(ctx)
	r.stop = stop
	for _, g := range r.gms {
		r.done.Add(1)
		go func() {
			defer r.done.Done()
			buf := make([]byte, 2048)
			for {
				n, err := g.conn.Read(buf)
				if err != nil {
					return // closed
				}
				r.meter.Received(buf[:n], time.Now())
			}
		}()
	}
	gen := &flowmeter.Generator{Meter: r.meter, Flows: flowmeter.Pairs(o.Members), Interval: o.Interval,
		Send: func(f flowmeter.Flow, p []byte) {
			r.gms[f.Src].conn.WriteToUDPAddrPort(p, netip.AddrPortFrom(netnsHost(int(f.Dst)), netnsFlowPort))
		}}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		gen.Run(pctx)
	}()

	return r, nil
}

// versionLine is the configuration line of a 1.0.1 member.
func versionLine(old bool) string {
	if old {
		return "\ngroupvpn version 1.0.1"
	}
	return ""
}

func netnsSetup(o NetnsDisruptionOptions, register time.Duration) string {
	return fmt.Sprintf(`scenario disruption --netns: a KS and %d GM routers in network namespaces, each GM running groupvpn tmd -tun (a real TUN
  device, ESP on raw sockets) and groupvpn isakmpd as processes, a host behind each GM, a core namespace routing between them;
  every ordered pair of hosts sends a numbered UDP packet every %s (the lab-traffic SA); everything in real time.
  Gaps: the interval between the send times of two packets delivered one after the other.
  Ceiling for the outages: the removal-now re-registration window (2%% of the TEK lifetime: %s)
  + a registration (the group's first one here: %s; at least 500ms) + one interval.
`, o.Members, o.Interval, max(disruptTEK, disruptVoice)/50, register.Round(time.Millisecond))
}

func (r *nrun) close() {
	if r.stop != nil {
		r.stop()
	}
	for _, g := range r.gms {
		if g.conn != nil {
			g.conn.Close()
		}
	}
	r.done.Wait()
	if r.ks != nil {
		r.ks.kill()
	}
	for _, g := range r.gms {
		if g.isakmpd != nil {
			g.isakmpd.kill()
		}
		if g.tmd != nil {
			g.tmd.kill()
		}
	}
}

// waitSocket waits for p's control socket to answer.
func (r *nrun) waitSocket(p *proc, path string) error {
	return r.until(15*time.Second, p.name+"'s socket "+path, func() (bool, error) {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			return false, fmt.Errorf("%s ended:\n%s", p.name, p.tail())
		default:
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
}

func (r *nrun) sleep(d time.Duration) error {
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func (r *nrun) until(limit time.Duration, what string, cond func() (bool, error)) error {
	end := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(end) {
			return fmt.Errorf("bench disruption --netns: %s: not within %s", what, limit)
		}
		if err := r.sleep(50 * time.Millisecond); err != nil {
			return err
		}
	}
}

// ctlDo runs a command on a daemon's control socket in one session,
// answering yes to each of its questions.
func (r *nrun) ctlDo(socket, line string) (*ctl.WireResponse, error) {
	c, err := ctl.Dial(socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, &ctl.WireRequest{Cmd: line})
	for i := 0; err == nil && resp.Prompt != "" && i < 3; i++ {
		resp, err = c.Do(ctx, &ctl.WireRequest{Cmd: line, Token: resp.Token, Answer: "yes"})
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", line, err)
	}
	if !resp.OK {
		return nil, fmt.Errorf("%s: %s", line, resp.Error)
	}
	return resp, nil
}

// exec runs a KS command, as `groupvpn cli -s SOCKET -c LINE` would.
func (r *nrun) exec(line string) (string, error) {
	resp, err := r.ctlDo(filepath.Join(r.ksDir, "isakmpd.sock"), line)
	if err != nil {
		return "", fmt.Errorf("bench disruption --netns: KS: %w", err)
	}
	return resp.Text, nil
}

// gdoiShow is what the rig reads of a node's `show crypto gdoi | json`
// (the versioned schema of docs/json.md, show.GDOIJSON), in the shapes the
// scenario's other rig (in process) uses: the KS's group as a
// ks.GroupSnapshot with the fields the events read (TEK SPIs, the rekey
// sequence number, rekeys sent, the KEK SPI), each member's state and last
// rekey sequence number.
type gdoiShow struct {
	KS []ks.GroupSnapshot
	GM []gmShow
}

type gmShow struct {
	State string // registration_state: idle | phase1 | registering | registered
	Seq   uint32 // last_rekey_sequence
}

// errShowUnreadable: a daemon answered `show crypto gdoi` with data the rig
// cannot read (not the schema it knows). Unlike a daemon not answering
// (restarting), it ends the scenario at once with the reason, instead of
// reading as "not settled yet" until a timeout.
var errShowUnreadable = errors.New("unreadable | json")

func (r *nrun) show(socket string) (gdoiShow, error) {
	var g gdoiShow
	resp, err := r.ctlDo(socket, "show crypto gdoi")
	if err != nil {
		return g, err
	}
	var v show.GDOIJSON
	if err := json.Unmarshal(resp.Data, &v); err != nil {
		return g, fmt.Errorf("show crypto gdoi: %w: %w", errShowUnreadable, err)
	}
	if v.Schema != show.Schema {
		return g, fmt.Errorf("show crypto gdoi: %w: schema %q, not %q", errShowUnreadable, v.Schema, show.Schema)
	}
	for _, k := range v.KSGroups {
		s := ks.GroupSnapshot{Name: k.Name, Seq: k.RekeySequence, Rekeys: k.RekeysSent}
		if b, err := hex.DecodeString(strings.TrimPrefix(k.KEK.SPI, "0x")); err == nil && len(b) == len(s.KEKSPI) {
			copy(s.KEKSPI[:], b)
		}
		for _, t := range k.TEKs {
			spi, err := strconv.ParseUint(strings.TrimPrefix(t.SPI, "0x"), 16, 32)
			if err != nil {
				return g, fmt.Errorf("show crypto gdoi: %w: TEK SPI %q: %w", errShowUnreadable, t.SPI, err)
			}
			s.TEKs = append(s.TEKs, ks.TEKSnapshot{SPI: uint32(spi)})
		}
		g.KS = append(g.KS, s)
	}
	for _, m := range v.GMGroups {
		g.GM = append(g.GM, gmShow{State: m.RegistrationState, Seq: m.LastRekeySequence})
	}
	return g, nil
}

func (r *nrun) ksGroup() (ks.GroupSnapshot, error) {
	g, err := r.show(filepath.Join(r.ksDir, "isakmpd.sock"))
	if err != nil {
		return ks.GroupSnapshot{}, err
	}
	if len(g.KS) == 0 {
		return ks.GroupSnapshot{}, errors.New("bench disruption --netns: the KS serves no group")
	}
	return g.KS[0], nil
}

// settled reports whether every member (but those in skip) is registered
// and its tmd holds every TEK the KS holds, unexpired.
func (r *nrun) settled(skip ...int) (bool, error) {
	k, err := r.ksGroup()
	if errors.Is(err, errShowUnreadable) {
		return false, err
	}
	if err != nil {
		return false, nil // restarting
	}
	for i, g := range r.gms {
		if slices.Contains(skip, i) {
			continue
		}
		s, err := r.show(filepath.Join(g.dir, "isakmpd.sock"))
		if errors.Is(err, errShowUnreadable) {
			return false, err
		}
		if err != nil || len(s.GM) == 0 || s.GM[0].State != "registered" {
			return false, nil
		}
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		c, err := tmd.Dial(ctx, filepath.Join(g.dir, "tmd.sock"), "bench", nil)
		cancel()
		if err != nil {
			return false, fmt.Errorf("gm%d's tmd: %w", i+1, err)
		}
		held := c.TEKs()
		c.Close()
		now := time.Now()
		for _, t := range k.TEKs {
			if !slices.ContainsFunc(held, func(h sadb.TEK) bool { return h.SPI == t.SPI && now.Before(h.Expires) }) {
				return false, nil
			}
		}
	}
	return true, nil
}

// editKS rewrites the KS's configuration file and reloads it (SIGHUP),
// waiting until `show crypto gdoi ks policy` shows the change.
func (r *nrun) editKS(edit func(string) string) error {
	path := filepath.Join(r.ksDir, "isakmpd.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := edit(string(b))
	if n == string(b) {
		return errors.New("bench disruption --netns: the configuration edit changed nothing")
	}
	before, err := r.exec("show crypto gdoi ks policy")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(n), 0o600); err != nil {
		return err
	}
	if err := r.ks.signal(syscall.SIGHUP); err != nil {
		return err
	}
	return r.until(10*time.Second, "the KS's reload", func() (bool, error) {
		now, err := r.exec("show crypto gdoi ks policy")
		return err == nil && now != before, err
	})
}

// The rig of the real processes: real time; the KS's and the GMs'
// isakmpd killed with SIGKILL and started again.

func (r *nrun) now() time.Time { return time.Now() }

func (r *nrun) killKS() error {
	r.ks.kill()
	return nil
}

// startKS starts the KS's isakmpd again (from its state file) and waits for
// its control socket.
func (r *nrun) startKS() error {
	if err := r.ks.start(); err != nil {
		return err
	}
	return r.waitSocket(r.ks, filepath.Join(r.ksDir, "isakmpd.sock"))
}

func (r *nrun) ksDown() time.Duration { return 5 * time.Second }

// ksRestarted has the restarted KS rekey the group (asked: its scheduled
// rekey is up to a TEK lifetime away), which the members accept only if it
// kept its keys and sequence numbers.
func (r *nrun) ksRestarted() (string, error) {
	g, err := r.ksGroup()
	if err != nil {
		return "", err
	}
	seq := g.Seq
	if _, err := r.exec("crypto gdoi ks rekey"); err != nil {
		return "", err
	}
	if err := r.until(30*time.Second, "every member accepting the restarted KS's rekey", func() (bool, error) {
		for _, gm := range r.gms {
			s, err := r.show(filepath.Join(gm.dir, "isakmpd.sock"))
			if err != nil || len(s.GM) == 0 || s.GM[0].Seq <= seq {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("the restarted KS (sequence number %d from its state file) rekeyed; every member accepted it", seq), nil
}

// killGM kills member i's isakmpd; its tmd forwards on.
func (r *nrun) killGM(i int) error {
	r.gms[i].isakmpd.kill()
	return nil
}

func (r *nrun) startGM(i int) error { return r.gms[i].isakmpd.start() }

// netnsScript is script() (events 1-7) for real processes: the same
// events, two of them described as they happen here.
func netnsScript() []event {
	evs := script()
	for k := range evs {
		evs[k].num = k + 1
	}
	evs[5].command = "(kill -9 of the KS's isakmpd; down 5 s; restarted from its state file; then crypto gdoi ks rekey)"
	evs[6].command = "(kill -9 of gm1's isakmpd; its tmd, SA database and engine, stays; down 5 s; restarted)"
	return evs
}

// netnsOldScript is oldScript (events 8, 9) for real processes, in a
// group whose member old announces 1.0.1.
func netnsOldScript(old int) []event {
	evs := oldScript(old)
	first := len(script())
	for k := range evs {
		evs[k].num = first + k + 1
	}
	return evs
}

// engineCounters sums the drop counters of every GM's engine (tmd's), as
// run.engineCounters does for the lab's.
func (r *nrun) engineCounters() map[string]uint64 {
	sum := map[string]uint64{}
	for _, g := range r.gms {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		c, err := tmd.Dial(ctx, filepath.Join(g.dir, "tmd.sock"), "bench", nil)
		if err != nil {
			cancel()
			continue
		}
		_, dp, err := c.Counters(ctx)
		c.Close()
		cancel()
		if err != nil || dp == nil {
			continue
		}
		for _, c := range dp.Counters {
			switch c.Name {
			case "encaps", "decaps", "bypass", "not_group":
				continue
			}
			sum[c.Name] += c.Value
		}
	}
	return sum
}

// script runs the events in turn, each once the group has settled, then
// stops the traffic and accounts each event's window. old is the 1.0.1
// member (-1: none).
func (r *nrun) script(evs []event, total, old int) ([]EventResult, error) {
	var res []EventResult
	var starts []time.Time
	var snaps []map[string]uint64
	var runErr error
	for _, ev := range evs {
		if err := r.until(2*time.Minute, "the group to settle", func() (bool, error) { return r.settled() }); err != nil {
			runErr = err
			break
		}
		if err := r.sleep(2 * time.Second); err != nil {
			runErr = err
			break
		}
		fmt.Fprintf(r.out, "event %d/%d: %s: %s\n", ev.num, total, ev.name, ev.command)
		starts = append(starts, time.Now())
		snaps = append(snaps, r.engineCounters())
		note, err := ev.do(r)
		if err == nil && ev.watch > 0 {
			err = r.sleep(ev.watch)
		}
		res = append(res, EventResult{Num: ev.num, Name: ev.name, Command: ev.command, Promise: ev.promise, Speed: 1, Old: old,
			Note: strings.TrimSpace(note)})
		if err != nil {
			runErr = fmt.Errorf("%s: %w", ev.name, err)
			break
		}
	}
	end := time.Now()
	time.Sleep(300 * time.Millisecond) // the last packets arrive
	r.stop()
	snaps = append(snaps, r.engineCounters())
	for k := range res {
		to := end
		if k+1 < len(starts) {
			to = starts[k+1]
		}
		res[k].Drops = map[string]uint64{}
		for name, v := range snaps[k+1] {
			if d := v - snaps[k][name]; d > 0 {
				res[k].Drops[name] = d
			}
		}
		res[k].Real = to.Sub(starts[k])
		res[k].Lab = res[k].Real
		res[k].Flows = r.meter.Window(starts[k], to)
	}
	if runErr != nil {
		var logs bytes.Buffer
		for _, p := range r.procs() {
			fmt.Fprintf(&logs, "\n--- %s (end of its log):\n%s", p.name, p.tail())
		}
		runErr = fmt.Errorf("%w%s", runErr, logs.String())
	}
	return res, runErr
}

func (r *nrun) procs() []*proc {
	ps := []*proc{r.ks}
	for _, g := range r.gms {
		ps = append(ps, g.tmd, g.isakmpd)
	}
	return ps
}
