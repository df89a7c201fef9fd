package testnet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Paths of the strongSwan programs the harness drives (Debian's
// strongswan-charon and strongswan-swanctl).
const (
	CharonPath  = "/usr/lib/ipsec/charon"
	SwanctlPath = "/usr/sbin/swanctl"
	PluginDir   = "/usr/lib/ipsec/plugins"
)

// DefaultPlugins are the charon plugins loaded unless CharonConfig.Plugins
// says otherwise: enough for IKEv1 main mode with PSK, RSA certificates
// (gmp) and, when Debian's libstrongswan-standard-plugins is installed,
// ECDSA certificates and ECP/Curve25519 groups (openssl). Plugins whose
// shared object is absent are left out of the load list (see
// RequirePlugins for tests that need one).
var DefaultPlugins = []string{
	"random", "nonce", "aes", "sha1", "sha2", "md5", "hmac",
	"pem", "pkcs1", "pkcs8", "x509", "pubkey", "gmp", "openssl",
	"kernel-netlink", "socket-default", "vici", "updown",
}

// DefaultLogLevels are the filelog levels per subsystem. ike = 4 makes
// charon log the IKEv1 key derivation (see ParseIKEv1Keymat).
var DefaultLogLevels = map[string]int{
	"default": 1,
	"ike":     4,
	"cfg":     2,
	"net":     2,
	"enc":     1,
}

// swanctlPlugins are the plugins swanctl itself loads to parse credentials.
var swanctlPlugins = []string{"pem", "pkcs1", "pkcs8", "x509", "pubkey", "gmp", "openssl", "random"}

// CharonConfig tunes StartCharon. The zero value is ready to use.
type CharonConfig struct {
	// Plugins replaces DefaultPlugins.
	Plugins []string
	// LogLevels replaces DefaultLogLevels.
	LogLevels map[string]int
	// Extra is strongswan.conf text put inside the charon { } section,
	// e.g. "retransmit_timeout = 1\n".
	Extra string
	// StartTimeout bounds the wait for the vici socket (default 20s).
	StartTimeout time.Duration
}

// Charon is a charon daemon started by StartCharon.
//
// It runs as
//
//	ip netns exec NS unshare --mount --propagation private \
//	    sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon'
//
// with STRONGSWAN_CONF pointing to its own strongswan.conf in Dir. charon
// 5.9.8 has its pid file compiled in as /var/run/charon.pid (/var/run is a
// symlink to /run on Debian; no strongswan.conf option relocates it) and
// refuses to start while that file names a live process, so each instance
// gets a private mount namespace with a fresh tmpfs on /run (and on
// /var/run too, should that not be a symlink). The pid file lands there,
// invisible to the host and to other instances, and vanishes with the
// process. ip netns exec already gives the process a mount namespace of its
// own (to remount /sys); unshare makes a further private one so the tmpfs
// cannot propagate anywhere. The vici socket lives in Dir, which the
// private namespace shares with the host, so swanctl reaches it from the
// test process directly.
type Charon struct {
	NS       *Netns
	Dir      string // per-instance directory: strongswan.conf, logs, vici socket, swanctl files
	ConfPath string // Dir/strongswan.conf
	LogPath  string // Dir/charon.log (the filelog)
	ViciURI  string // unix://Dir/charon.vici

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	loads   int
}

// RequireCharon checks everything StartCharon needs: root, ip, unshare,
// mount, charon and swanctl.
func RequireCharon(t testing.TB) {
	t.Helper()
	RequireNetns(t)
	RequireTools(t, "unshare", "mount", CharonPath, SwanctlPath)
}

// RequirePlugins skips the test (fails it under CI=true) unless every named
// charon plugin is installed in PluginDir. ECDSA and the ECP groups need
// "openssl", from Debian's libstrongswan-standard-plugins.
func RequirePlugins(t testing.TB, plugins ...string) {
	t.Helper()
	var missing []string
	for _, p := range plugins {
		if !pluginInstalled(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		skipOrFatal(t, "missing strongSwan plugin(s) %s in %s (openssl comes with Debian's libstrongswan-standard-plugins)",
			strings.Join(missing, ", "), PluginDir)
	}
}

func pluginInstalled(name string) bool {
	_, err := os.Stat(filepath.Join(PluginDir, "libstrongswan-"+name+".so"))
	return err == nil
}

func installedPlugins(want []string) []string {
	var have []string
	for _, p := range want {
		if pluginInstalled(p) {
			have = append(have, p)
		}
	}
	return have
}

// charonDir returns a directory for the instance, short enough for the vici
// socket path (sun_path holds 108 bytes).
func charonDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir)+len("/charon.vici") < 100 {
		return dir
	}
	dir, err := os.MkdirTemp("", "testnet-charon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// strongswanConf renders the instance's strongswan.conf.
func strongswanConf(dir string, cfg CharonConfig) string {
	plugins := cfg.Plugins
	if plugins == nil {
		plugins = installedPlugins(DefaultPlugins)
	}
	levels := cfg.LogLevels
	if levels == nil {
		levels = DefaultLogLevels
	}
	var lv []string
	for k, v := range levels {
		lv = append(lv, fmt.Sprintf("\t\t\t\t%s = %d\n", k, v))
	}
	sort.Strings(lv)
	return fmt.Sprintf(`# Written by internal/testnet for one charon instance; see StartCharon.
charon {
	load = %s
	threads = 8
	# No kernel ESP here: nothing but IKE SAs is wanted, and no routes or
	# virtual IPs are installed.
	install_routes = no
	install_virtual_ip = no
	plugins {
		vici {
			socket = unix://%s/charon.vici
		}
	}
	filelog {
		testnet {
			path = %s/charon.log
			time_format = %%H:%%M:%%S
			ike_name = yes
			append = no
			flush_line = yes
%s		}
	}
%s
}
swanctl {
	load = %s
}
`, strings.Join(plugins, " "), dir, dir, strings.Join(lv, ""), cfg.Extra,
		strings.Join(installedPlugins(swanctlPlugins), " "))
}

// StartCharon starts charon inside ns with its own strongswan.conf, vici
// socket, log file and private /run (see Charon), waits until the vici
// socket answers, and stops the daemon on cleanup (SIGTERM, then SIGKILL
// after 5s). If the test failed, the tail of the log is logged.
func StartCharon(t testing.TB, ns *Netns, cfg CharonConfig) *Charon {
	t.Helper()
	RequireCharon(t)
	if ns == nil {
		t.Fatal("testnet: StartCharon needs a namespace; charon never runs in the root namespace")
	}
	dir := charonDir(t)
	c := &Charon{
		NS:       ns,
		Dir:      dir,
		ConfPath: filepath.Join(dir, "strongswan.conf"),
		LogPath:  filepath.Join(dir, "charon.log"),
		ViciURI:  "unix://" + filepath.Join(dir, "charon.vici"),
		done:     make(chan struct{}),
	}
	if err := os.WriteFile(c.ConfPath, []byte(strongswanConf(dir, cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "mount -t tmpfs -o mode=0755 tmpfs /run && " +
		"{ [ -L /var/run ] || mount -t tmpfs -o mode=0755 tmpfs /var/run; } && " +
		"exec " + CharonPath
	// ip netns exec and unshare (without --fork) both exec, as does sh, so
	// the process started here ends up being charon itself.
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name,
		"unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	c.cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.ConfPath)
	out, err := os.Create(filepath.Join(dir, "charon.out"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout = out
	c.cmd.Stderr = out
	// Should the test binary die without running cleanups, take charon
	// with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("testnet: start charon in %s: %v", ns.Name, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		out.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("testnet: charon in %s (%s), last lines of its log:\n%s", ns.Name, dir, tail(c.Log(), 60))
		}
	})

	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			t.Fatalf("testnet: charon in %s exited at start (%v): %s\nlog:\n%s",
				ns.Name, c.waitErr, c.output(), tail(c.Log(), 40))
		default:
		}
		if _, err := c.swanctl("--stats"); err == nil {
			return c
		} else if time.Now().After(deadline) {
			t.Fatalf("testnet: charon in %s: vici socket did not answer within %v: %v", ns.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Charon) stop(t testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Logf("testnet: charon in %s ignored SIGTERM for 5s, killing it", c.NS.Name)
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// output returns what charon wrote to stdout/stderr.
func (c *Charon) output() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "charon.out"))
	return strings.TrimSpace(string(b))
}

// Log returns charon's log file as written so far (it is flushed line by
// line).
func (c *Charon) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// swanctl runs swanctl against this instance's vici socket, with this
// instance's strongswan.conf (for swanctl's own plugin list).
func (c *Charon) swanctl(args ...string) (string, error) {
	return c.swanctlIn("", args...)
}

func (c *Charon) swanctlIn(swanctlDir string, args ...string) (string, error) {
	args = append(args, "--uri", c.ViciURI)
	cmd := exec.Command(SwanctlPath, args...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.ConfPath)
	if swanctlDir != "" {
		cmd.Env = append(cmd.Env, "SWANCTL_DIR="+swanctlDir)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("swanctl %s: %v:\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Swanctl runs swanctl with args against this instance (--uri is added),
// fails the test if it fails, and returns its output.
func (c *Charon) Swanctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.swanctl(args...)
	if err != nil {
		t.Fatalf("testnet: charon in %s: %v", c.NS.Name, err)
	}
	return out
}

// Load writes swanctlConf as swanctl.conf into a fresh directory under Dir,
// with files (paths relative to that directory, e.g. "x509/moon.pem",
// "x509ca/ca.pem", "private/moon.pem", "rsa/…", "ecdsa/…") beside it, and
// loads everything with
//
//	swanctl --load-all --file DIR/swanctl.conf --uri VICI
//
// swanctl 5.9.8 takes the credential directories (x509/, private/, …)
// relative to the directory of --file (checked; without --file it uses
// SWANCTL_DIR, default /etc/swanctl); Load also sets SWANCTL_DIR to that
// directory so nothing can fall back to /etc/swanctl. Every credential
// subdirectory is created, empty if unused, since swanctl complains about
// missing ones. Load returns swanctl's output; it fails the test if swanctl
// fails or reports a failure.
func (c *Charon) Load(t testing.TB, swanctlConf string, files map[string][]byte) string {
	t.Helper()
	c.loads++
	dir := filepath.Join(c.Dir, fmt.Sprintf("swanctl.%d", c.loads))
	for _, sub := range []string{"x509", "x509ca", "x509aa", "x509ocsp", "x509crl", "x509ac",
		"pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "swanctl.conf")
	if err := os.WriteFile(conf, []byte(swanctlConf), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if !filepath.IsLocal(name) {
			t.Fatalf("testnet: Load: file name %q must be relative and local", name)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.swanctlIn(dir, "--load-all", "--file", conf)
	if err == nil && strings.Contains(out, "failed") {
		err = fmt.Errorf("swanctl --load-all reported a failure:\n%s", out)
	}
	if err != nil {
		t.Fatalf("testnet: charon in %s: %v", c.NS.Name, err)
	}
	return out
}

// Initiate runs swanctl --initiate --ike ike (no CHILD_SA: the kernel here
// has no ESP) and returns its output, the initiator's log as streamed over
// vici. It fails the test if swanctl fails.
func (c *Charon) Initiate(t testing.TB, ike string) string {
	t.Helper()
	out, err := c.swanctl("--initiate", "--ike", ike, "--timeout", "30")
	if err != nil {
		t.Fatalf("testnet: charon in %s: %v", c.NS.Name, err)
	}
	return out
}

// InitiateNoWait starts initiating the IKE SA ike and returns at once
// (swanctl --initiate --ike ike --timeout=-1: vici returns a result without
// waiting for the exchange), for peers that answer only when the test says
// so, such as a Go socket. Use WaitEstablished or the log to follow it.
func (c *Charon) InitiateNoWait(t testing.TB, ike string) string {
	t.Helper()
	out, err := c.swanctl("--initiate", "--ike", ike, "--timeout=-1")
	if err != nil {
		t.Fatalf("testnet: charon in %s: %v", c.NS.Name, err)
	}
	return out
}

// ListSAs returns swanctl --list-sas.
func (c *Charon) ListSAs(t testing.TB) string {
	t.Helper()
	return c.Swanctl(t, "--list-sas")
}

// WaitEstablished polls swanctl --list-sas --ike ikeName until an IKE SA of
// that connection is ESTABLISHED, and returns that listing. It fails the
// test after timeout.
func (c *Charon) WaitEstablished(t testing.TB, ikeName string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.swanctl("--list-sas", "--ike", ikeName)
		if err == nil && ikeEstablished(out, ikeName) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: charon in %s: IKE SA %q not ESTABLISHED within %v; list-sas: %v\n%s",
				c.NS.Name, ikeName, timeout, err, out)
		}
		select {
		case <-c.done:
			t.Fatalf("testnet: charon in %s exited (%v) while waiting for IKE SA %q", c.NS.Name, c.waitErr, ikeName)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ikeEstablished reports whether a list-sas output has a line such as
// "psk: #1, ESTABLISHED, IKEv1, 1a2b…_i* 3c4d…_r" for ikeName.
func ikeEstablished(listing, ikeName string) bool {
	for _, line := range strings.Split(listing, "\n") {
		if strings.HasPrefix(line, ikeName+": #") && strings.Contains(line, ", ESTABLISHED,") {
			return true
		}
	}
	return false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
