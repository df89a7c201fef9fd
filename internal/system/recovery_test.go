package system_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// shortKSConf is ksConf with 120 s TEKs, the shortest the parser takes:
// the 2% re-registration window of `members now` is 2.4 s and a scheduled
// re-registration comes 60 to 90 s after a registration.
var shortKSConf = strings.Replace(ksConf, " set transform-set ts\n", " set transform-set ts\n set security-association lifetime seconds 120\n", 1)

// tekLifetime is shortKSConf's TEK lifetime.
const tekLifetime = 120 * time.Second

// gmTEKs returns the SPIs of the TEKs a GM holds, wherever they are (its
// tmd under srcmstr, or the standalone isakmpd's own SA database).
func (h *host) gmTEKs() []string {
	return regexp.MustCompile(`spi: 0x[0-9A-F]{8}`).FindAllString(h.cli("show crypto ipsec sa"), -1)
}

// proves: S7, O4 (issue 11 item 1) — members recover from a key server
// that lost its phase-1 state. A KS (the group ike under srcmstr) serves
// gm1 (the group ike under its own srcmstr, through iked) and gm2 (a
// standalone isakmpd). (1) The KS's isakmpd is killed with SIGKILL, shown
// inoperative, and recovered with stopsrc -s isakmpd + startsrc -g ike;
// `clear crypto gdoi ks members now` then removes every GM, and each holds
// a new TEK again within the 2% re-registration window + 10 s, though its
// old phase-1 SA died with the KS. (2) The KS is stopped and started
// cleanly (stopsrc/startsrc), and `clear crypto gdoi` on each GM re-registers it within 10 s, with a
// valid TEK held throughout.
func TestMembersRecoverFromKSRestart(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t, "gvrc")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ks := newHost(t, ctx, bin, "ks", nw.ksNS, shortKSConf)
	ks.mustSrc("startsrc", "-g", "ike")
	gm1 := newHost(t, ctx, bin, "gm1", nw.gm1NS, fmt.Sprintf(gmConf, "gm1", "10.236.0.1"))
	gm1.mustSrc("startsrc", "-g", "ike")
	gm2 := standaloneGM(t, ctx, bin, nw.gm2NS, "gm2", "10.236.0.1")
	gms := []*host{gm1, gm2}
	for _, g := range gms {
		g.waitFor(g.name+" registering", 20*time.Second, g.registered)
	}

	// (1) kill -9, recovery under srcmstr, then `members now`. The KS
	// saves its member list at most once a second: a member that
	// registered in the last second before a crash is not removed by it
	// (it gets the new keys at its next re-registration).
	time.Sleep(1500 * time.Millisecond)
	pid, _ := ks.status("isakmpd")
	if err := syscall.Kill(atoi(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ks.waitFor("lssrc showing the KS's isakmpd inoperative", 10*time.Second, func() bool {
		_, st := ks.status("isakmpd")
		return strings.HasPrefix(st, "inoperative")
	})
	ks.mustSrc("stopsrc", "-s", "isakmpd")
	ks.mustSrc("startsrc", "-g", "ike")
	old := map[string][]string{}
	for _, g := range gms {
		old[g.name] = g.gmTEKs()
	}
	start := time.Now()
	if out, err := exec.Command(bin, "cli", "-s", filepath.Join(ks.dir, "isakmpd.sock"), "--yes", "-c", "clear crypto gdoi ks members now").CombinedOutput(); err != nil {
		t.Fatalf("clear crypto gdoi ks members now: %v\n%s", err, out)
	}
	window := tekLifetime / 50
	for _, g := range gms {
		g.waitFor(g.name+" holding a new TEK after `members now` from the restarted KS", window+10*time.Second+2*time.Second, func() bool {
			now := g.gmTEKs()
			return g.registered() && len(now) > 0 && !slices.Contains(old[g.name], now[0])
		})
		took := time.Since(start)
		t.Logf("%s: new TEK %v %v after `members now` (bound: window %v + 10 s)", g.name, g.gmTEKs(), took.Round(time.Millisecond), window)
		if took > window+10*time.Second {
			t.Errorf("%s took %v to recover; the bound is %v", g.name, took, window+10*time.Second)
		}
	}

	// (2) a clean stop and start, then a re-registration asked for on
	// each GM (`clear crypto gdoi`, as on IOS): it cannot use the phase-1
	// SA the KS forgot, and gets through over a new one within 10 s, with
	// its installed TEKs kept until the new ones arrive.
	ks.mustSrc("stopsrc", "-s", "isakmpd")
	ks.mustSrc("startsrc", "-g", "ike")
	for _, g := range gms {
		regs := g.succeeded()
		start := time.Now()
		if out := g.cli("clear crypto gdoi"); strings.Contains(out, "%") {
			t.Fatalf("%s: clear crypto gdoi: %s", g.name, out)
		}
		for !(g.registered() && g.succeeded() != regs) {
			if len(g.gmTEKs()) == 0 {
				t.Fatalf("%s dropped its TEKs while re-registering:\n%s", g.name, g.cli("show crypto gdoi gm"))
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s has not re-registered with the restarted KS in 10 s:\n%s", g.name, g.cli("show crypto gdoi gm"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s: registered again %v after clear crypto gdoi (%s)", g.name, time.Since(start).Round(time.Millisecond), g.succeeded())
	}
}
