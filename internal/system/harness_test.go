package system_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testnet.RemoveBinary()
	os.Exit(code)
}

const ksConf = `hostname ks
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key src-secret address 10.236.0.0 255.255.255.0
crypto key import ec REKEY file REKEYFILE
ip access-list extended traffic
 permit ip 10.61.0.0 0.0.255.255 10.61.0.0 0.0.255.255
crypto ipsec transform-set ts esp-gcm 256
crypto ipsec profile p
 set transform-set ts
crypto gdoi group SRC
 identity number 89
 server local
  rekey authentication mypubkey ec REKEY
  rekey transport unicast
  address ipv4 10.236.0.1
  sa ipsec 1
   profile p
   match address ipv4 traffic
end
`

const gmConf = `hostname %s
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key src-secret address %[2]s
crypto gdoi group SRC
 identity number 89
 server address ipv4 %[2]s
crypto map M 10 gdoi
 set group SRC
interface eth0
 crypto map M
end
`

// srcConf declares the group ike for one srcmstr: every path in dir.
func srcConf(dir, conf string) string {
	return fmt.Sprintf(`# the group ike of one test host
subsystem tmd     group ike order 1 command groupvpn tmd -socket %[1]s/tmd.sock
subsystem iked    group ike order 2 group-only command groupvpn iked -socket %[1]s/iked.sock
subsystem isakmpd group ike order 3 requires tmd group-args "-iked %[1]s/iked.sock" command groupvpn isakmpd -f %[2]s -tmd %[1]s/tmd.sock -socket %[1]s/isakmpd.sock -state %[1]s/isakmpd.db
subsystem ikev2d  group ike order 3 requires tmd not-installed
`, dir, conf)
}

// host is one namespace with its own srcmstr and runtime directory.
type host struct {
	t    *testing.T
	name string
	ns   *testnet.Netns
	dir  string // runtime directory: sockets, logs, state
	conf string // isakmpd's configuration file
	bin  string
	log  *testnet.Buffer // srcmstr's own output
	pid  int             // a standalone isakmpd's process
}

// newHost starts srcmstr in ns with the group ike declared for dir.
func newHost(t *testing.T, ctx context.Context, bin, name string, ns *testnet.Netns, isakmpdConf string) *host {
	t.Helper()
	return newHostTmd(t, ctx, bin, name, ns, isakmpdConf, "")
}

// newHostTmd is newHost with tmdArgs (the data plane's options, e.g.
// "-tun gvtun ...") added to tmd's command line in src.conf.
func newHostTmd(t *testing.T, ctx context.Context, bin, name string, ns *testnet.Netns, isakmpdConf, tmdArgs string) *host {
	t.Helper()
	dir, err := os.MkdirTemp("", "gv-"+name+"-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &host{t: t, name: name, ns: ns, dir: dir, conf: filepath.Join(dir, "isakmpd.conf"), bin: bin, log: &testnet.Buffer{}}
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	h.write(isakmpdConf)
	conf := srcConf(dir, h.conf)
	if tmdArgs != "" {
		conf = strings.Replace(conf, "groupvpn tmd -socket "+dir+"/tmd.sock", "groupvpn tmd -socket "+dir+"/tmd.sock "+tmdArgs, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "src.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "srcmstr", "-f", filepath.Join(dir, "src.conf"), "-rundir", dir)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop the group first so no daemon outlives the test.
		h.src("stopsrc", "-g", "ike")
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s srcmstr:\n%s", name, h.log.String())
			for _, d := range []string{"tmd", "iked", "isakmpd"} {
				b, _ := os.ReadFile(filepath.Join(dir, d+".log"))
				t.Logf("%s %s.log:\n%s", name, d, b)
			}
		}
	})
	h.waitFor("srcmstr answering", 10*time.Second, func() bool {
		_, err := h.src("lssrc", "-a")
		return err == nil
	})
	return h
}

// write replaces isakmpd's configuration file.
func (h *host) write(conf string) {
	h.t.Helper()
	conf = strings.ReplaceAll(conf, "REKEYFILE", filepath.Join(h.dir, "rekey.pem"))
	if err := os.WriteFile(h.conf, []byte(conf), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// src runs an SRC verb against this host's srcmstr and returns its
// combined output; err is the exit error.
func (h *host) src(verb string, args ...string) (string, error) {
	out, err := exec.Command(h.bin, append([]string{verb, "-rundir", h.dir}, args...)...).CombinedOutput()
	return string(out), err
}

// mustSrc is src that fails the test on a non-zero exit.
func (h *host) mustSrc(verb string, args ...string) string {
	h.t.Helper()
	out, err := h.src(verb, args...)
	if err != nil {
		h.t.Fatalf("%s: %s %s: %v\n%s", h.name, verb, strings.Join(args, " "), err, out)
	}
	return out
}

// refused runs a verb that must fail and returns its message.
func (h *host) refused(verb string, args ...string) string {
	h.t.Helper()
	out, err := h.src(verb, args...)
	if err == nil {
		h.t.Fatalf("%s: %s %s succeeded; want a refusal:\n%s", h.name, verb, strings.Join(args, " "), out)
	}
	return strings.TrimSpace(out)
}

func (h *host) cli(c string) string {
	out, _ := exec.Command(h.bin, "cli", "-s", filepath.Join(h.dir, "isakmpd.sock"), "-c", c).CombinedOutput()
	return string(out)
}

func (h *host) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: %s never happened", h.name, what)
		}
	}
}

func (h *host) registered() bool {
	return strings.Contains(h.cli("show crypto gdoi gm"), "Registration status   : Registered")
}

func (h *host) succeeded() string {
	return regexp.MustCompile(`Succeeded registration: \d+`).FindString(h.cli("show crypto gdoi gm"))
}

// status returns a subsystem's lssrc line fields: PID (or ""), status.
func (h *host) status(name string) (pid, status string) {
	h.t.Helper()
	out, _ := h.src("lssrc", "-s", name)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == name {
			if _, err := fmt.Sscan(f[2], new(int)); err == nil {
				return f[2], strings.Join(f[3:], " ")
			}
			return "", strings.Join(f[2:], " ")
		}
	}
	h.t.Fatalf("lssrc -s %s has no line for it:\n%s", name, out)
	return "", ""
}

// teks asks this host's tmd directly for the SAs it holds.
func (h *host) teks() []sadb.TEK {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tmd.Dial(ctx, filepath.Join(h.dir, "tmd.sock"), "system-test", nil)
	if err != nil {
		h.t.Fatalf("%s: tmd: %v", h.name, err)
	}
	defer c.Close()
	return c.TEKs()
}

func spis(ts []sadb.TEK) []uint32 {
	var out []uint32
	for _, t := range ts {
		out = append(out, t.SPI)
	}
	slices.Sort(out)
	return out
}

// standaloneGM runs an isakmpd GM by hand (no srcmstr) in ns.
func standaloneGM(t *testing.T, ctx context.Context, bin string, ns *testnet.Netns, name, ks string) *host {
	t.Helper()
	dir, err := os.MkdirTemp("", "gv-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &host{t: t, name: name, ns: ns, dir: dir, conf: filepath.Join(dir, "isakmpd.conf"), bin: bin, log: &testnet.Buffer{}}
	h.write(fmt.Sprintf(gmConf, name, ks))
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "isakmpd", "-f", h.conf,
		"-socket", filepath.Join(dir, "isakmpd.sock"), "-state", filepath.Join(dir, "isakmpd.db"))
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.pid = cmd.Process.Pid
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, h.log.String())
		}
	})
	return h
}

// network is the test topology: a KS, two GMs, on one bridge.
type network struct {
	ksNS, gm1NS, gm2NS *testnet.Netns
	ksIf               string
	br                 string // the bridge: more hosts can join it
}

func newNetwork(t *testing.T, prefix string) network {
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ss")
	br := testnet.Bridge(t, prefix)
	n := network{br: br, ksNS: testnet.NewNetns(t, prefix+"-ks"), gm1NS: testnet.NewNetns(t, prefix+"-g1"), gm2NS: testnet.NewNetns(t, prefix+"-g2")}
	n.ksIf = testnet.AttachToBridge(t, br, n.ksNS, netip.MustParsePrefix("10.236.0.1/24"))
	testnet.AttachToBridge(t, br, n.gm1NS, netip.MustParsePrefix("10.236.0.11/24"))
	testnet.AttachToBridge(t, br, n.gm2NS, netip.MustParsePrefix("10.236.0.12/24"))
	return n
}
