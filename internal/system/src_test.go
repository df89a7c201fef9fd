package system_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

const alias = "10.236.0.100"

// proves: D1, D2, D3, D4, D5, D6 — the group ike started with
// `startsrc -g ike` on a KS host and a GM host, each with its own srcmstr
// in its own network namespace. Start order tmd → iked → isakmpd; ikev2d
// not installed. An alias added to the KS is not served until
// `refresh -g ike`; after it is removed and the group refreshed (with a
// broken configuration file, refused with file:line while the old one
// stays), iked no longer listens on it (lssrc -l, ss -lun) and GM1's
// registration and its SAs in tmd are untouched. `refresh -s isakmpd` is
// refused (D6). kill -9 of GM1's isakmpd: lssrc shows it inoperative, tmd
// keeps the SAs while it is down, and stopsrc + startsrc recover it with
// tmd's PID unchanged. kill -9 of the KS's iked: isakmpd exits rather than
// run deaf, both show inoperative, stopsrc + startsrc -g bring them back
// with tmd kept, and a rekey reaches GM1 through both hosts' brokers.
func TestGroupStartRefreshAndRecovery(t *testing.T) {
	nw := newNetwork(t, "gvsg")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ks := newHost(t, ctx, bin, "ks", nw.ksNS, ksConf)
	gm1 := newHost(t, ctx, bin, "gm1", nw.gm1NS, fmt.Sprintf(gmConf, "gm1", "10.236.0.1"))

	// D5 before anything runs: refresh starts nothing.
	if msg := ks.refused("refresh", "-g", "ike"); msg != "refresh: group ike is not active; refresh does not start it: startsrc -g ike" {
		t.Fatalf("refresh -g ike of a stopped group: %q", msg)
	}
	if _, st := ks.status("tmd"); st != "stopped" {
		t.Fatalf("tmd after the refused refresh: %q", st)
	}

	// D1, D2: the group starts in order, each once the previous is ready.
	out := ks.mustSrc("startsrc", "-g", "ike")
	order := []int{strings.Index(out, "The tmd Subsystem"), strings.Index(out, "The iked Subsystem"), strings.Index(out, "The isakmpd Subsystem")}
	if slices.Contains(order, -1) || !slices.IsSorted(order) || !strings.Contains(out, "ikev2d: not installed") {
		t.Fatalf("startsrc -g ike:\n%s", out)
	}
	for _, d := range []string{"tmd", "iked", "isakmpd"} {
		if pid, st := ks.status(d); pid == "" || !strings.HasPrefix(st, "active") {
			t.Fatalf("lssrc -s %s after the group start: pid %q status %q", d, pid, st)
		}
	}
	if _, st := ks.status("ikev2d"); st != "not installed" {
		t.Fatalf("ikev2d: %q", st)
	}
	lsG := ks.mustSrc("lssrc", "-g", "ike")
	for _, d := range []string{"tmd", "iked", "isakmpd"} {
		if !strings.Contains(lsG, " "+d) || strings.Count(lsG, "-g") < 3 {
			t.Fatalf("lssrc -g ike:\n%s", lsG)
		}
	}
	gm1.mustSrc("startsrc", "-g", "ike")
	gm1.waitFor("GM1 registering through its group", 20*time.Second, gm1.registered)
	gm1.waitFor("GM1's TEK in its tmd", 10*time.Second, func() bool { return len(gm1.teks()) > 0 })
	tekSPIs := spis(gm1.teks())
	before := gm1.succeeded()
	tmdPID, _ := gm1.status("tmd")
	if ipsec := gm1.cli("show crypto ipsec sa"); !strings.Contains(ipsec, fmt.Sprintf("spi: 0x%08X", tekSPIs[0])) ||
		!strings.HasPrefix(ipsec, "SA database: tmd at "+gm1.dir+"/tmd.sock\n") {
		t.Fatalf("show crypto ipsec sa does not show tmd's SA 0x%08X:\n%s", tekSPIs[0], ipsec)
	}
	// The KS's isakmpd goes through iked: iked owns the sockets.
	if ss := nw.ksNS.Run(t, "ss", "-lunp"); !strings.Contains(ss, "10.236.0.1:848") || !strings.Contains(ss, "10.236.0.1:500") {
		t.Fatalf("ss -lunp on the KS:\n%s", ss)
	}

	// D3: an alias added after start is not served.
	nw.ksNS.Run(t, "ip", "addr", "add", alias+"/24", "dev", nw.ksIf)
	gm2 := standaloneGM(t, ctx, bin, nw.gm2NS, "gm2", alias)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if gm2.registered() {
			t.Fatal("gm2 registered to the alias before any refresh")
		}
	}
	if l := ks.mustSrc("lssrc", "-l", "-s", "iked"); listed(l, alias+":848") {
		t.Fatalf("iked lists the alias before the refresh:\n%s", l)
	}

	// D6: the group was started with -g; -s is refused, naming -g.
	if msg := ks.refused("refresh", "-s", "isakmpd"); msg != "refresh: isakmpd was started with its group (startsrc -g ike): refresh it with refresh -g ike" {
		t.Fatalf("refresh -s isakmpd of a group started with -g: %q", msg)
	}
	if _, st := ks.status("isakmpd"); !strings.HasPrefix(st, "active") {
		t.Fatalf("isakmpd after the refused refresh: %q", st)
	}

	// D4: refresh -g ike serves the alias; gm2 gets through.
	out = ks.mustSrc("refresh", "-g", "ike")
	if !strings.Contains(out, alias) {
		t.Fatalf("refresh -g ike does not report the alias:\n%s", out)
	}
	gm2.waitFor("gm2 registering to the alias", 20*time.Second, gm2.registered)
	if l := ks.mustSrc("lssrc", "-l", "-s", "isakmpd"); !listed(l, alias+":848") {
		t.Fatalf("lssrc -l -s isakmpd after the refresh:\n%s", l)
	}

	// Remove the alias, break the file, refresh: the addresses follow,
	// the file is refused with file:line and the old configuration stays.
	good, _ := os.ReadFile(ks.conf)
	ks.write(strings.Replace(ksConf, "identity number 89", "identity number eighty-nine", 1))
	nw.ksNS.Run(t, "ip", "addr", "del", alias+"/24", "dev", nw.ksIf)
	out, err := ks.src("refresh", "-g", "ike")
	if err == nil || !strings.Contains(out, "isakmpd.conf:15") || !strings.Contains(out, "running configuration stays") {
		t.Fatalf("refresh -g ike with a broken file: %v\n%s", err, out)
	}
	if !strings.Contains(ks.cli("show running-config"), "identity number 89") {
		t.Fatalf("the running configuration changed:\n%s", ks.cli("show running-config"))
	}
	os.WriteFile(ks.conf, good, 0o600)
	for _, d := range []string{"iked", "isakmpd"} {
		if l := ks.mustSrc("lssrc", "-l", "-s", d); listed(l, alias+":848") || !listed(l, "10.236.0.1:848") {
			t.Fatalf("lssrc -l -s %s after removing the alias:\n%s", d, l)
		}
	}
	if ss := nw.ksNS.Run(t, "ss", "-lun"); strings.Contains(ss, alias+":") || !strings.Contains(ss, "10.236.0.1:848") {
		t.Fatalf("ss -lun on the KS after removing the alias:\n%s", ss)
	}
	if after := gm1.succeeded(); after != before || !gm1.registered() {
		t.Fatalf("GM1 registered again or lost its registration: %q before, %q after", before, after)
	}
	if got := spis(gm1.teks()); !slices.Equal(got, tekSPIs) {
		t.Fatalf("GM1's SAs in tmd changed: %v, was %v", got, tekSPIs)
	}

	// D6: a daemon that dies is shown inoperative; tmd keeps the SAs;
	// stopsrc + startsrc recover it.
	pid, _ := gm1.status("isakmpd")
	var p int
	fmt.Sscan(pid, &p)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gm1.waitFor("lssrc showing isakmpd inoperative", 10*time.Second, func() bool {
		_, st := gm1.status("isakmpd")
		return st == "inoperative -g" || st == "inoperative"
	})
	if got := spis(gm1.teks()); !slices.Equal(got, tekSPIs) {
		t.Fatalf("GM1's SAs in tmd while isakmpd is down: %v, want %v", got, tekSPIs)
	}
	if msg := gm1.refused("refresh", "-g", "ike"); !strings.Contains(msg, "refresh: isakmpd is inoperative (signal: killed") || !strings.Contains(msg, "recover it with stopsrc -s isakmpd, then startsrc -g ike") {
		t.Fatalf("refresh -g ike with an inoperative member: %q", msg)
	}
	gm1.mustSrc("stopsrc", "-s", "isakmpd")
	if _, st := gm1.status("isakmpd"); st != "stopped" {
		t.Fatalf("isakmpd after stopsrc: %q", st)
	}
	gm1.mustSrc("startsrc", "-g", "ike")
	gm1.waitFor("GM1 registering again", 20*time.Second, gm1.registered)
	if now, _ := gm1.status("tmd"); now != tmdPID {
		t.Fatalf("tmd was restarted: pid %s, was %s", now, tmdPID)
	}
	if got := gm1.teks(); len(got) == 0 {
		t.Fatal("GM1 holds no SA in tmd after the recovery")
	}

	// iked dies on the KS: isakmpd cannot run deaf, it exits, and both
	// show inoperative; stopsrc + startsrc bring the group back with tmd
	// kept, and a rekey reaches GM1 through both brokers.
	ksTMD, _ := ks.status("tmd")
	pid, _ = ks.status("iked")
	fmt.Sscan(pid, &p)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ks.waitFor("iked and isakmpd inoperative", 10*time.Second, func() bool {
		_, a := ks.status("iked")
		_, b := ks.status("isakmpd")
		return strings.HasPrefix(a, "inoperative") && strings.HasPrefix(b, "inoperative")
	})
	if l := ks.mustSrc("lssrc", "-l", "-s", "isakmpd"); !strings.Contains(l, "lost the iked broker") {
		t.Fatalf("lssrc -l -s isakmpd does not say why it exited:\n%s", l)
	}
	ks.mustSrc("stopsrc", "-s", "isakmpd")
	ks.mustSrc("stopsrc", "-s", "iked")
	ks.mustSrc("startsrc", "-g", "ike")
	if now, _ := ks.status("tmd"); now != ksTMD {
		t.Fatalf("the KS's tmd was restarted: pid %s, was %s", now, ksTMD)
	}
	rekeys := func() string {
		return regexp.MustCompile(`Rekeys received\s+: \d+`).FindString(gm1.cli("show crypto gdoi gm"))
	}
	before = rekeys()
	if out, err := exec.Command(bin, "cli", "-s", ks.dir+"/isakmpd.sock", "--yes", "-c", "crypto gdoi ks rekey").CombinedOutput(); err != nil {
		t.Fatalf("crypto gdoi ks rekey: %v\n%s", err, out)
	}
	gm1.waitFor("GM1 receiving the rekey through the brokers", 20*time.Second, func() bool { return rekeys() != before })
}

// proves: D2, D3, D4, D5, D6 — the same with subsystems started one by one
// (`startsrc -s tmd; startsrc -s isakmpd`): isakmpd owns its sockets, an
// alias is served after `refresh -s isakmpd` and not before, and gone from
// ss -lun after it is removed and isakmpd refreshed; tmd may be refreshed
// before or after; `refresh -g ike` is refused naming the -s commands;
// refreshing a stopped isakmpd does not start it.
func TestSubsystemStartAndRefresh(t *testing.T) {
	nw := newNetwork(t, "gvss")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ks := newHost(t, ctx, bin, "ks", nw.ksNS, ksConf)

	// D2: isakmpd needs tmd.
	if msg := ks.refused("startsrc", "-s", "isakmpd"); msg != "startsrc: isakmpd needs tmd, which is not active: start tmd first (startsrc -s tmd)" {
		t.Fatalf("startsrc -s isakmpd without tmd: %q", msg)
	}
	if _, st := ks.status("isakmpd"); st != "stopped" {
		t.Fatalf("isakmpd after the refusal: %q", st)
	}
	if msg := ks.refused("startsrc", "-s", "iked"); msg != "startsrc: iked runs only with its group: startsrc -g ike" {
		t.Fatalf("startsrc -s iked: %q", msg)
	}
	ks.mustSrc("startsrc", "-s", "tmd")
	ks.mustSrc("startsrc", "-s", "isakmpd")
	if _, st := ks.status("isakmpd"); st != "active -s" && st != "active" {
		t.Fatalf("isakmpd: %q", st)
	}
	if _, st := ks.status("iked"); st != "stopped" {
		t.Fatalf("iked started by startsrc -s isakmpd: %q", st)
	}
	gm1 := standaloneGM(t, ctx, bin, nw.gm1NS, "gm1", "10.236.0.1")
	gm1.waitFor("gm1 registering", 20*time.Second, gm1.registered)
	before := gm1.succeeded()
	ksPhase1 := func() bool {
		return strings.Contains(ks.cli("show crypto isakmp sa"), "10.236.0.11")
	}
	if !ksPhase1() {
		t.Fatalf("no phase-1 SA with gm1:\n%s", ks.cli("show crypto isakmp sa"))
	}

	// D3: not served before the refresh.
	nw.ksNS.Run(t, "ip", "addr", "add", alias+"/24", "dev", nw.ksIf)
	gm2 := standaloneGM(t, ctx, bin, nw.gm2NS, "gm2", alias)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if gm2.registered() {
			t.Fatal("gm2 registered to the alias before any refresh")
		}
	}
	// D6: started one by one, refreshed one by one.
	if msg := ks.refused("refresh", "-g", "ike"); msg != "refresh: the subsystems of group ike were started one by one (startsrc -s): refresh each with refresh -s tmd, refresh -s isakmpd" {
		t.Fatalf("refresh -g ike of subsystems started with -s: %q", msg)
	}
	// D4: isakmpd before tmd is fine (the seed allows either order).
	if out := ks.mustSrc("refresh", "-s", "isakmpd"); !strings.Contains(out, alias+":848") {
		t.Fatalf("refresh -s isakmpd:\n%s", out)
	}
	ks.mustSrc("refresh", "-s", "tmd")
	gm2.waitFor("gm2 registering to the alias", 20*time.Second, gm2.registered)
	if l := ks.cli("show crypto isakmp listen"); !strings.Contains(l, alias+":848") {
		t.Fatalf("show crypto isakmp listen:\n%s", l)
	}

	nw.ksNS.Run(t, "ip", "addr", "del", alias+"/24", "dev", nw.ksIf)
	ks.mustSrc("refresh", "-s", "isakmpd")
	if l := ks.mustSrc("lssrc", "-l", "-s", "isakmpd"); listed(l, alias+":848") || !listed(l, "10.236.0.1:848") {
		t.Fatalf("lssrc -l -s isakmpd after removing the alias:\n%s", l)
	}
	if ss := nw.ksNS.Run(t, "ss", "-lun"); strings.Contains(ss, alias+":848") || !strings.Contains(ss, "10.236.0.1:848") {
		t.Fatalf("ss -lun after removing the alias:\n%s", ss)
	}
	if after := gm1.succeeded(); after != before || !gm1.registered() || !ksPhase1() {
		t.Fatalf("gm1 disturbed by the refreshes: %q before, %q after", before, after)
	}

	// D5: refreshing a stopped subsystem does not start it.
	ks.mustSrc("stopsrc", "-s", "isakmpd")
	if msg := ks.refused("refresh", "-s", "isakmpd"); msg != "refresh: isakmpd is not active (stopped); refresh does not start it: startsrc -s isakmpd" {
		t.Fatalf("refresh -s of a stopped isakmpd: %q", msg)
	}
	if _, st := ks.status("isakmpd"); st != "stopped" {
		t.Fatalf("isakmpd after the refused refresh: %q", st)
	}
	// stopsrc -s tmd is refused while isakmpd needs it; now it is allowed.
	ks.mustSrc("stopsrc", "-s", "tmd")
}

// listed reports whether lssrc -l output lists addr as served.
func listed(lssrc, addr string) bool {
	return regexp.MustCompile(`(?m)^\s*Listening on:\s+` + regexp.QuoteMeta(addr) + `$`).MatchString(lssrc)
}
