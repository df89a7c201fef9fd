// Package testnet is a test harness for interoperability tests that need
// real network plumbing: Linux network namespaces joined by veth pairs, and
// strongSwan's charon running as an IKEv1 peer inside such a namespace.
//
// Everything here is meant to be called from Go tests. Every resource a
// helper creates (namespace, link, process, temporary file) is removed with
// t.Cleanup, and every helper that creates a named kernel object first
// removes a stale object of the same name left behind by an earlier run that
// was killed before its cleanup ran.
//
// # Skips and CI
//
// The helpers need root, iproute2's ip, util-linux's unshare and mount, and
// (for charon) strongSwan's charon and swanctl. When something is missing a
// test is skipped with the reason outside CI, and fails under CI=true, so
// that a CI machine which lacks a dependency cannot pass silently.
//
// # Naming
//
// Callers pick the names: one namespace name and one link name per test,
// distinct between the tests of a run (so t.Parallel tests do not collide),
// and the same from run to run (so a leftover of a killed run is found and
// removed by the next one). Link names are limited to 15 bytes (IFNAMSIZ-1);
// a veth keeps the same name on both ends, each end in its own namespace.
// The address prefixes must not overlap between concurrently running tests
// either, since the root-side addresses all live in the root namespace.
// Since go test runs packages in parallel, each package keeps to its own
// names and range: this package's tests use "gvt…" and 10.231.0.0/16.
// Two go test processes running the same tests at the same moment on one
// machine would still collide; that is not supported.
package testnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI (environment CI=true), where a
// missing dependency is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFatal skips the test with the reason, or fails it under CI=true.
func skipOrFatal(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("testnet: %s (CI=true: a test that needs this must not skip)", msg)
	}
	t.Skipf("testnet: %s", msg)
}

// RequireRoot skips the test (fails it under CI=true) unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFatal(t, "needs root (euid is %d)", os.Geteuid())
	}
}

// RequireGroup returns the Unix group name, and skips the test (fails it
// under CI=true) when the system has none: the read-only access tests run
// a client in group nogroup.
func RequireGroup(t testing.TB, name string) *user.Group {
	t.Helper()
	g, err := user.LookupGroup(name)
	if err != nil {
		skipOrFatal(t, "needs group %s: %v", name, err)
	}
	return g
}

// RequireTools skips the test (fails it under CI=true) unless every named
// program is found in PATH or, for an absolute path, exists and is
// executable.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		skipOrFatal(t, "missing %s", strings.Join(missing, ", "))
	}
}

// RequireNetns checks everything NewNetns and Veth need: root, ip.
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip")
}

// run runs a command and returns its combined output, or an error that
// includes the output.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// mustRun runs a command and fails the test if it fails.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Netns is a named network namespace created by NewNetns.
type Netns struct {
	Name string
}

// NewNetns creates the network namespace name (ip netns add), with its
// loopback up, and deletes it on cleanup. A stale namespace of the same
// name is deleted first, after killing the processes left inside it.
func NewNetns(t testing.TB, name string) *Netns {
	t.Helper()
	RequireNetns(t)
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		t.Fatalf("testnet: bad namespace name %q", name)
	}
	deleteNetns(name)
	mustRun(t, "ip", "netns", "add", name)
	ns := &Netns{Name: name}
	t.Cleanup(func() {
		if err := deleteNetns(name); err != nil {
			t.Errorf("testnet: cleanup of namespace %s: %v", name, err)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return ns
}

// deleteNetns removes a namespace if it exists, killing any process still
// inside it (such processes can only have been started by this harness under
// this name, by a run that died before its cleanup).
func deleteNetns(name string) error {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return nil
	}
	if out, err := run("ip", "netns", "pids", name); err == nil {
		for _, pid := range strings.Fields(out) {
			_, _ = run("kill", "-KILL", pid)
		}
	}
	_, err := run("ip", "netns", "del", name)
	return err
}

// Command returns an *exec.Cmd that runs name with args inside the
// namespace (ip netns exec NS name args...).
func (ns *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace, fails the test if it fails, and
// returns its combined output.
func (ns *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return mustRun(t, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Veth links the root namespace to ns with a veth pair called name on both
// ends, addrRoot on the root end and addrNS inside ns (for example
// 10.231.0.1/24 and 10.231.0.2/24), and brings both ends up. The pair is
// deleted on cleanup; a stale link called name in the root namespace is
// deleted first.
func Veth(t testing.TB, name string, ns *Netns, addrRoot, addrNS netip.Prefix) {
	t.Helper()
	VethBetween(t, name, nil, ns, addrRoot, addrNS)
}

// VethBetween links namespace a to namespace b (nil means the root
// namespace) with a veth pair called name on both ends, addrA on a's end and
// addrB on b's end, and brings both ends up. The pair is deleted on cleanup.
func VethBetween(t testing.TB, name string, a, b *Netns, addrA, addrB netip.Prefix) {
	t.Helper()
	RequireNetns(t)
	if len(name) == 0 || len(name) > 15 || strings.ContainsAny(name, "/ \t\n:") {
		t.Fatalf("testnet: bad link name %q (1 to 15 bytes, no '/', ':' or blanks)", name)
	}
	if b == nil {
		t.Fatalf("testnet: VethBetween %s: b must be a namespace", name)
	}
	ipIn := func(ns *Netns, args ...string) []string {
		if ns == nil {
			return args
		}
		return append([]string{"-n", ns.Name}, args...)
	}
	// A stale link of that name in a (the only place the harness could have
	// left it besides b, which is a fresh namespace or dies with it).
	if _, err := run("ip", ipIn(a, "link", "show", "dev", name)...); err == nil {
		_, _ = run("ip", ipIn(a, "link", "del", "dev", name)...)
	}
	mustRun(t, "ip", ipIn(a, "link", "add", "name", name, "type", "veth", "peer", "name", name, "netns", b.Name)...)
	t.Cleanup(func() {
		// Deleting one end deletes both; the link may already be gone with
		// its namespace.
		if _, err := run("ip", ipIn(a, "link", "show", "dev", name)...); err == nil {
			if _, err := run("ip", ipIn(a, "link", "del", "dev", name)...); err != nil {
				t.Errorf("testnet: cleanup of link %s: %v", name, err)
			}
		}
	})
	for _, end := range []struct {
		ns   *Netns
		addr netip.Prefix
	}{{a, addrA}, {b, addrB}} {
		if end.addr.IsValid() {
			args := ipIn(end.ns, "addr", "add", end.addr.String(), "dev", name)
			if end.addr.Addr().Is6() {
				args = append(args, "nodad") // usable at once, no DAD wait
			}
			mustRun(t, "ip", args...)
		}
		mustRun(t, "ip", ipIn(end.ns, "link", "set", "dev", name, "up")...)
	}
}
