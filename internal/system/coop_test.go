package system_test

// The proofs of issue 16 (cooperative key servers, SPEC C1, C2, V3, R5,
// R6, P5) with real daemons: two key servers with `redundancy`, each in a
// namespace of its own behind a core router, group members in theirs with
// a host behind each, every daemon under srcmstr, tmd -tun carrying the
// hosts' numbered traffic (flowmeter) through the data plane. The COOP
// timers are short (announcements every 1 s, dead after 4 s, a 2 s
// election wait) so that the whole file runs in about two minutes.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/flowmeter"
	"github.com/groupvpn/groupvpn/internal/pcap"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// The COOP timers of these tests.
const (
	coopPeriod = 1 * time.Second
	coopDead   = 4 * time.Second
	coopWait   = 2 * time.Second
)

// coopKSConf is a cooperative key server: hostname, an optional
// `groupvpn version` line, its address, priority and peer.
const coopKSConf = `hostname %[1]s
%[2]scrypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key src-secret address 10.238.0.0 255.255.0.0
crypto isakmp key ks-pair-secret address %[5]s
crypto key import ec REKEY file REKEYFILE
ip access-list extended traffic
 permit ip 10.1.0.0 0.0.255.255 10.1.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 256
crypto ipsec profile p
 set transform-set ts
crypto gdoi group SRC
 identity number 89
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 %[3]s
  redundancy
   local priority %[4]d
   peer address ipv4 %[5]s
   timers announce 1
   timers dead 4
   timers election-wait 2
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

// coopGMConf is a member listing both key servers, its own side's first.
const coopGMConf = `hostname %[1]s
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key src-secret address 10.238.0.0 255.255.0.0
crypto gdoi group SRC
 identity number 89
 server address ipv4 %[2]s
 server address ipv4 %[3]s
crypto map M 10 gdoi
 set group SRC
interface eth0
 crypto map M
end
`

// coopKSAddr is key server i's address (ks1 10.238.0.1, ks2 10.238.9.1);
// member n (1-based) is 10.238.n.2 towards the core, its host 10.1.n.2.
func coopKSAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 238, byte(9 * i), 1}) }

// coopNet is the topology: a core router, ks1 and ks2, members (the first
// half list ks1 first: side A; the others ks2 first: side B).
type coopNet struct {
	t      *testing.T
	core   *testnet.Netns
	ks     [2]*host
	gm     []*host
	hostNS []*testnet.Netns

	meter   *flowmeter.Meter
	conns   []*net.UDPConn
	stopGen context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	noTEK   []string // "gmN at T": a sample that found no valid TEK
	samples int
}

// newCoopNet builds the topology with tag (at most 5 characters) and n
// members, ks2 announcing ks2Version when set (e.g. "1.0.1"), and starts
// the key servers (their isakmpd under srcmstr) and, with dataPlane, every
// member with tmd -tun.
func newCoopNet(t *testing.T, ctx context.Context, tag string, n int, ks2Version string, dataPlane bool) *coopNet {
	t.Helper()
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ip", "nft", "ss")
	bin := testnet.Binary(t)
	c := &coopNet{t: t, meter: flowmeter.New()}
	p := netip.MustParsePrefix
	c.core = testnet.NewNetns(t, tag+"-core")
	forward := func(ns *testnet.Netns) {
		ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
		ns.Run(t, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
	}
	forward(c.core)
	for i := range 2 {
		ns := testnet.NewNetns(t, fmt.Sprintf("%s-ks%d", tag, i+1))
		a := coopKSAddr(i)
		gw := netip.AddrFrom4([4]byte{10, 238, byte(9 * i), 254})
		testnet.VethBetween(t, fmt.Sprintf("%sk%d", tag, i+1), c.core, ns, netip.PrefixFrom(gw, 24), netip.PrefixFrom(a, 24))
		ns.Run(t, "ip", "route", "add", "default", "via", gw.String())
		version := ""
		if i == 1 && ks2Version != "" {
			version = "groupvpn version " + ks2Version + "\n"
		}
		conf := fmt.Sprintf(coopKSConf, fmt.Sprintf("ks%d", i+1), version, a, []int{100, 50}[i], coopKSAddr(1-i))
		c.ks[i] = newHost(t, ctx, bin, fmt.Sprintf("ks%d", i+1), ns, conf)
	}
	// One rekey signing key for both (docs/config.md: export/import).
	key, err := os.ReadFile(filepath.Join(c.ks[0].dir, "rekey.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.ks[1].dir, "rekey.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range c.ks {
		k.mustSrc("startsrc", "-g", "ike")
	}
	for i := range n {
		m := i + 1
		gmNS := testnet.NewNetns(t, fmt.Sprintf("%s-g%d", tag, m))
		forward(gmNS)
		testnet.VethBetween(t, fmt.Sprintf("%sc%d", tag, m), c.core, gmNS, p(fmt.Sprintf("10.238.%d.1/24", m)), p(fmt.Sprintf("10.238.%d.2/24", m)))
		gmNS.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.238.%d.1", m))
		first, second := coopKSAddr(0), coopKSAddr(1)
		if i >= n/2 {
			first, second = second, first
		}
		conf := fmt.Sprintf(coopGMConf, fmt.Sprintf("gm%d", m), first, second)
		args := ""
		if dataPlane {
			hns := testnet.NewNetns(t, fmt.Sprintf("%s-h%d", tag, m))
			testnet.VethBetween(t, fmt.Sprintf("%sl%d", tag, m), gmNS, hns, p(fmt.Sprintf("10.1.%d.1/24", m)), p(fmt.Sprintf("10.1.%d.2/24", m)))
			hns.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.1.%d.1", m))
			c.core.Run(t, "ip", "route", "add", fmt.Sprintf("10.1.%d.0/24", m), "via", fmt.Sprintf("10.238.%d.2", m))
			c.hostNS = append(c.hostNS, hns)
			args = fmt.Sprintf("-tun gvtun -local 10.1.%d.0/24 -src 10.1.%d.1 -group SRC", m, m)
		}
		c.gm = append(c.gm, newHostTmd(t, ctx, bin, fmt.Sprintf("gm%d", m), gmNS, conf, args))
	}
	return c
}

// startMembers starts every member and waits for its registration, its TEK
// in tmd and (with the data plane) the protected route into its TUN.
func (c *coopNet) startMembers() {
	c.t.Helper()
	for _, g := range c.gm {
		g.mustSrc("startsrc", "-g", "ike")
	}
	for _, g := range c.gm {
		g.waitFor("registration", 30*time.Second, g.registered)
		g.waitFor("the TEK in tmd", 10*time.Second, func() bool { return len(g.teks()) > 0 })
		if len(c.hostNS) > 0 {
			g.waitFor("the protected route into the TUN", 10*time.Second, func() bool {
				out, _ := g.ns.Command("ip", "route", "show", "table", "1001").CombinedOutput()
				return strings.Contains(string(out), "10.1.0.0/16 dev gvtun")
			})
		}
	}
}

// coopFlowPort is the UDP port of the hosts' numbered packets.
const coopFlowPort = 7000

// startTraffic makes every host send a numbered packet to every other host
// each interval, and samples every member's TEKs every 200 ms, until
// stopTraffic.
func (c *coopNet) startTraffic(ctx context.Context, interval time.Duration) time.Time {
	c.t.Helper()
	for i, hns := range c.hostNS {
		hns.Do(c.t, func() error {
			conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(coopHost(i), coopFlowPort)))
			c.conns = append(c.conns, conn)
			return err
		})
	}
	gctx, stop := context.WithCancel(ctx)
	c.stopGen = stop
	for _, conn := range c.conns {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				c.meter.Received(buf[:n], time.Now())
			}
		}()
	}
	gen := &flowmeter.Generator{Meter: c.meter, Flows: flowmeter.Pairs(len(c.conns)), Interval: interval,
		Send: func(f flowmeter.Flow, p []byte) {
			c.conns[f.Src].WriteToUDPAddrPort(p, netip.AddrPortFrom(coopHost(int(f.Dst)), coopFlowPort))
		}}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		gen.Run(gctx)
	}()
	go func() {
		defer c.wg.Done()
		c.sampleTEKs(gctx)
	}()
	return time.Now()
}

func coopHost(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i + 1), 2}) }

// stopTraffic ends the traffic and the sampling, waits a second for the
// packets in flight and returns every pair's account since from.
func (c *coopNet) stopTraffic(from time.Time) []flowmeter.Stats {
	to := time.Now()
	c.stopGen()
	time.Sleep(time.Second)
	for _, conn := range c.conns {
		conn.Close()
	}
	c.wg.Wait()
	return c.meter.Window(from, to)
}

// sampleTEKs asks every member's tmd for its TEKs every 200 ms and notes
// each sample in which a member holds no valid TEK (installed, not
// expired, not deactivated).
func (c *coopNet) sampleTEKs(ctx context.Context) {
	tk := time.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	for {
		for _, g := range c.gm {
			ts, err := tmdTEKs(ctx, g)
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			valid := 0
			for _, k := range ts {
				if !k.Expires.Before(now) && (k.Deactivate.IsZero() || now.Before(k.Deactivate)) {
					valid++
				}
			}
			c.mu.Lock()
			c.samples++
			if err != nil || valid == 0 {
				c.noTEK = append(c.noTEK, fmt.Sprintf("%s at %s (%v)", g.name, now.Format("15:04:05.000"), err))
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// tmdTEKs is host.teks without failing the test (for the sampler's goroutine).
func tmdTEKs(ctx context.Context, h *host) ([]sadb.TEK, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := tmd.Dial(ctx, filepath.Join(h.dir, "tmd.sock"), "system-test", nil)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.TEKs(), nil
}

var (
	coopRoleRE    = regexp.MustCompile(`Local KS Role: (\w+)`)
	coopPrimaryRE = regexp.MustCompile(`Primary KS: (\S+)`)
	peerRoleRE    = regexp.MustCompile(`Peer KS Role: (\w+)`)
	rekeysRE      = regexp.MustCompile(`Rekeys received\s*: (\d+)`)
	kekSPIRE      = regexp.MustCompile(`KEK SPI\s*: ([0-9a-f]+)`)
)

// coopRole is what `show crypto gdoi ks coop` says of this KS: its role,
// the primary it follows and the peer's role ("" when it does not answer).
func (h *host) coopRole() (role, primary, peer string) {
	out := h.cli("show crypto gdoi ks coop")
	if m := coopRoleRE.FindStringSubmatch(out); m != nil {
		role = m[1]
	}
	if m := coopPrimaryRE.FindStringSubmatch(out); m != nil {
		primary = m[1]
	}
	if m := peerRoleRE.FindStringSubmatch(out); m != nil {
		peer = m[1]
	}
	return role, primary, peer
}

// agreed returns the index of the one primary the running key servers
// (up) agree on, each showing the other's role the same way.
func (c *coopNet) agreed(up [2]bool) (int, string) {
	var roles, prims, peers [2]string
	var lines []string
	for i, k := range c.ks {
		if up[i] {
			roles[i], prims[i], peers[i] = k.coopRole()
		}
		lines = append(lines, fmt.Sprintf("%s %q primary %q peer %q", k.name, roles[i], prims[i], peers[i]))
	}
	desc := strings.Join(lines, "; ")
	p := -1
	for i := range 2 {
		if up[i] && roles[i] == "Primary" {
			if p >= 0 {
				return -1, desc
			}
			p = i
		}
	}
	if p < 0 {
		return -1, desc
	}
	for i := range 2 {
		if !up[i] {
			continue
		}
		if prims[i] != coopKSAddr(p).String() {
			return -1, desc
		}
		if i != p && (peers[i] != "Primary" || up[p] && peers[p] != "Secondary") {
			return -1, desc
		}
	}
	return p, desc
}

// waitAgreed waits until the running key servers agree on a primary.
func (c *coopNet) waitAgreed(t *testing.T, up [2]bool, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		p, desc := c.agreed(up)
		if p >= 0 {
			return p, time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("the key servers agree on no primary within %s: %s", timeout, desc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitUntil polls cond every 100 ms and fails t (a subtest's own) if it
// does not hold within timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}
}

// keysOf is a member's KEK SPI and TEK SPIs as its show commands print them.
func keysOf(g *host) (kek string, teks []string) {
	if m := kekSPIRE.FindStringSubmatch(g.cli("show crypto gdoi gm | include KEK SPI")); m != nil {
		kek = m[1]
	}
	teks = g.gmTEKs()
	slices.Sort(teks)
	return kek, slices.Compact(teks)
}

func rekeysOf(g *host) int {
	m := rekeysRE.FindStringSubmatch(g.cli("show crypto gdoi gm"))
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkFlows fails the test unless every pair of hosts delivered every
// packet it sent.
func checkFlows(t *testing.T, ss []flowmeter.Stats, what string) {
	t.Helper()
	tot := flowmeter.Total(ss)
	t.Logf("%s: %d pairs, %d packets sent, %d lost, longest gap %s", what, len(ss), tot.Sent, tot.Lost, tot.LongestGap.Round(time.Millisecond))
	for _, s := range ss {
		if s.Sent == 0 || s.Lost > 0 {
			t.Errorf("%s: host %d -> host %d sent %d, lost %d (longest gap %s)", what, s.Src+1, s.Dst+1, s.Sent, s.Lost, s.LongestGap.Round(time.Millisecond))
		}
	}
}

// killPrimary kills a key server's isakmpd by PID (killIsakmpd, SIGKILL)
// and waits for srcmstr to see it inoperative.
func killPrimary(t *testing.T, h *host) {
	t.Helper()
	killIsakmpd(t, h)
	waitUntil(t, h.name+": lssrc showing isakmpd inoperative", 10*time.Second, func() bool {
		_, st := h.status("isakmpd")
		return strings.HasPrefix(st, "inoperative")
	})
}

// restartIsakmpd starts a killed isakmpd again under srcmstr.
func restartIsakmpd(t *testing.T, h *host) {
	t.Helper()
	h.mustSrc("stopsrc", "-s", "isakmpd")
	h.mustSrc("startsrc", "-g", "ike")
	waitUntil(t, h.name+": isakmpd answering", 10*time.Second, func() bool {
		return strings.Contains(h.cli("show crypto gdoi ks coop"), "Local KS Role")
	})
}

// TestCoopKeyServers runs the COOP proofs on one topology, in order: two
// key servers (ks1 priority 100, ks2 50), four members (gm1, gm2 list ks1
// first; gm3, gm4 ks2 first), the hosts' numbered traffic through the data
// plane from the first registration to the end, every member's TEKs
// sampled every 200 ms throughout.
func TestCoopKeyServers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCoopNet(t, ctx, "gvcp", 4, "", true)
	up := [2]bool{true, true}

	// (a) the election.
	ok := t.Run("election", func(t *testing.T) {
		// proves: C1 (issue 16: election — the KS of higher priority is primary and `show crypto gdoi ks coop` on both agrees)
		p, took := c.waitAgreed(t, up, coopWait+3*coopDead)
		if p != 0 {
			_, desc := c.agreed(up)
			t.Fatalf("primary ks%d; want ks1 (priority 100): %s", p+1, desc)
		}
		t.Logf("ks1 primary, ks2 its secondary, %s after both started (election wait %s)", took.Round(time.Millisecond), coopWait)
		for _, k := range c.ks {
			out := k.cli("show crypto gdoi | include Redundancy|Local")
			for _, w := range []string{"Redundancy               : Configured", "Local Address        : " + coopKSAddr(slices.Index(c.ks[:], k)).String()} {
				if !strings.Contains(out, w) {
					t.Errorf("%s: show crypto gdoi lacks %q:\n%s", k.name, w, out)
				}
			}
		}
	})
	if !ok {
		t.FailNow()
	}
	c.startMembers()
	from := c.startTraffic(ctx, 50*time.Millisecond)

	// (d) the secondary's refusals.
	t.Run("secondary refusals", func(t *testing.T) {
		// proves: R6, P5 (issue 16: a real secondary refuses removal and policy replace with the SPEC texts)
		ks2 := c.ks[1]
		out, err := exec.Command(ks2.bin, "cli", "-s", filepath.Join(ks2.dir, "isakmpd.sock"), "--yes", "-c", "clear crypto gdoi ks members").CombinedOutput()
		if want := "ERROR for group SRC: can only execute this command on Primary KS"; err == nil || !strings.Contains(string(out), want) {
			t.Errorf("clear crypto gdoi ks members on the secondary: %v\n%s\nwant %q", err, out, want)
		}
		out, err = exec.Command(ks2.bin, "cli", "-s", filepath.Join(ks2.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput()
		if want := "ERROR for group SRC: This command must be executed on Pri-KS"; err == nil || !strings.Contains(string(out), want) {
			t.Errorf("crypto gdoi ks rekey on the secondary: %v\n%s\nwant %q", err, out, want)
		}
	})

	// (b) failover during a rekey.
	t.Run("failover during a rekey", func(t *testing.T) {
		// proves: C1 (issue 16: failover — the primary dies during a rekey; the secondary is primary within the dead interval, its rekey is accepted by every member, traffic flows; the old primary returns as secondary without members losing keys)
		rekeys := map[string]int{}
		old := map[string]bool{}
		for _, g := range c.gm {
			rekeys[g.name] = rekeysOf(g)
			_, teks := keysOf(g)
			for _, s := range teks {
				old[s] = true
			}
		}
		ks1, ks2 := c.ks[0], c.ks[1]
		if out, err := exec.Command(ks1.bin, "cli", "-s", filepath.Join(ks1.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
			t.Fatalf("crypto gdoi ks rekey on ks1: %v\n%s", err, out)
		}
		killed := time.Now()
		killPrimary(t, ks1)
		up[0] = false
		t.Cleanup(func() { // the next proof needs both key servers
			if !up[0] {
				restartIsakmpd(t, ks1)
				up[0] = true
			}
		})
		p, _ := c.waitAgreed(t, up, 3*coopDead)
		took := time.Since(killed)
		if p != 1 {
			t.Fatalf("ks%d primary after ks1 died", p+1)
		}
		t.Logf("ks2 primary %s after ks1's isakmpd was killed (dead interval %s)", took.Round(time.Millisecond), coopDead)
		if took > coopDead+2*coopPeriod {
			t.Errorf("ks2 took %s to become primary; the dead interval is %s", took, coopDead)
		}
		// ks2's rekey reaches every member.
		for _, g := range c.gm {
			_, teks := keysOf(g)
			for _, s := range teks {
				old[s] = true
			}
		}
		if out, err := exec.Command(ks2.bin, "cli", "-s", filepath.Join(ks2.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
			t.Fatalf("crypto gdoi ks rekey on ks2, the new primary: %v\n%s", err, out)
		}
		var fresh string
		t.Logf("ks2 after its takeover: %d members in show crypto gdoi ks members", strings.Count(ks2.cli("show crypto gdoi ks members"), "Group Member ID"))
		for _, g := range c.gm {
			waitUntil(t, g.name+" holding ks2's new TEK", 15*time.Second, func() bool {
				_, teks := keysOf(g)
				for _, s := range teks {
					if !old[s] {
						if fresh == "" {
							fresh = s
						}
						return s == fresh && rekeysOf(g) > rekeys[g.name]
					}
				}
				return false
			})
			t.Logf("%s: rekeys received %d -> %d, holds %s", g.name, rekeys[g.name], rekeysOf(g), fresh)
		}
		// ks1 returns and stays secondary (no preemption).
		restartIsakmpd(t, ks1)
		up[0] = true
		time.Sleep(coopWait + 2*coopPeriod)
		if p, desc := c.agreed(up); p != 1 {
			t.Errorf("after ks1's return: %s; want ks2 primary, ks1 its secondary", desc)
		}
		for _, g := range c.gm {
			if _, teks := keysOf(g); !slices.Contains(teks, fresh) {
				t.Errorf("%s lost ks2's TEK %s after ks1's return: %v", g.name, fresh, teks)
			}
		}
	})

	// (c) partition and merge.
	t.Run("partition and merge", func(t *testing.T) {
		// proves: C1, C2 (issue 16: partition and merge — each side elects a primary, on heal one remains, members merge, every member ends on one KEK and TEK set, 0 members ever without a valid TEK, every pair of hosts delivers)
		cut := testnet.Partition(t, c.core, coopKSAddr(0), coopKSAddr(1))
		start := time.Now()
		for {
			r1, _, _ := c.ks[0].coopRole()
			r2, _, _ := c.ks[1].coopRole()
			if r1 == "Primary" && r2 == "Primary" {
				t.Logf("partitioned: both key servers primary %s after the cut", time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Since(start) > coopWait+3*coopDead {
				t.Fatalf("partitioned for %s: ks1 %s, ks2 %s; want each side's own primary", time.Since(start).Round(time.Second), r1, r2)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Each side rekeys on its own.
		for _, k := range c.ks {
			if out, err := exec.Command(k.bin, "cli", "-s", filepath.Join(k.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
				t.Errorf("crypto gdoi ks rekey on %s while partitioned: %v\n%s", k.name, err, out)
			}
		}
		time.Sleep(2 * time.Second)
		keks, teks := map[string][]string{}, map[string][]string{}
		for _, g := range c.gm {
			kek, ts := keysOf(g)
			keks[kek] = append(keks[kek], g.name)
			teks[strings.Join(ts, ",")] = append(teks[strings.Join(ts, ",")], g.name)
		}
		t.Logf("while partitioned, after each side's rekey, the members hold %d KEK(s) %v and %d TEK set(s) %v", len(keks), keks, len(teks), teks)
		if cut.Dropped() == 0 {
			t.Error("the cut dropped nothing: the key servers did not try to reach each other")
		}
		cut.Heal()
		healed := time.Now()
		p, _ := c.waitAgreed(t, up, 3*coopDead)
		t.Logf("healed: ks%d the one primary %s after the heal", p+1, time.Since(healed).Round(time.Millisecond))
		prim := c.ks[p]
		// Members merge: the primary lists every member.
		waitUntil(t, prim.name+" listing every member", 3*coopDead, func() bool {
			out := prim.cli("show crypto gdoi ks members")
			for i := range c.gm {
				if !strings.Contains(out, fmt.Sprintf("10.238.%d.2", i+1)) {
					return false
				}
			}
			return true
		})
		// The primary's rekey brings every member to one KEK and TEK set:
		// each holds the same KEK and the primary's new TEK (the TEKs of
		// the partition's rekeys stay installed, shortened, until they
		// expire, so the sets compared are the TEKs new since the heal).
		seen := map[string]bool{}
		for _, g := range c.gm {
			_, teks := keysOf(g)
			for _, s := range teks {
				seen[s] = true
			}
		}
		if out, err := exec.Command(prim.bin, "cli", "-s", filepath.Join(prim.dir, "isakmpd.sock"), "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
			t.Fatalf("crypto gdoi ks rekey on %s after the heal: %v\n%s", prim.name, err, out)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			keks, sets := map[string]bool{}, map[string]bool{}
			for _, g := range c.gm {
				kek, teks := keysOf(g)
				keks[kek] = true
				var fresh []string
				for _, s := range teks {
					if !seen[s] {
						fresh = append(fresh, s)
					}
				}
				sets[strings.Join(fresh, ",")] = true
			}
			if len(keks) == 1 && len(sets) == 1 && !keks[""] && !sets[""] {
				t.Logf("every member on one KEK %v and the primary's new TEKs %v, %s after the heal", keks, sets, time.Since(healed).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("15 s after the primary's rekey the members hold %d KEKs and %d sets of new TEKs: %v %v", len(keks), len(sets), keks, sets)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	ss := c.stopTraffic(from)
	checkFlows(t, ss, "the hosts' traffic from the first registration to the end")
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("%d TEK samples (every 200 ms per member), %d without a valid TEK", c.samples, len(c.noTEK))
	if len(c.noTEK) > 0 {
		t.Errorf("members without a valid TEK: %v", c.noTEK)
	}
}

// TestCoopVersionsAndANNs: ks2 announces version 1.0.1 (SPEC V1: a node
// configured to announce an older version); one member.
func TestCoopVersionsAndANNs(t *testing.T) {
	t.Parallel()
	testnet.RequireTools(t, "tshark")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCoopNet(t, ctx, "gvcv", 1, "1.0.1", false)
	capt := testnet.StartCapture(t, c.ks[0].ns, 848)
	up := [2]bool{true, true}
	if p, _ := c.waitAgreed(t, up, coopWait+3*coopDead); p != 0 {
		t.Fatalf("ks%d primary; want ks1", p+1)
	}
	c.startMembers()
	time.Sleep(2 * coopPeriod) // the member list reaches ks2

	t.Run("version lists", func(t *testing.T) {
		// proves: V3, R5 (issue 16: a 1.0.1 secondary — its announced version listed by `show crypto gdoi feature`, and the mixed-version warning on the primary)
		ks1 := c.ks[0]
		for _, f := range []string{"gm-removal", "policy-replace"} {
			out := ks1.cli("show crypto gdoi feature " + f)
			for _, w := range []*regexp.Regexp{
				regexp.MustCompile(`10\.238\.0\.1\s+1\.0\.3\s+Yes`),
				regexp.MustCompile(`10\.238\.9\.1\s+1\.0\.1\s+No`),
				regexp.MustCompile(`10\.238\.1\.2\s+1\.0\.3\s+Yes`),
			} {
				if !w.MatchString(out) {
					t.Errorf("show crypto gdoi feature %s lacks %s:\n%s", f, w, out)
				}
			}
		}
		out, _ := exec.Command(ks1.bin, "cli", "-s", filepath.Join(ks1.dir, "isakmpd.sock"), "--answer", "yes", "--answer", "no", "-c", "clear crypto gdoi ks members").CombinedOutput()
		want := "WARNING for group SRC: some devices cannot support GM-REMOVAL and can cause network disruption. Please check 'show crypto gdoi feature'."
		if !strings.Contains(string(out), want) {
			t.Errorf("clear crypto gdoi ks members on the primary with a 1.0.1 secondary:\n%s\nwant %q", out, want)
		}
		// ks2's own view lists ks1's version too.
		if out := c.ks[1].cli("show crypto gdoi ks coop"); !strings.Contains(out, "Peer Version: 1.0.3") || !strings.Contains(out, "Local KS version: 1.0.1") {
			t.Errorf("ks2's show crypto gdoi ks coop:\n%s", out)
		}
	})

	t.Run("tshark decodes the ANNs", func(t *testing.T) {
		// proves: C2 (issue 16: the ANNs the daemons exchanged, captured on ks1's link, decoded by tshark with no malformed verdict)
		time.Sleep(2 * coopPeriod)
		n := -1
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(capt.Datagrams()) != n; time.Sleep(300 * time.Millisecond) {
			n = len(capt.Datagrams())
		}
		capt.Stop()
		var anns []testnet.Datagram
		for _, d := range capt.Datagrams() {
			ks := d.Src.Addr() == coopKSAddr(0) && d.Dst.Addr() == coopKSAddr(1) || d.Src.Addr() == coopKSAddr(1) && d.Dst.Addr() == coopKSAddr(0)
			if ks && len(d.Payload) >= 28 && d.Payload[18] == 240 {
				anns = append(anns, d)
			}
		}
		if len(anns) < 4 {
			t.Fatalf("captured %d ANNs (exchange 240) between the key servers; want several each way", len(anns))
		}
		path := filepath.Join(t.TempDir(), "ann.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := pcap.NewWriter(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range anns {
			if err := w.WriteUDP(time.Unix(1700000000, int64(i)*1000), d.Src, d.Dst, d.Payload); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		cmd := exec.Command("tshark", "-n", "-r", path, "-d", "udp.port==848,isakmp", "-V")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, stderr.String())
		}
		text := string(out)
		if got := strings.Count(text, "Exchange type: Unknown (240)"); got != len(anns) {
			t.Errorf("tshark shows %d messages of exchange 240; captured %d", got, len(anns))
		}
		if got := strings.Count(text, "Encryption: Encrypted"); got != len(anns) {
			t.Errorf("tshark shows %d encrypted messages; captured %d ANNs (sent encrypted in the KS-KS SA)", got, len(anns))
		}
		if strings.Contains(text, "Malformed") || strings.Contains(text, "Expert Info (Error") {
			t.Errorf("tshark reports a malformation:\n%s", text)
		}
		t.Logf("%d ANNs captured between the key servers, decoded by tshark (header; the HASH and the rest are encrypted in the KS-KS phase-1 SA)", len(anns))
	})
}
