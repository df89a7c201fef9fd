package bench

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/loadgen"
	"github.com/groupvpn/groupvpn/internal/memtrim"
	"golang.org/x/sys/unix"
)

// ScaleOptions configure the scale scenario (issue 18): one KS as its own
// process (groupvpn isakmpd), members played by groupvpn loadgen processes.
type ScaleOptions struct {
	// Stages are the cumulative member counts at which the KS is measured
	// (default 10,000, 50,000, 100,000); a loadgen process is started per
	// stage with the members it adds.
	Stages []int
	Bin    string         // the groupvpn binary (default: this executable)
	Env    []string       // extra environment of the processes (the tests' helper switch)
	KS     netip.AddrPort // the KS's address (default 127.63.255.254:19848)
	Base   netip.Addr     // the first member's address (default 127.64.0.1)
	Window int            // first registrations in flight per loadgen (default 512)
	// KSProcs is the KS's GOMAXPROCS (0: the runtime's default, every
	// core). groupvpn bench scale gives it 1: the ceiling is one core's
	// crypto, and the generators use the other core; with two Ps the KS's
	// idle P looks for work (epoll_pwait without waiting, ~20,000 a
	// second) and its threads and the generator's wake each other across
	// the cores (126,000 context switches in 4 s against 10,000 with one).
	KSProcs int
	// Settle, after each stage: the KS's memory once what a registration
	// keeps only for a while is gone (a served pull: 30 s; phase 1's
	// message 6: 46 s): its live heap at its first GC from 50 s after the
	// stage on, and its RSS one trimmer look later (up to 3 min 12 s: 50
	// s, up to 130 s for the collection, as the runtime forces one every 2
	// minutes, then memtrim.Interval + 2 s). The next stage starts from
	// that quiet KS.
	// Steps after the last stage (all by default in groupvpn bench scale):
	// Rekey, Restart, Removal.
	Settle, Rekey, Restart, Removal bool
	// TEKLifetime of the group's first TEK (default 3600 s); the removal
	// shortens it (the members re-register within the shortened lifetime).
	TEKLifetime time.Duration
	// Multicast: the group's rekeys are multicast (rekey address ipv4),
	// and everything runs in a network namespace of its own whose
	// loopback carries multicast (root): the unicast steps are left out,
	// one multicast rekey is sent and timed until every member applied it.
	Multicast bool
	Dir       string    // where the KS's files go (default: a temporary directory, removed)
	Log       io.Writer // progress (default: discarded)
	Timeout   time.Duration

	netns string // the processes run in it (Multicast)
}

// ScaleStage is the KS measured at a member count.
type ScaleStage struct {
	Members       int
	RegWindow     time.Duration // the stage's first registration to its last, at the generator
	RegPerSec     float64
	KSRSS         int64 // VmRSS of the KS process
	KSHeapLive    int64 // the live heap at the KS's last GC after the stage (gctrace), -1: none seen
	GenHeapPerGM  int64 // the generator's live heap per GM (its own GC)
	ShowCount     time.Duration
	ShowCountSeen int    // members `show crypto gdoi ks members | count Group Member ID` counted
	ShowCountErr  string // it failed
	Counted       int    // members in show crypto gdoi ks counters
	ShowFull      time.Duration
	ShowFullBytes int
	ShowFullErr   string // the full show failed (e.g. the control protocol's 16 MiB response limit)
	StoreBytes    int64
	Failures      int64 // registration attempts that failed at the generator
	// CPU time (user + system) the KS process used from the generator's
	// start, and the stage's generator from when its members' key pairs
	// were made (loadgen's ReadyCPU), until its last first registration,
	// per member added: what a registration costs each side (the KS's
	// includes its GC, reader goroutines and the store's writer).
	KSCPUPerReg, GenCPUPerReg time.Duration
	// The generator makes its members' main-mode key pairs before the
	// stage (each used once), so that the stage's cores are the KS's:
	// how many, the generator's CPU until then, and the pairs made in an
	// exchange all the same (its pool empty).
	GenKeyPairsAhead, GenKeyPairsInline int64
	GenKeyPairCPU                       time.Duration
	// StageCeil is the ceiling timed while the stage ran (stageCeiling):
	// the samples taken between its first and last first registration
	// (all of its samples from the generator's start if none fell
	// inside). QuietCeil: the same sampler's in the stageCeilingLead
	// before the stage's generator started.
	StageCeil, QuietCeil ceilingStats
	// Settle: the KS's live heap and RSS with this stage's members once
	// the registrations' transient state is gone (-1: not measured, or
	// no GC seen), and how many times the KS had returned free heap to
	// the system by then (memtrim; the whole run's).
	SettledHeap, SettledRSS int64
	Trims                   int
}

// ScaleReport is the result.
type ScaleReport struct {
	Date      time.Time
	Host      string
	BaseRSS   int64
	CryptoOp  time.Duration // the KS-side crypto of one registration, one core: the best sample of the run
	CryptoDef string
	// CryptoWorst is the slowest of the run's CryptoSamples samples of
	// CryptoOp (two before the KS starts, one after each stage): how much
	// the machine's speed moved while the ratios were measured against
	// the best.
	CryptoWorst   time.Duration
	CryptoSamples int
	KSProcs       int    // the KS's GOMAXPROCS (0: every core)
	KSGOGC        string // the GOGC environment variable the KS ran with ("": the daemon's default, 200)
	Stages        []ScaleStage
	// Unicast rekey to every member, until the last first ACK sent.
	RekeyTime  time.Duration
	RekeyAcked int64
	RekeyAgain int64 // ACKs of retransmitted copies
	// Restart: SIGKILL, then a new isakmpd from the state file, until the
	// control socket answers and shows every member.
	RestartTime    time.Duration
	RestartMembers int
	// Removal: `clear crypto gdoi ks members` until every GM registered
	// again; Lacked GMs ever without a valid TEK (must be 0).
	RemovalTime    time.Duration
	RemovalReregs  int64
	RemovalLacked  int64
	RemovalFailure int64
	RemovalPeak    int64 // most re-registrations seen in one second (0.25 s samples)
	// CPU time of the KS and of the generators during the removal: which
	// side was the bottleneck.
	RemovalKSCPU, RemovalGenCPU time.Duration
	TimersClamped               int64 // generator timers due again at once after they ran (loadgen)
	// Multicast rekey: one datagram (and its retransmissions) received
	// once per generator process, opened, verified and applied by every
	// member; the time until the last member applied it.
	MulticastTime    time.Duration
	MulticastApplied int64
	MulticastIn      int64 // datagrams the generators received
	Lacked           int64 // over the whole run
	Notes            []string
}

// scaleKSConf is the lab's key server with CBC TEKs only: a counter-mode
// (GCM) TEK needs a sender ID per member, and ks hands out 16-bit ones
// (ks.SIDBits): a group with a GCM TEK refuses its 65,536th member.
const scaleKSConf = `! groupvpn bench scale: key server (generated)
hostname ks
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 19
 lifetime 86400
crypto isakmp key scale-secret address 127.0.0.0 255.0.0.0
crypto key import ec SCALE-REKEY file rekey.pem
!
ip access-list extended scale-traffic
 permit ip 10.10.0.0 0.0.255.255 10.10.0.0 0.0.255.255
ip access-list extended scale-rekey
 permit udp host {{.KS}} eq {{.Port}} host 239.192.18.1 eq {{.Port}}
ip access-list extended scale-voice
 permit udp 10.20.0.0 0.0.255.255 10.20.0.0 0.0.255.255 eq 5060
!
crypto ipsec transform-set scale-cbc256 esp-aes 256 esp-sha256-hmac
crypto ipsec transform-set scale-cbc esp-aes 128 esp-sha256-hmac
crypto ipsec profile scale-data
 set transform-set scale-cbc256
 set security-association lifetime seconds {{.TEKLife}}
crypto ipsec profile scale-voice
 set transform-set scale-cbc
 set security-association lifetime seconds {{.VoiceLife}}
!
crypto gdoi group SCALE
 identity number 1801
 server local
  rekey algorithm aes 128
  rekey lifetime seconds 86400
  rekey authentication mypubkey ec SCALE-REKEY
  {{if .Multicast}}rekey address ipv4 scale-rekey{{else}}rekey transport unicast{{end}}
  address ipv4 {{.KS}}
  sa ipsec 1
   profile scale-data
   match address ipv4 scale-traffic
   replay counter window-size 64
  sa ipsec 2
   profile scale-voice
   match address ipv4 scale-voice
   replay time window-size 5
end
`

func (o *ScaleOptions) defaults() error {
	if len(o.Stages) == 0 {
		o.Stages = []int{10000, 50000, 100000}
	}
	for i, n := range o.Stages {
		if n <= 0 || (i > 0 && n <= o.Stages[i-1]) {
			return fmt.Errorf("bench scale: stages must grow: %v", o.Stages)
		}
	}
	if !o.KS.IsValid() {
		o.KS = netip.MustParseAddrPort("127.63.255.254:19848")
	}
	if !o.Base.IsValid() {
		o.Base = netip.MustParseAddr("127.64.0.1")
	}
	if o.Window <= 0 {
		o.Window = 512
	}
	if o.TEKLifetime == 0 {
		o.TEKLifetime = time.Hour
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute // as groupvpn bench scale: a settle after each stage takes 1 to 3.2 minutes
	}
	if o.Bin == "" {
		b, err := os.Executable()
		if err != nil {
			return err
		}
		o.Bin = b
	}
	return nil
}

// Scale runs the scale scenario.
func Scale(ctx context.Context, o ScaleOptions) (rep *ScaleReport, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "gvscale-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	rep = &ScaleReport{Date: time.Now().UTC()}
	rep.Host, _ = os.Hostname()
	if err := writeRekeyKey(filepath.Join(o.Dir, "rekey.pem")); err != nil {
		return nil, err
	}
	conf := filepath.Join(o.Dir, "ks.conf")
	var b strings.Builder
	template.Must(template.New("ks").Parse(scaleKSConf)).Execute(&b, map[string]any{"KS": o.KS.Addr(), "Port": o.KS.Port(), "Multicast": o.Multicast,
		"TEKLife": int64(o.TEKLifetime / time.Second), "VoiceLife": 2 * int64(o.TEKLifetime/time.Second)})
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	if o.Multicast {
		ns := fmt.Sprintf("gvscale%d", os.Getpid()%100000)
		if err := scaleNetns(ns); err != nil {
			return nil, err
		}
		defer exec.Command("ip", "netns", "del", ns).Run()
		o.netns = ns
		o.Rekey, o.Restart, o.Removal = false, false, false
	}
	rep.CryptoOp, rep.CryptoDef = registrationCeiling()
	rep.CryptoWorst, rep.CryptoSamples = rep.CryptoOp, 1
	rep.KSProcs = o.KSProcs
	rep.KSGOGC = os.Getenv("GOGC")
	for _, e := range o.Env {
		if v, ok := strings.CutPrefix(e, "GOGC="); ok {
			rep.KSGOGC = v // the last of a name wins (os/exec)
		}
	}
	rep.ceilingSample()
	fmt.Fprintf(o.Log, "ceiling: %s per registration (%s)\n", rep.CryptoOp, rep.CryptoDef)

	ks := &ksProc{o: &o, conf: conf, sock: filepath.Join(o.Dir, "ks.sock"), state: filepath.Join(o.Dir, "ks.db"), log: filepath.Join(o.Dir, "ks.log")}
	if err := ks.start(ctx); err != nil {
		return rep, err
	}
	defer ks.kill()
	time.Sleep(time.Second)
	rep.BaseRSS = rss(ks.pid())

	var gens []*genProc
	defer func() {
		for _, g := range gens {
			g.stop()
		}
	}()
	prev := 0
	for _, n := range o.Stages {
		add := n - prev
		sc := startStageCeiling()
		if err := sleepCtx(ctx, stageCeilingLead); err != nil {
			sc.stop(0, 0, 0)
			return rep, err
		}
		ksCPU0 := cpuTime(ks.pid())
		genStart := loadgen.Monotonic()
		sc.mark()
		g, err := startGen(ctx, &o, prev, add)
		if err != nil {
			sc.stop(0, 0, 0)
			return rep, err
		}
		gens = append(gens, g)
		fmt.Fprintf(o.Log, "stage %d: %d members from %s\n", n, add, addrAfter(o.Base, prev))
		s, err := g.waitFor(ctx, func(s loadgen.Snapshot) bool { return s.Registered == int64(add) }, o.Timeout)
		stageCeil, quietCeil := sc.stop(genStart, s.FirstAt, s.LastFirstAt)
		if err != nil {
			return rep, fmt.Errorf("stage %d: %w (generator: %+v; KS log: %s)", n, err, s, tail(ks.log))
		}
		st := ScaleStage{Members: n, RegWindow: time.Duration(s.LastFirstAt - s.FirstAt), Failures: s.Failures,
			KSCPUPerReg: (cpuTime(ks.pid()) - ksCPU0) / time.Duration(add), GenCPUPerReg: max(0, cpuTime(g.cmd.Process.Pid)-time.Duration(s.ReadyCPU)) / time.Duration(add), // 10 ms ticks
			GenKeyPairsAhead: s.KeyPairsAhead, GenKeyPairsInline: s.KeyPairsInline, GenKeyPairCPU: time.Duration(s.ReadyCPU),
			StageCeil: stageCeil, QuietCeil: quietCeil}
		if st.RegWindow > 0 {
			st.RegPerSec = float64(add-1) / st.RegWindow.Seconds()
		}
		fmt.Fprintf(o.Log, "  registered in %s: %.0f/s; CPU per registration: KS %s, generator %s (its members' %d key pairs made before, in %s of CPU; %d in an exchange); the ceiling meanwhile %s (median of %d samples, %s to %s; %s just before, %d samples)\n",
			st.RegWindow.Round(time.Millisecond), st.RegPerSec, st.KSCPUPerReg.Round(time.Microsecond), st.GenCPUPerReg.Round(time.Microsecond),
			st.GenKeyPairsAhead, st.GenKeyPairCPU.Round(time.Millisecond), st.GenKeyPairsInline, st.StageCeil.Median.Round(time.Microsecond), st.StageCeil.N,
			st.StageCeil.Fastest.Round(time.Microsecond), st.StageCeil.Slowest.Round(time.Microsecond),
			st.QuietCeil.Median.Round(time.Microsecond), st.QuietCeil.N)
		if err := ks.measure(ctx, &st, g); err != nil {
			return rep, err
		}
		fmt.Fprintf(o.Log, "  KS RSS %d MiB, live heap %d MiB, show | count %s, store %d MiB\n", st.KSRSS>>20, st.KSHeapLive>>20,
			st.ShowCount.Round(time.Millisecond), st.StoreBytes>>20)
		rep.ceilingSample()
		st.SettledHeap, st.SettledRSS = -1, -1
		if o.Settle {
			if err := ks.settle(ctx, &st); err != nil {
				return rep, err
			}
			if st.SettledHeap >= 0 {
				fmt.Fprintf(o.Log, "  settled: KS live heap %d MiB, RSS %d MiB, free heap returned to the system %d times\n", st.SettledHeap>>20, st.SettledRSS>>20, st.Trims)
			}
		}
		rep.Stages = append(rep.Stages, st)
		prev = n
	}
	total := int64(prev)
	sum := func(f func(loadgen.Snapshot) int64) int64 {
		var t int64
		for _, g := range gens {
			t += f(g.last())
		}
		return t
	}
	waitSum := func(what string, f func(loadgen.Snapshot) int64, want int64, limit time.Duration) error {
		end := time.Now().Add(limit)
		for sum(f) < want {
			if time.Now().After(end) {
				return fmt.Errorf("%s: %d of %d after %s", what, sum(f), want, limit)
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
		return nil
	}
	if o.Rekey {
		acks := sum(func(s loadgen.Snapshot) int64 { return s.Acks })
		again := sum(func(s loadgen.Snapshot) int64 { return s.AcksAgain })
		start := loadgen.Monotonic() // the generators' clock: a step of the wall clock moves neither
		if _, err := ks.exec(ctx, "crypto gdoi ks rekey"); err != nil {
			return rep, err
		}
		if err := waitSum("rekey ACKs", func(s loadgen.Snapshot) int64 { return s.Acks }, acks+total, 5*time.Minute); err != nil {
			return rep, err
		}
		var lastAck int64
		for _, g := range gens {
			lastAck = max(lastAck, g.last().LastAckAt)
		}
		rep.RekeyTime = time.Duration(lastAck - start)
		rep.RekeyAcked = sum(func(s loadgen.Snapshot) int64 { return s.Acks }) - acks
		time.Sleep(time.Second)
		rep.RekeyAgain = sum(func(s loadgen.Snapshot) int64 { return s.AcksAgain }) - again
		fmt.Fprintf(o.Log, "unicast rekey: %d ACKs in %s\n", rep.RekeyAcked, rep.RekeyTime.Round(time.Millisecond))
	}
	if o.Restart {
		time.Sleep(2 * time.Second) // the periodic save of the ACKs
		ks.kill()
		start := time.Now()
		if err := ks.start(ctx); err != nil {
			return rep, err
		}
		n, err := ks.countMembers(ctx)
		if err != nil {
			return rep, err
		}
		rep.RestartTime, rep.RestartMembers = time.Since(start), n
		fmt.Fprintf(o.Log, "restart: %d members back in %s\n", n, rep.RestartTime.Round(time.Millisecond))
	}
	if o.Removal {
		regs := sum(func(s loadgen.Snapshot) int64 { return s.Registrations })
		lacked := sum(func(s loadgen.Snapshot) int64 { return s.Lacked })
		fails := sum(func(s loadgen.Snapshot) int64 { return s.Failures })
		genCPU := func() time.Duration {
			var t time.Duration
			for _, g := range gens {
				t += cpuTime(g.cmd.Process.Pid)
			}
			return t
		}
		ksCPU0, genCPU0 := cpuTime(ks.pid()), genCPU()
		start := time.Now()
		if _, err := ks.exec(ctx, "clear crypto gdoi ks members"); err != nil {
			return rep, err
		}
		var peak, lastN int64
		lastT := time.Now()
		end := start.Add(o.TEKLifetime + 5*time.Minute)
		for {
			n := sum(func(s loadgen.Snapshot) int64 { return s.Registrations }) - regs
			if now := time.Now(); now.Sub(lastT) >= time.Second {
				peak = max(peak, int64(float64(n-lastN)/now.Sub(lastT).Seconds()))
				lastN, lastT = n, now
			}
			if n >= total {
				break
			}
			if time.Now().After(end) {
				return rep, fmt.Errorf("removal: %d of %d members registered again after %s", n, total, time.Since(start).Round(time.Second))
			}
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return rep, err
			}
		}
		rep.RemovalTime = time.Since(start)
		rep.RemovalKSCPU, rep.RemovalGenCPU = cpuTime(ks.pid())-ksCPU0, genCPU()-genCPU0
		time.Sleep(2 * sweepWait)
		rep.RemovalReregs = sum(func(s loadgen.Snapshot) int64 { return s.Registrations }) - regs
		rep.RemovalLacked = sum(func(s loadgen.Snapshot) int64 { return s.Lacked }) - lacked
		rep.RemovalFailure = sum(func(s loadgen.Snapshot) int64 { return s.Failures }) - fails
		rep.RemovalPeak = peak
		fmt.Fprintf(o.Log, "removal: %d re-registrations in %s, %d GMs ever without a valid TEK\n", rep.RemovalReregs,
			rep.RemovalTime.Round(time.Millisecond), rep.RemovalLacked)
	}
	if o.Multicast {
		applied := sum(func(s loadgen.Snapshot) int64 { return s.Rekeys })
		in := sum(func(s loadgen.Snapshot) int64 { return s.MulticastIn })
		start := loadgen.Monotonic()
		if _, err := ks.exec(ctx, "crypto gdoi ks rekey"); err != nil {
			return rep, err
		}
		if err := waitSum("multicast rekey applied", func(s loadgen.Snapshot) int64 { return s.Rekeys }, applied+total, 5*time.Minute); err != nil {
			return rep, err
		}
		var last int64
		for _, g := range gens {
			last = max(last, g.last().LastRekeyAt)
		}
		rep.MulticastTime = time.Duration(last - start)
		rep.MulticastApplied = sum(func(s loadgen.Snapshot) int64 { return s.Rekeys }) - applied
		rep.MulticastIn = sum(func(s loadgen.Snapshot) int64 { return s.MulticastIn }) - in
		fmt.Fprintf(o.Log, "multicast rekey: applied by %d members in %s\n", rep.MulticastApplied, rep.MulticastTime.Round(time.Millisecond))
	}
	time.Sleep(sweepWait)
	rep.Lacked = sum(func(s loadgen.Snapshot) int64 { return s.Lacked })
	rep.TimersClamped = sum(func(s loadgen.Snapshot) int64 { return s.TimersClamped })
	return rep, nil
}

// command runs name in the scenario's namespace, if it has one (ip
// netns exec execs the command: the PID is the command's).
func (o *ScaleOptions) command(name string, args ...string) *exec.Cmd {
	if o.netns == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", o.netns, name}, args...)...)
}

// scaleNetns creates a network namespace whose loopback is up and carries
// multicast (the KS's rekeys to 239.192.18.1 loop back to the
// generators' group sockets), replacing a stale one of the same name.
func scaleNetns(name string) error {
	exec.Command("ip", "netns", "del", name).Run()
	for _, args := range [][]string{{"netns", "add", name}, {"-n", name, "link", "set", "lo", "up", "multicast", "on"},
		{"-n", name, "route", "add", "224.0.0.0/4", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("bench scale: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// sweepWait covers a generator's sweep and the next printed totals.
const sweepWait = 1500 * time.Millisecond

func addrAfter(base netip.Addr, n int) netip.Addr {
	a := base
	for range n {
		a = a.Next()
	}
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// registrationCeiling times, on one core, the cryptography a KS does for
// one registration with this suite (PSK main mode, ECP-256, AES-256,
// SHA-256, then GROUPKEY-PULL): an ECP-256 key pair and agreement, the
// PRFs (SKEYID, SKEYID_d/a/e, HASH_I checked, HASH_R, HASH(1) to HASH(4):
// 10 HMAC-SHA-256) and the encryption of 6 messages (MM5, MM6, pull 1-4;
// AES-256-CBC of 256 octets each). The rest of the KS's work (parsing,
// building messages, the member registry, the store, the log line) is
// what the ratio to this ceiling shows.
func registrationCeiling() (time.Duration, string) {
	op := newCeilingOp()
	r := testing.Benchmark(func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			op.run()
		}
	})
	return time.Duration(r.NsPerOp()), ceilingDef
}

const ceilingDef = "ECP-256 key pair + agreement, 10 HMAC-SHA-256, 6 x AES-256-CBC of 256 B"

// ceilingOp is registrationCeiling's one registration.
type ceilingOp struct {
	g            ike.Group
	blk          cipher.Block
	key, iv, buf []byte
}

func newCeilingOp() *ceilingOp {
	g, _ := ike.GroupByID(19)
	key := make([]byte, 32)
	blk, _ := aes.NewCipher(key)
	return &ceilingOp{g: g, blk: blk, key: key, iv: make([]byte, 16), buf: make([]byte, 256)}
}

func (c *ceilingOp) run() {
	priv, pub, _ := c.g.GenerateKey(rand.Reader)
	priv.Shared(pub)
	for j := 0; j < 10; j++ {
		m := hmac.New(sha256.New, c.key)
		m.Write(c.buf[:64])
		m.Sum(nil)
	}
	for j := 0; j < 6; j++ {
		cipher.NewCBCEncrypter(c.blk, c.iv).CryptBlocks(c.buf, c.buf)
	}
}

// stageCeiling times the ceiling while a stage runs, a second view beside
// the run's best (the VM's speed moves by a quarter or more within a run,
// and the best of the run's samples may come from a faster minute than
// the stage's; but this method has read up to a third slower than the
// run's samples on a quiet machine, and its samples spread widely during
// a stage: docs/scale.md, "The ninth session"): every
// stageCeilingEvery, and once as the stage's generator starts (mark),
// stageCeilingRuns runs back to back on a thread of their own, each timed
// in that thread's CPU time (the KS's figure is CPU time too: a run that
// waited for a core, both being busy, counts only its own work), the
// fastest kept (a cold first run reads slower). What it takes from the KS
// and the generators: about 1.2 ms of one core a second.
type stageCeiling struct {
	stopc   chan struct{}
	markc   chan struct{} // a sample now (buffered: mark does not wait)
	done    chan struct{}
	samples []ceilingAt // written by the sampler until done is closed
}

// threadCPU is the CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID):
// what a run took on the core, not how long it waited for one.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// ceilingAt is one sample: the fastest run and when it was taken
// (loadgen.Monotonic, the generators' clock).
type ceilingAt struct {
	op time.Duration
	at int64
}

const (
	stageCeilingEvery = 500 * time.Millisecond
	stageCeilingRuns  = 5
	// stageCeilingLead: sampling starts this long before the stage's
	// generator, for the quiet machine's figure by the same method.
	stageCeilingLead = 2500 * time.Millisecond
)

func startStageCeiling() *stageCeiling {
	c := &stageCeiling{stopc: make(chan struct{}), markc: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		op := newCeilingOp()
		t := time.NewTicker(stageCeilingEvery)
		defer t.Stop()
		for {
			best := time.Duration(math.MaxInt64)
			for range stageCeilingRuns {
				cpu := threadCPU()
				op.run()
				if d := threadCPU() - cpu; cpu > 0 && d > 0 {
					best = min(best, d)
				}
			}
			if best != math.MaxInt64 { // else the thread's clock failed: no sample
				c.samples = append(c.samples, ceilingAt{op: best, at: loadgen.Monotonic()})
			}
			select {
			case <-c.stopc:
				return
			case <-t.C:
			case <-c.markc:
			}
		}
	}()
	return c
}

// mark asks for a sample now: the stage's generator has started, so that
// a stage shorter than the interval has one taken after its start.
func (c *stageCeiling) mark() {
	select {
	case c.markc <- struct{}{}:
	default:
	}
}

// ceilingStats are samples' median, fastest and slowest, and how many;
// FromStart: none fell inside the stage, these are all those from its
// generator's start on (stop).
type ceilingStats struct {
	Median, Fastest, Slowest time.Duration
	N                        int
	FromStart                bool
}

func statsOf(d []time.Duration) ceilingStats {
	if len(d) == 0 {
		return ceilingStats{}
	}
	return ceilingStats{Median: median(d), Fastest: slices.Min(d), Slowest: slices.Max(d), N: len(d)}
}

// stop ends the sampling and returns the statistics of the samples taken
// between from and to (the stage's first and last first registration, on
// the generators' clock), or of all of those from start on if none fell
// inside (a stage shorter than the sampling interval); and of those taken
// before start (the generator's start: the machine without the stage's
// load, the KS idle).
func (c *stageCeiling) stop(start, from, to int64) (during, before ceilingStats) {
	close(c.stopc)
	<-c.done
	var in, after, quiet []time.Duration
	for _, s := range c.samples {
		switch {
		case s.at < start:
			quiet = append(quiet, s.op)
		case s.at >= from && s.at <= to:
			in = append(in, s.op)
			after = append(after, s.op)
		default:
			after = append(after, s.op)
		}
	}
	if len(in) == 0 {
		during = statsOf(after)
		during.FromStart = during.N > 0
		return during, statsOf(quiet)
	}
	return statsOf(in), statsOf(quiet)
}

// ceilingSample times the ceiling once more: the report keeps the best
// of the run (the machine is shared, its speed moves) and the worst.
func (r *ScaleReport) ceilingSample() {
	op, _ := registrationCeiling()
	r.noteCeiling(op)
}

func (r *ScaleReport) noteCeiling(op time.Duration) {
	r.CryptoOp = min(r.CryptoOp, op)
	r.CryptoWorst = max(r.CryptoWorst, op)
	r.CryptoSamples++
}

// ksProc is the KS's isakmpd.
type ksProc struct {
	o                      *ScaleOptions
	conf, sock, state, log string
	mu                     sync.Mutex
	cmd                    *exec.Cmd
	done                   chan struct{}
}

func (k *ksProc) start(ctx context.Context) error {
	f, err := os.OpenFile(k.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := k.o.command(k.o.Bin, "isakmpd", "-f", k.conf, "-port", strconv.Itoa(int(k.o.KS.Port())),
		"-listen", k.o.KS.Addr().String(), "-socket", k.sock, "-state", k.state)
	cmd.Dir = filepath.Dir(k.conf)
	cmd.Env = append(append(os.Environ(), k.o.Env...), "GODEBUG=gctrace=1")
	if k.o.KSProcs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(k.o.KSProcs)) // the last of a name wins (os/exec)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench scale: start the KS: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	k.mu.Lock()
	k.cmd, k.done = cmd, done
	k.mu.Unlock()
	end := time.Now().Add(time.Minute)
	for {
		if _, err := k.exec(ctx, "show version"); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("bench scale: the KS exited: %s", tail(k.log))
		default:
		}
		if time.Now().After(end) {
			return fmt.Errorf("bench scale: the KS's control socket did not answer within a minute: %s", tail(k.log))
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

func (k *ksProc) pid() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		return 0
	}
	return k.cmd.Process.Pid
}

// kill sends SIGKILL (nothing saved on the way out) and waits.
func (k *ksProc) kill() {
	k.mu.Lock()
	cmd, done := k.cmd, k.done
	k.cmd = nil
	k.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// exec runs one command on the KS's control socket, answering yes.
func (k *ksProc) exec(ctx context.Context, line string) (string, error) {
	c, err := ctl.Dial(k.sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := c.Do(ctx, &ctl.WireRequest{Cmd: line})
	for i := 0; err == nil && resp.Prompt != "" && i < 3; i++ {
		resp, err = c.Do(ctx, &ctl.WireRequest{Cmd: line, Token: resp.Token, Answer: "yes"})
	}
	if err != nil {
		return "", fmt.Errorf("KS: %s: %w", line, err)
	}
	if !resp.OK {
		return "", fmt.Errorf("KS: %s: %s", line, resp.Error)
	}
	return resp.Text, nil
}

// stream runs line as the CLI does (ctl.Client.Stream: the text as it is
// rendered, no 16 MiB cut) and returns the octets of its text.
func (k *ksProc) stream(ctx context.Context, line string) (int64, error) {
	c, err := ctl.Dial(k.sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var w countingWriter
	resp, err := c.Stream(ctx, &ctl.WireRequest{Cmd: line}, &w)
	if err != nil {
		return w.n, fmt.Errorf("KS: %s: %w", line, err)
	}
	if !resp.OK {
		return w.n, fmt.Errorf("KS: %s: %s", line, resp.Error)
	}
	return w.n, nil
}

// countingWriter counts what is written to it and keeps nothing.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var (
	countRE   = regexp.MustCompile(`= (\d+)`)
	membersRE = regexp.MustCompile(`(?m)^\s*members\s*: (\d+)`)
)

// countMembers is the group's member count from `show crypto gdoi ks
// counters` (its reply is small whatever the members).
func (k *ksProc) countMembers(ctx context.Context) (int, error) {
	out, err := k.exec(ctx, "show crypto gdoi ks counters")
	if err != nil {
		return 0, err
	}
	m := membersRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("KS: show crypto gdoi ks counters has no members line: %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n, nil
}

// showCount is `show crypto gdoi ks members | count Group Member ID`:
// what it counted and how long it took.
func (k *ksProc) showCount(ctx context.Context) (int, time.Duration, error) {
	start := time.Now()
	out, err := k.exec(ctx, "show crypto gdoi ks members | count Group Member ID")
	el := time.Since(start)
	if err != nil {
		return 0, el, err
	}
	m := countRE.FindStringSubmatch(out)
	if m == nil {
		return 0, el, fmt.Errorf("KS: | count said %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n, el, nil
}

var gcRE = regexp.MustCompile(`(?m)^gc \d+ @[0-9.]+s [^:]*: .* (\d+)->(\d+)->(\d+) MB`)

// measure reads the KS after a stage: show timings, RSS, the live heap of
// a GC after the stage, the store's size.
func (k *ksProc) measure(ctx context.Context, st *ScaleStage, g *genProc) error {
	time.Sleep(2 * time.Second) // the periodic save of the new members (1 s)
	before := len(gcRE.FindAllStringSubmatch(readAll(k.log), -1))
	n, el, err := k.showCount(ctx)
	st.ShowCount, st.ShowCountSeen = el, n
	if err != nil {
		st.ShowCountErr = err.Error()
	}
	if st.Counted, err = k.countMembers(ctx); err != nil {
		return err
	}
	start := time.Now()
	size, err := k.stream(ctx, "show crypto gdoi ks members")
	st.ShowFull, st.ShowFullBytes = time.Since(start), int(size)
	if err != nil {
		st.ShowFullErr = err.Error()
	}
	if st.KSHeapLive, err = k.nextGC(ctx, before); err != nil {
		return err
	}
	st.KSRSS = rss(k.pid())
	if fi, err := os.Stat(k.state); err == nil {
		st.StoreBytes = fi.Size()
	}
	st.GenHeapPerGM = g.last().HeapPerMember
	return nil
}

// settle waits until what the stage's registrations keep only for a
// while is gone (50 s) and notes the KS's live heap at its next
// collection and its RSS one trimmer look after it.
func (k *ksProc) settle(ctx context.Context, st *ScaleStage) error {
	if err := sleepCtx(ctx, 50*time.Second); err != nil {
		return err
	}
	before := len(gcRE.FindAllStringSubmatch(readAll(k.log), -1))
	live, err := k.nextGC(ctx, before)
	if err != nil || live < 0 {
		return err // no collection within 130 s: not measured (-1)
	}
	// The KS's trimmer looks every memtrim.Interval: give it one look
	// after this collection, which freed what the registrations left.
	if err := sleepCtx(ctx, memtrim.Interval+2*time.Second); err != nil {
		return err
	}
	st.SettledHeap, st.SettledRSS = live, rss(k.pid())
	st.Trims = strings.Count(readAll(k.log), trimLog)
	return nil
}

// trimLog is the message of the KS's memtrim lines.
const trimLog = memtrim.Message

// nextGC waits for the KS's next collection after the before'th in its
// gctrace log (the show commands allocate; at most the runtime's
// 2-minute forced one) and returns the live heap it left (MiB
// resolution; -1: none within 130 s).
func (k *ksProc) nextGC(ctx context.Context, before int) (int64, error) {
	end := time.Now().Add(130 * time.Second)
	for time.Now().Before(end) {
		ms := gcRE.FindAllStringSubmatch(readAll(k.log), -1)
		if len(ms) > before {
			live, _ := strconv.ParseInt(ms[len(ms)-1][3], 10, 64)
			return live << 20, nil
		}
		k.exec(ctx, "show crypto gdoi ks")
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return -1, err
		}
	}
	return -1, nil
}

func readAll(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(path string) string {
	s := readAll(path)
	if len(s) > 1500 {
		s = s[len(s)-1500:]
	}
	return s
}

// cpuTime is a process's user and system CPU time (0: unknown).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// rss is a process's VmRSS in octets (0: unknown).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// genProc is one groupvpn loadgen process.
type genProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	snap loadgen.Snapshot
	err  string
}

func startGen(ctx context.Context, o *ScaleOptions, from, n int) (*genProc, error) {
	cmd := o.command(o.Bin, "loadgen", "-ks", o.KS.String(), "-members", strconv.Itoa(n),
		"-base", addrAfter(o.Base, from).String(), "-group", "SCALE", "-group-id", "1801", "-psk", "scale-secret",
		"-window", strconv.Itoa(o.Window), "-interval", "100ms")
	if o.Multicast {
		// Each member opens and verifies the multicast rekey: two shards
		// do it on both cores (one, the default, registers fastest).
		cmd.Args = append(cmd.Args, "-shards", "2")
	}
	cmd.Env = append(os.Environ(), o.Env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench scale: start loadgen: %w", err)
	}
	g := &genProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var s loadgen.Snapshot
			if json.Unmarshal(sc.Bytes(), &s) == nil {
				g.mu.Lock()
				g.snap = s
				g.mu.Unlock()
			}
		}
		cmd.Wait()
		g.mu.Lock()
		g.err = fmt.Sprintf("loadgen exited (%v): %s", cmd.ProcessState, stderr.String())
		g.mu.Unlock()
		close(g.done)
	}()
	return g, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (g *genProc) last() loadgen.Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snap
}

func (g *genProc) waitFor(ctx context.Context, ok func(loadgen.Snapshot) bool, limit time.Duration) (loadgen.Snapshot, error) {
	end := time.Now().Add(limit)
	for {
		s := g.last()
		if ok(s) {
			return s, nil
		}
		select {
		case <-g.done:
			return s, errors.New(g.err)
		default:
		}
		if time.Now().After(end) {
			return s, fmt.Errorf("not within %s", limit)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return s, err
		}
	}
}

func (g *genProc) stop() {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		g.cmd.Process.Signal(syscall.SIGKILL)
		<-g.done
	}
}

func showCount(s ScaleStage) string {
	if s.ShowCountErr != "" {
		return "failed"
	}
	return s.ShowCount.Round(time.Millisecond).String()
}

func showFull(s ScaleStage) string {
	if s.ShowFullErr != "" {
		return "failed"
	}
	return fmt.Sprintf("%s/%dMiB", s.ShowFull.Round(time.Millisecond), s.ShowFullBytes>>20)
}

// Print writes the report.
func (r *ScaleReport) Print(w io.Writer) {
	fmt.Fprintf(w, "scenario scale: one KS (groupvpn isakmpd, its own process) and groupvpn loadgen processes on loopback, %s on %s\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.Host)
	fmt.Fprintf(w, "  ceiling: the KS's crypto per registration on one core, the best of the run: %s (%s) = %.0f registrations/s\n",
		r.CryptoOp.Round(time.Microsecond), r.CryptoDef, float64(time.Second)/float64(r.CryptoOp))
	if r.CryptoSamples > 1 {
		fmt.Fprintf(w, "  (its %d samples, before the KS and after each stage: %s to %s; the ratios below are against the best, and a stage run while the machine was %.0f%% slower reads that much lower)\n",
			r.CryptoSamples, r.CryptoOp.Round(time.Microsecond), r.CryptoWorst.Round(time.Microsecond), 100*(float64(r.CryptoWorst)/float64(r.CryptoOp)-1))
	}
	procs := "every core (the runtime's default)"
	if r.KSProcs > 0 {
		procs = fmt.Sprintf("%d (-ks-procs)", r.KSProcs)
	}
	gogc := "the daemon's default, 200"
	if r.KSGOGC != "" {
		gogc = r.KSGOGC + " (the environment's)"
	}
	fmt.Fprintf(w, "  KS GOMAXPROCS: %s; KS GOGC: %s; KS RSS with no member: %.1f MiB\n", procs, gogc, float64(r.BaseRSS)/(1<<20))
	fmt.Fprintf(w, "  %9s %9s %7s %9s %9s %9s %11s %11s %11s %10s %10s %12s %10s %10s\n", "members", "reg/s", "/ceil", "KS CPU/reg", "ceil/KSCPU", "gen CPU/reg", "RSS/member", "heap/member",
		"store", "store/mbr", "show|count", "show (text)", "gen heap/GM", "reg fails")
	ceil := float64(time.Second) / float64(r.CryptoOp)
	for _, s := range r.Stages {
		heap := "-"
		if s.KSHeapLive >= 0 {
			heap = fmt.Sprintf("%d B", s.KSHeapLive/int64(s.Members))
		}
		eff := 0.0
		if s.KSCPUPerReg > 0 {
			eff = float64(r.CryptoOp) / float64(s.KSCPUPerReg)
		}
		fmt.Fprintf(w, "  %9d %9.0f %7.2f %9s %9.2f %9s %9d B %11s %8.1f MiB %8d B %10s %12s %8d B %10d\n", s.Members, s.RegPerSec, s.RegPerSec/ceil,
			s.KSCPUPerReg.Round(time.Microsecond), eff, s.GenCPUPerReg.Round(time.Microsecond),
			(s.KSRSS-r.BaseRSS)/int64(s.Members), heap, float64(s.StoreBytes)/(1<<20), s.StoreBytes/int64(s.Members),
			showCount(s), showFull(s),
			s.GenHeapPerGM, s.Failures)
	}
	if slices.ContainsFunc(r.Stages, func(s ScaleStage) bool { return s.StageCeil.N > 0 }) {
		fmt.Fprintf(w, "  the ceiling timed while each stage registered (every %s, the fastest in thread CPU time of %d runs back to back; the median of the stage's samples and their spread), the stage against it, and the same sampler's median over the %s before the stage:\n",
			stageCeilingEvery, stageCeilingRuns, stageCeilingLead)
		fmt.Fprintf(w, "  %9s %11s %8s %17s %12s %17s %12s\n", "members", "stage ceil", "samples", "spread", "/stage ceil", "stage ceil/KSCPU", "just before")
		for _, s := range r.Stages {
			if s.StageCeil.N == 0 {
				continue
			}
			eff := 0.0
			if s.KSCPUPerReg > 0 {
				eff = float64(s.StageCeil.Median) / float64(s.KSCPUPerReg)
			}
			before := "-"
			if s.QuietCeil.N > 0 {
				before = s.QuietCeil.Median.Round(time.Microsecond).String()
			}
			spread := s.StageCeil.Fastest.Round(time.Microsecond).String() + "-" + s.StageCeil.Slowest.Round(time.Microsecond).String()
			n := strconv.Itoa(s.StageCeil.N)
			if s.StageCeil.FromStart {
				n += "*"
			}
			fmt.Fprintf(w, "  %9d %11s %8s %17s %12.2f %17.2f %12s\n", s.Members, s.StageCeil.Median.Round(time.Microsecond), n, spread,
				s.RegPerSec*s.StageCeil.Median.Seconds(), eff, before)
		}
		fmt.Fprintln(w, "   (a view beside the run's best, not a replacement: on a quiet machine this sampler has read up to a third slower than")
		fmt.Fprintln(w, "    the run's testing.Benchmark samples, which makes a stage read higher against it, and while a stage runs its samples")
		fmt.Fprintln(w, "    spread widely; samples marked * were taken from the generator's start, none falling between the stage's first and")
		fmt.Fprintln(w, "    last first registration; docs/scale.md, \"The ninth session\")")
	}
	for _, s := range r.Stages {
		if s.SettledHeap < 0 {
			continue
		}
		n := int64(s.Members)
		fmt.Fprintf(w, "  settled at %d members (50 s on, the served pulls and phase 1's last messages gone): KS live heap %d B per member, RSS %d B per member (the KS had returned its free heap to the system %d times: %q in its log, internal/memtrim)\n",
			n, s.SettledHeap/n, (s.SettledRSS-r.BaseRSS)/n, s.Trims, trimLog)
	}
	if r.RekeyAcked > 0 {
		fmt.Fprintf(w, "  unicast rekey: %d ACKs, the last %s after `crypto gdoi ks rekey` (%d more for retransmitted copies)\n",
			r.RekeyAcked, r.RekeyTime.Round(time.Millisecond), r.RekeyAgain)
	}
	if r.RestartTime > 0 {
		fmt.Fprintf(w, "  restart (SIGKILL, new isakmpd from the state file): %d members shown %s after the start\n",
			r.RestartMembers, r.RestartTime.Round(time.Millisecond))
	}
	if r.RemovalTime > 0 {
		fmt.Fprintf(w, "  clear crypto gdoi ks members: %d re-registrations in %s (peak %d/s, %d failed attempts); GMs ever without a valid TEK: %d\n",
			r.RemovalReregs, r.RemovalTime.Round(time.Millisecond), r.RemovalPeak, r.RemovalFailure, r.RemovalLacked)
		fmt.Fprintf(w, "    CPU meanwhile: KS %s, generators %s (of %s x 2 cores)\n", r.RemovalKSCPU.Round(time.Second), r.RemovalGenCPU.Round(time.Second), r.RemovalTime.Round(time.Second))
	}
	if r.MulticastApplied > 0 {
		fmt.Fprintf(w, "  multicast rekey: applied by %d members, the last %s after `crypto gdoi ks rekey` (%d datagrams received by the %d generator processes, once each; every member opened, verified and applied it)\n",
			r.MulticastApplied, r.MulticastTime.Round(time.Millisecond), r.MulticastIn, len(r.Stages))
	}
	fmt.Fprintf(w, "  GMs ever without a valid TEK after their first registration, whole run: %d (generator timers put 10 ms later: %d)\n", r.Lacked, r.TimersClamped)
	for _, s := range r.Stages {
		fmt.Fprintf(w, "  stage %d: the generator made its members' %d main-mode key pairs before the stage (%s of CPU, not in gen CPU/reg; each used once), %d in an exchange\n",
			s.Members, s.GenKeyPairsAhead, s.GenKeyPairCPU.Round(time.Millisecond), s.GenKeyPairsInline)
	}
	fmt.Fprintln(w, "  (CPU/reg: user + system CPU of the KS process from the generator's start, and of the stage's generator from when its key")
	fmt.Fprintln(w, "   pairs were made, to its last first registration, per member added; the KS makes its key pair in each exchange;")
	fmt.Fprintln(w, "   ceil/KSCPU: the ceiling over the KS's CPU per registration, the /ceil the KS would reach")
	fmt.Fprintln(w, "   on one core of its own: reg/s is bounded by KS + generator CPU on the shared cores)")
	fmt.Fprintln(w, "  (RSS/member: (KS RSS - RSS with no member) / members; heap/member: the KS's live heap at its first GC after the stage")
	fmt.Fprintln(w, "   (GODEBUG=gctrace=1, MiB resolution) / members; the generators share the 2 cores with the KS: figures are noisy)")
	for _, s := range r.Stages {
		if s.ShowCountErr != "" {
			fmt.Fprintf(w, "  show crypto gdoi ks members | count at %d members failed after %s: %s\n", s.Members, s.ShowCount.Round(time.Millisecond), s.ShowCountErr)
		}
		if s.ShowFullErr != "" {
			fmt.Fprintf(w, "  show crypto gdoi ks members at %d members failed after %s: %s\n", s.Members, s.ShowFull.Round(time.Millisecond), s.ShowFullErr)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// writeRekeyKey writes a new P-256 rekey signing key as PKCS#8 PEM.
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
