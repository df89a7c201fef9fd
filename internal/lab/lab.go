// Package lab runs a key server and N group members in one process on
// loopback addresses over real UDP (`groupvpn lab`, no root, no setup).
// Every node gets its own IOS-style configuration generated from a
// template and parsed by the real parser, exactly as isakmpd would read it.
package lab

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/groupvpn/groupvpn/internal/daemon"
	"github.com/groupvpn/groupvpn/internal/ikev2d"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/store"
)

// Options configure a lab.
type Options struct {
	Members int           // group members, default 8
	Port    uint16        // 0: 848 as root, else 10848
	Dir     string        // where configs, keys and sockets go; "" makes a temp dir
	Out     io.Writer     // progress and tables
	Logger  *slog.Logger  // the nodes' logs; nil: discard
	Timeout time.Duration // for all registrations, default 30 s
	Hold    bool          // GMs wait for Lab.Release before registering
	// Now is every node's clock (nil: time.Now); tests pass a fake one.
	Now func() time.Time
	// Old lists members (0-based) that announce version 1.0.1 and behave
	// like it (SPEC V1), for mixed-version groups.
	Old []int
	// Secondary configures the KS with `redundancy`, which makes it a
	// secondary key server (it refuses removal and triggered rekeys).
	Secondary bool
	// KeyServers is the number of key servers (0 or 1: one, as before;
	// 2 or 3: cooperative key servers, SPEC C1, coop.go): ks1, ks2, ks3 on
	// KSAddrN(0..2) with `redundancy`, priorities 100, 50, 25, each other
	// as peers and the lab's short COOP timers; every member lists them
	// all (`server address ipv4` once per KS).
	KeyServers int
	// COOPPeriod, COOPDead and COOPWait are the cooperative key servers'
	// `timers announce`, `timers dead` and `timers election-wait` (0: the
	// lab's 2 s, 6 s and 2 s; whole seconds).
	COOPPeriod, COOPDead, COOPWait time.Duration
	// KSVersion, when set, is the version key server i (0-based) announces
	// (`groupvpn version`), e.g. "1.0.1" for a mixed-version COOP group.
	KSVersion map[int]string
	// NoGMSockets starts the members without control sockets (benchmarks:
	// one file descriptor per member fewer).
	NoGMSockets bool
	// KSListen, when set, opens the key server's socket (a benchmark puts
	// the KS behind the iked broker); nil: a UDP socket of its own.
	KSListen func(netip.AddrPort) (node.PacketConn, error)
	// KSListenN, when set, opens key server i's (0-based) socket; it
	// takes the place of KSListen (`bench coop --nodes` counts the
	// octets a key server sends).
	KSListenN func(i int, a netip.AddrPort) (node.PacketConn, error)
	// DataPlane runs every member's ESP engine (at most 250 members):
	// in-memory TUN devices, ESP in UDP on loopback, no root; Traffic
	// sends through them.
	DataPlane bool
	// TEKLifetime and VoiceLifetime are the lifetimes of the TEKs of
	// lab-data and lab-voice, KEKLifetime the KEK's (0: 3600 s, 7200 s,
	// 86400 s); the configuration's bounds apply (TEKs 120 s at least,
	// the KEK 300 s).
	TEKLifetime, VoiceLifetime, KEKLifetime time.Duration
	// State keeps the key server's state in Dir/ks.db (isakmpd -state),
	// so that KillKS can restart it.
	State bool
	// Base is the first address of the members' loopback addresses
	// (127.B.C.0; zero: DefaultBase): member i is 127.B.(C+i/250).(1+i%250).
	// ValidateBase checks it.
	Base netip.Addr
	// All prints every member's rows in Summary and the traffic report;
	// otherwise a lab of more than SummaryRows members is summarised.
	All bool
	// Deliver, when set, is handed the UDP payload of every packet the
	// data plane delivers to the hosts behind member i (0-based) (it must
	// not keep it); SendUDP sends such packets.
	Deliver func(i int, payload []byte)
	// Protocol is how members register: ProtocolGDOI ("" too: isakmpd's
	// daemons) or ProtocolGIKEv2 (ikev2d routers, gikev2.go; one key
	// server, IKEv2Config required).
	Protocol string
	// IKEv2Config maps a node's parsed configuration to ikev2d's, as
	// `groupvpn ikev2d` does (internal/app passes its mapping).
	IKEv2Config func(cfg *policy.Config, listen []netip.AddrPort, port uint16) (ikev2d.Config, error)
}

// Lab is a running lab.
type Lab struct {
	Dir     string
	Port    uint16
	KS      *daemon.Daemon
	GMs     []*daemon.Daemon
	Sockets map[string]string // node name -> control socket

	ctx     context.Context
	stop    context.CancelFunc
	running sync.WaitGroup
	mu      sync.Mutex
	failed  error // the first node that stopped with an error

	// Each node's process and how to start it again (KillKS, KillGM).
	kss []*ksNode // the key servers: one, or 2-3 cooperating (coop.go)
	// coopPeriod and coopDead are the COOP timers of cooperating key
	// servers (zero: one key server).
	coopPeriod, coopDead time.Duration
	nks                  int // the number of key servers configured
	gmProcs              []*proc
	gmNew                []func(hold bool) (*daemon.Daemon, error)
	sadbs                []*labSADB // Options.DataPlane: each member's SA database (its tmd's)
	deliver              func(int, []byte)
	base                 netip.Addr // Options.Base
	all                  bool       // Options.All

	v2  *v2Lab           // Options.Protocol ProtocolGIKEv2 (gikev2.go); nil: GDOI
	now func() time.Time // Options.Now
	// skew is how far the G-IKEv2 lab's engines' clock runs ahead of the
	// wall clock (SkipAhead); skewed: they run on it.
	skew   atomic.Int64
	skewed bool

	dp     []*dpMember // Options.DataPlane (dataplane.go)
	dpDone chan struct{}
	dpWG   sync.WaitGroup
}

// Close stops every node and waits until their sockets are closed, so the
// addresses can be bound again.
func (l *Lab) Close() {
	l.stopDataPlane()
	l.stop()
	l.running.Wait()
	for _, k := range l.kss {
		if k.store != nil {
			k.store.Close()
		}
	}
}

// KSStatePath is where key server i keeps its state (Options.State):
// Dir/ks.db for a lab's one key server, Dir/ks1.db, ks2.db, ... for
// cooperating ones.
func (l *Lab) KSStatePath(i int) string {
	if l.nks > 1 {
		return filepath.Join(l.Dir, fmt.Sprintf("ks%d.db", i+1))
	}
	return filepath.Join(l.Dir, "ks.db")
}

// ksNode is one key server of the lab: its daemon, its process, how to
// start it again and its state store (Options.State, ks1 only).
type ksNode struct {
	name   string // "ks", or ks1, ks2, ks3 with cooperative key servers
	addr   netip.Addr
	d      *daemon.Daemon
	proc   *proc
	new    func() (*daemon.Daemon, error)
	store  *store.Store
	socket string
	down   bool // killed (KillKS) and not started again
}

// proc is one running node: what kill -9 would end.
type proc struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// kill ends the node at once, as kill -9 would: its goroutine returns
// without saving or sending anything, its sockets close; it waits until
// they are.
func (p *proc) kill() {
	p.cancel()
	<-p.done
}

func (l *Lab) run(ctx context.Context, d *daemon.Daemon, socket string) *proc {
	ctx, cancel := context.WithCancel(ctx)
	p := &proc{cancel: cancel, done: make(chan struct{})}
	l.running.Add(1)
	go func() {
		defer l.running.Done()
		defer close(p.done)
		if err := d.Run(ctx, socket); err != nil && ctx.Err() == nil {
			l.mu.Lock()
			if l.failed == nil {
				l.failed = fmt.Errorf("lab: %s stopped: %w", d.Config().Hostname, err)
			}
			l.mu.Unlock()
		}
	}()
	return p
}

// KSAddr and GMAddr place the nodes on 127.0.0.0/8, which Linux routes to
// the loopback interface with no configuration.
var KSAddr = netip.MustParseAddr("127.0.1.1")

// KSAddrN is the address of key server i (0-based): ks1 is KSAddr,
// ks2 127.0.1.2, ks3 127.0.1.3.
func KSAddrN(i int) netip.Addr {
	b := KSAddr.As4()
	b[3] += byte(i)
	return netip.AddrFrom4(b)
}

// DefaultBase is the members' address base: gm1 is 127.0.2.1.
var DefaultBase = netip.MustParseAddr("127.0.2.0")

// GMAddr is the address of member i (0-based) from DefaultBase.
func GMAddr(i int) netip.Addr { return gmAddr(DefaultBase, i) }

// GMAddr is the address of member i (0-based) of this lab (Options.Base).
func (l *Lab) GMAddr(i int) netip.Addr { return gmAddr(l.base, i) }

func gmAddr(base netip.Addr, i int) netip.Addr {
	b := base.As4()
	return netip.AddrFrom4([4]byte{127, b[1], b[2] + byte(i/250), byte(1 + i%250)})
}

// ValidateBase checks a members' address base for n members: an IPv4
// loopback address 127.B.C.0 (Linux routes 127.0.0.0/8 to lo with no
// configuration), room for n members (250 per /24, C+(n-1)/250 <= 255),
// and no /24 shared with the key servers (127.0.1.0/24).
func ValidateBase(base netip.Addr, n int) error {
	if !base.Is4() || !base.IsLoopback() {
		return fmt.Errorf("lab: address base %s is not an IPv4 loopback address (127.0.0.0/8)", base)
	}
	b := base.As4()
	if b[3] != 0 {
		return fmt.Errorf("lab: address base %s must end in .0 (members are .1 to .250 of each /24)", base)
	}
	if n < 1 {
		n = 1
	}
	last := int(b[2]) + (n-1)/250
	if last > 255 {
		return fmt.Errorf("lab: no room for %d members from %s (250 per /24: the last would be 127.%d.%d.x)", n, base, b[1], last)
	}
	k := KSAddr.As4()
	if b[1] == k[1] && int(b[2]) <= int(k[2]) && int(k[2]) <= last {
		return fmt.Errorf("lab: members from %s would share 127.%d.%d.0/24 with the key server %s", base, k[1], k[2], KSAddr)
	}
	return nil
}

const ksTemplate = `! groupvpn lab: key server (generated)
hostname {{.Name}}{{with .Version}}
groupvpn version {{.}}{{end}}
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 19
 lifetime 86400
crypto isakmp key {{.PSK}} address 127.0.0.0 255.0.0.0{{if .Secondary}}
crypto isakmp key {{.PSK}}-ks address 127.0.1.2{{end}}{{range .Peers}}
crypto isakmp key {{$.PSK}}-ks address {{.}}{{end}}
crypto key import ec LAB-REKEY file rekey.pem
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
 set security-association lifetime seconds {{.TEKLife}}
crypto ipsec profile lab-voice
 set transform-set lab-cbc
 set security-association lifetime seconds {{.VoiceLife}}
!
crypto gdoi group LAB
 identity number 1001
 server local
  rekey algorithm aes 128
  rekey lifetime seconds {{.KEKLife}}
  rekey authentication mypubkey ec LAB-REKEY
  rekey transport unicast
  address ipv4 {{.KS}}{{if .Secondary}}
  redundancy
   local priority 10
   peer address ipv4 127.0.1.2{{end}}{{if .Peers}}
  redundancy
   local priority {{.Priority}}{{range .Peers}}
   peer address ipv4 {{.}}{{end}}
   timers announce {{.Period}}
   timers dead {{.Dead}}
   timers election-wait {{.Wait}}{{end}}
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

const gmTemplate = `! groupvpn lab: group member {{.N}} (generated)
hostname gm{{.N}}{{if .Old}}
groupvpn version 1.0.1{{end}}
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 19
crypto isakmp key {{.PSK}} address {{if .Servers}}127.0.1.0 255.255.255.0{{else}}{{.KS}}{{end}}
!
crypto gdoi group LAB
 identity number 1001{{if .Servers}}{{range .Servers}}
 server address ipv4 {{.}}{{end}}{{else}}
 server address ipv4 {{.KS}}{{end}}
!
crypto map LAB-MAP 10 gdoi
 set group LAB
interface lo
 crypto map LAB-MAP
end
`

// Start writes the configurations, parses them and starts the nodes.
func Start(ctx context.Context, o Options) (_ *Lab, err error) {
	if o.Members <= 0 {
		o.Members = 8
	}
	if o.Members > 250*250 {
		return nil, fmt.Errorf("lab: at most %d members", 250*250)
	}
	switch o.Protocol {
	case "", ProtocolGDOI:
	case ProtocolGIKEv2:
		if err := checkGIKEv2(o); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("lab: unknown protocol %q (gdoi or gikev2)", o.Protocol)
	}
	if err := checkFileLimit(o); err != nil {
		return nil, err
	}
	if !o.Base.IsValid() {
		o.Base = DefaultBase
	}
	if err := ValidateBase(o.Base, o.Members); err != nil {
		return nil, err
	}
	if o.Port == 0 {
		o.Port = 10848
		if os.Geteuid() == 0 {
			o.Port = daemon.DefaultPort
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "groupvpn-lab-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	ctx, stop := context.WithCancel(ctx)
	l := &Lab{Dir: o.Dir, Port: o.Port, Sockets: map[string]string{}, ctx: ctx, stop: stop, deliver: o.Deliver, base: o.Base, all: o.All, now: o.Now}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := writeRekeyKey(filepath.Join(o.Dir, "rekey.pem")); err != nil {
		return nil, err
	}
	secs := func(d, def time.Duration) int64 {
		if d == 0 {
			d = def
		}
		return int64(d / time.Second)
	}
	if o.Protocol == ProtocolGIKEv2 {
		vars := map[string]any{"PSK": "lab-secret", "KS": KSAddr, "Name": "ks",
			"TEKLife": secs(o.TEKLifetime, time.Hour), "VoiceLife": secs(o.VoiceLifetime, 2*time.Hour), "KEKLife": secs(o.KEKLifetime, 24*time.Hour)}
		if err := l.startGIKEv2(ctx, o, vars); err != nil {
			return nil, err
		}
		if o.DataPlane {
			if err := l.startDataPlane(o); err != nil {
				return nil, err
			}
		}
		return l, nil
	}
	nks := max(o.KeyServers, 1)
	if nks > 3 {
		return nil, fmt.Errorf("lab: at most 3 key servers")
	}
	if nks > 1 && (o.Secondary || o.KSListen != nil) {
		return nil, fmt.Errorf("lab: cooperative key servers run without Secondary and KSListen")
	}
	l.nks = nks
	var servers []netip.Addr
	if nks > 1 {
		for i := range nks {
			servers = append(servers, KSAddrN(i))
		}
	}
	vars := map[string]any{"PSK": "lab-secret", "KS": KSAddr, "Secondary": o.Secondary, "Name": "ks", "Servers": servers,
		"TEKLife": secs(o.TEKLifetime, time.Hour), "VoiceLife": secs(o.VoiceLifetime, 2*time.Hour), "KEKLife": secs(o.KEKLifetime, 24*time.Hour)}
	period, dead, wait := o.coopTimers()
	if nks > 1 {
		l.coopPeriod, l.coopDead = period, dead
	}
	clock := func(no *node.Options) {
		if o.Now != nil {
			no.Now = o.Now
		}
	}
	ksListen := func(i int) func(no *node.Options) {
		return func(no *node.Options) {
			no.ListenPacket = o.KSListen
			if o.KSListenN != nil {
				no.ListenPacket = func(a netip.AddrPort) (node.PacketConn, error) { return o.KSListenN(i, a) }
			}
		}
	}
	for i := range nks {
		k := &ksNode{name: "ks", addr: KSAddrN(i)}
		ksVars := maps.Clone(vars)
		ksVars["KS"], ksVars["Version"] = k.addr, o.KSVersion[i]
		if nks > 1 {
			k.name = fmt.Sprintf("ks%d", i+1)
			var peers []netip.Addr
			for _, a := range servers {
				if a != k.addr {
					peers = append(peers, a)
				}
			}
			ksVars["Name"], ksVars["Peers"], ksVars["Priority"] = k.name, peers, coopPriority(i)
			ksVars["Period"], ksVars["Dead"], ksVars["Wait"] = int64(period/time.Second), int64(dead/time.Second), int64(wait/time.Second)
		}
		ksCfg, err := render(o.Dir, k.name+".conf", ksTemplate, ksVars)
		if err != nil {
			return nil, err
		}
		k.new = func() (*daemon.Daemon, error) {
			tune := []func(*node.Options){clock, ksListen(i)}
			if o.State {
				st, err := store.Open(l.KSStatePath(i), store.Options{})
				if err != nil {
					return nil, fmt.Errorf("lab: key server state: %w", err)
				}
				k.store = st
				tune = append(tune, func(no *node.Options) { no.Store = st })
			}
			d, err := daemon.New(ksCfg, []netip.AddrPort{netip.AddrPortFrom(k.addr, o.Port)}, o.Port, o.Logger.With("node", k.name), tune...)
			if err != nil {
				return nil, fmt.Errorf("lab: key server %s: %w", k.name, err)
			}
			return d, nil
		}
		if k.d, err = k.new(); err != nil {
			return nil, err
		}
		k.socket = filepath.Join(o.Dir, k.name+".sock")
		l.Sockets[k.name] = k.socket
		k.proc = l.run(ctx, k.d, k.socket)
		l.kss = append(l.kss, k)
	}
	l.KS = l.kss[0].d
	if nks > 1 {
		// The members register once the key servers have elected, as
		// in a deployment whose key servers come up first: a member
		// registering with a key server still in its election wait gets
		// that key server's own keys until the election (issue 16).
		t0 := time.Now()
		p, _, err := l.WaitPrimary(ctx, wait+3*dead)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Out, "key servers: %s primary, elected in %s (election wait %s)\n", l.kss[p].name, time.Since(t0).Round(time.Millisecond), wait)
	}
	started := newProgress(o.Out, "group members started") // progress.go
	for i := 0; i < o.Members; i++ {
		if o.Members >= 500 {
			started.step(i, o.Members)
		}
		name := fmt.Sprintf("gm%d", i+1)
		vars["N"] = i + 1
		vars["Old"] = slices.Contains(o.Old, i)
		if len(servers) > 1 {
			// Member i lists key server i mod n first: the members
			// register with every key server, secondaries included
			// (they hand out the primary's policy and keys).
			k := i % len(servers)
			vars["Servers"] = append(slices.Clone(servers[k:]), servers[:k]...)
		}
		c, err := render(o.Dir, name+".conf", gmTemplate, vars)
		if err != nil {
			return nil, err
		}
		var db *labSADB
		if o.DataPlane {
			db = &labSADB{Memory: sadb.NewMemory()} // its engine's counters too
			l.sadbs = append(l.sadbs, db)
		}
		newGM := func(hold bool) (*daemon.Daemon, error) {
			d, err := daemon.New(c, []netip.AddrPort{netip.AddrPortFrom(l.GMAddr(i), o.Port)}, o.Port, o.Logger.With("node", name),
				func(no *node.Options) {
					no.Hold = hold
					if db != nil {
						no.Dataplane = db // kept across KillGM, as tmd keeps it
					}
				}, clock)
			if err != nil {
				return nil, fmt.Errorf("lab: %s: %w", name, err)
			}
			return d, nil
		}
		d, err := newGM(o.Hold)
		if err != nil {
			return nil, err
		}
		sock := ""
		if !o.NoGMSockets {
			sock = filepath.Join(o.Dir, name+".sock")
			l.Sockets[name] = sock
		}
		l.gmProcs = append(l.gmProcs, l.run(ctx, d, sock))
		l.gmNew = append(l.gmNew, newGM)
		l.GMs = append(l.GMs, d)
	}
	if o.Members >= 500 {
		started.step(o.Members, o.Members)
	}
	if o.DataPlane {
		if err := l.startDataPlane(o); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// checkFileLimit refuses a lab that would run out of file descriptors
// half-way: each member holds a UDP socket, unless NoGMSockets a control
// socket, and with DataPlane its link's UDP socket.
func checkFileLimit(o Options) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	per := uint64(2)
	if o.NoGMSockets {
		per = 1
	}
	if o.DataPlane {
		per++ // the UDP link
	}
	need := per*uint64(o.Members) + 64
	if need > lim.Cur {
		return fmt.Errorf("lab: %d members need about %d open files, but the limit is %d (ulimit -n; hard limit %d)", o.Members, need, lim.Cur, lim.Max)
	}
	return nil
}

func render(dir, name, tmpl string, vars map[string]any) (*policy.Config, error) {
	var b bytes.Buffer
	if err := template.Must(template.New(name).Parse(tmpl)).Execute(&b, vars); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return nil, err
	}
	c, err := policy.Load(path)
	if err != nil {
		return nil, fmt.Errorf("lab: generated %s does not parse: %w", name, err)
	}
	return c, nil
}

func writeRekeyKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// Release starts the registrations of a lab started with Hold.
func (l *Lab) Release(ctx context.Context) error {
	for _, g := range l.GMs {
		if err := g.Node.Register(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Wait reports registration progress until every member is registered or
// the timeout passes.
func (l *Lab) Wait(ctx context.Context, out io.Writer, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	p := newProgress(out, "group members registered") // progress.go
	for {
		done := 0
		if l.v2 != nil {
			n, err := l.v2Registered(ctx)
			if err != nil {
				return err
			}
			done = n
		}
		for _, g := range l.GMs {
			s, err := g.Node.State(ctx)
			if err != nil {
				return err
			}
			if len(s.GM) > 0 && s.GM[0].State == "registered" {
				done++
			}
		}
		p.step(done, l.Members())
		if done == l.Members() {
			return nil
		}
		l.mu.Lock()
		failed := l.failed
		l.mu.Unlock()
		if failed != nil {
			return failed
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: only %d of %d members registered within %s", done, l.Members(), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func bar(n, total int) string {
	const w = 24
	f := 0
	if total > 0 {
		f = n * w / total
	}
	return "[" + strings.Repeat("#", f) + strings.Repeat(".", w-f) + "]"
}

// Summary prints the KS member table and one line per member's SAs; a lab
// of more than SummaryRows members (without Options.All) prints the first
// and last members, the counts per state and the address range.
func (l *Lab) Summary(ctx context.Context, out io.Writer) error {
	if l.v2 != nil {
		return l.v2Summary(ctx, out)
	}
	for _, k := range l.kss {
		if k.down {
			continue
		}
		r := k.d.Ctl.Exec(ctx, "show crypto gdoi ks members")
		if !r.OK {
			return fmt.Errorf("lab: %s", r.Error)
		}
		fmt.Fprintf(out, "\n%s# show crypto gdoi ks members\n%s\n", k.name, summariseKSMembers(r.Text, l.all))
	}
	fmt.Fprintln(out, "Group members and the SAs they hold:")
	fmt.Fprintf(out, "  %-6s %-12s %-11s %-22s %s\n", "GM", "address", "status", "KEK SPI", "TEK SPIs (transform, lifetime left)")
	show, skipped := rowsShown(len(l.GMs), l.all)
	states, keks, tekSets := map[string]int{}, map[string]bool{}, map[string]bool{}
	for i, g := range l.GMs {
		s, err := g.Node.State(ctx)
		if err != nil {
			return err
		}
		status, kek, teks, spis := "-", "-", []string{}, []string{}
		if len(s.GM) > 0 {
			status = s.GM[0].State
		}
		for _, k := range s.KEKs {
			kek = fmt.Sprintf("%x…", k.SPI[:8])
		}
		for _, t := range s.TEKs {
			tr := map[uint8]string{12: "aes-cbc", 20: "aes-gcm"}[t.Transform]
			teks = append(teks, fmt.Sprintf("0x%08x (%s, %ds)", t.SPI, tr, int(t.Expires.Sub(s.Now).Seconds())))
			spis = append(spis, fmt.Sprintf("0x%08x", t.SPI))
		}
		states[status]++
		keks[kek] = true
		tekSets[strings.Join(spis, ", ")] = true
		if i == SummaryEnds && skipped > 0 {
			skipLine(out, "  ", skipped, "members")
		}
		if show(i) {
			fmt.Fprintf(out, "  %-6s %-12s %-11s %-22s %s\n", fmt.Sprintf("gm%d", i+1), l.GMAddr(i), status, kek, strings.Join(teks, ", "))
		}
	}
	if skipped > 0 {
		fmt.Fprintf(out, "  %d members, %s to %s: %s; %d KEK(s), %d distinct TEK set(s) among them\n",
			len(l.GMs), l.GMAddr(0), l.GMAddr(len(l.GMs)-1), countLine(states), len(keks), len(tekSets))
	}
	return nil
}
