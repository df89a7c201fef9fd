package system_test

import (
	"bytes"
	"context"
	"encoding/hex"
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

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// gikev2KS makes an isakmpd KS file (ksConf and its variants) a G-IKEv2
// one (docs/config.md, G-IKEv2): a keyring with the same pre-shared key
// for the members' addresses, a profile, and `gikev2 PROFILE` under
// server local.
func gikev2KS(conf string) string {
	conf = strings.Replace(conf, "crypto gdoi group", `crypto ikev2 keyring v2keys
 peer members
  address 10.236.0.0 255.255.0.0
  pre-shared-key src-secret
crypto ikev2 profile v2members
 match identity remote address 10.236.0.0 255.255.0.0
 authentication local pre-share
 authentication remote pre-share
 keyring local v2keys
crypto gdoi group`, 1)
	return strings.Replace(conf, "  address ipv4 10.236.0.1\n", "  address ipv4 10.236.0.1\n  gikev2 v2members\n", 1)
}

// gikev2GM is gmConf (formatted) made a G-IKEv2 member of the KS at ks.
func gikev2GM(conf, ks string) string {
	conf = strings.Replace(conf, "crypto gdoi group", fmt.Sprintf(`crypto ikev2 keyring v2keys
 peer ks
  address %s
  pre-shared-key src-secret
crypto ikev2 profile v2ks
 authentication local pre-share
 authentication remote pre-share
 keyring local v2keys
crypto gdoi group`, ks), 1)
	return strings.Replace(conf, " server address ipv4 "+ks+"\n", " server address ipv4 "+ks+"\n client protocol gikev2 v2ks\n", 1)
}

// v2SrcConf declares the group ike with ikev2d installed (after isakmpd,
// as docs/src.conf.example); without isakmpdConf, isakmpd is not
// installed.
func v2SrcConf(dir, isakmpdConf, tmdArgs string) string {
	isk := "subsystem isakmpd group ike order 3 requires tmd not-installed\n"
	if isakmpdConf != "" {
		isk = fmt.Sprintf("subsystem isakmpd group ike order 3 requires tmd group-args \"-iked %[1]s/iked.sock\" command groupvpn isakmpd -f %[2]s -tmd %[1]s/tmd.sock -socket %[1]s/isakmpd.sock -state %[1]s/isakmpd.db\n", dir, isakmpdConf)
	}
	return fmt.Sprintf(`# the group ike of one test host, ikev2d installed
subsystem tmd     group ike order 1 command groupvpn tmd -socket %[1]s/tmd.sock %[2]s
subsystem iked    group ike order 2 group-only command groupvpn iked -socket %[1]s/iked.sock
%[3]ssubsystem ikev2d  group ike order 4 requires tmd group-args "-iked %[1]s/iked.sock" command groupvpn ikev2d -f %[1]s/ikev2d.conf -tmd %[1]s/tmd.sock -socket %[1]s/ikev2d.sock -state %[1]s/ikev2d.db
`, dir, tmdArgs, isk)
}

// newV2Host starts srcmstr in ns with v2SrcConf: ikev2d reads v2Conf,
// isakmpd (when isakmpdConf is set) its own file.
func newV2Host(t *testing.T, ctx context.Context, bin, name string, ns *testnet.Netns, isakmpdConf, v2Conf, tmdArgs string) *host {
	t.Helper()
	dir, err := os.MkdirTemp("", "gv2-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &host{t: t, name: name, ns: ns, dir: dir, conf: filepath.Join(dir, "isakmpd.conf"), bin: bin, log: &testnet.Buffer{}}
	testnet.WriteECKey(t, filepath.Join(dir, "rekey.pem"))
	iskPath := ""
	if isakmpdConf != "" {
		h.write(isakmpdConf)
		iskPath = h.conf
	}
	h.writeV2(v2Conf)
	if err := os.WriteFile(filepath.Join(dir, "src.conf"), []byte(v2SrcConf(dir, iskPath, tmdArgs)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "srcmstr", "-f", filepath.Join(dir, "src.conf"), "-rundir", dir)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.src("stopsrc", "-g", "ike")
		h.src("stopsrc", "-s", "ikev2d")
		h.src("stopsrc", "-s", "tmd")
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s srcmstr:\n%s", name, h.log.String())
			for _, d := range []string{"tmd", "iked", "isakmpd", "ikev2d"} {
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

func (h *host) writeV2(conf string) {
	h.t.Helper()
	conf = strings.ReplaceAll(conf, "REKEYFILE", filepath.Join(h.dir, "rekey.pem"))
	if err := os.WriteFile(filepath.Join(h.dir, "ikev2d.conf"), []byte(conf), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) cliV2(c string) string {
	// --yes: clear crypto gdoi ks members asks isakmpd's questions.
	out, _ := exec.Command(h.bin, "cli", "-s", filepath.Join(h.dir, "ikev2d.sock"), "--yes", "-c", c).CombinedOutput()
	return string(out)
}

func (h *host) v2Registered() bool {
	return strings.Contains(h.cliV2("show crypto gdoi"), "Registration status      : Registered")
}

func (h *host) v2Field(name string) string {
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s*: (.*)$`).FindStringSubmatch(h.cliV2("show crypto gdoi"))
	if m == nil {
		return ""
	}
	return m[1]
}

// proves: D1, D2, D3, D4, D5, D6 for ikev2d (issue 17). On a KS host:
// refresh of a stopped ikev2d is refused (D5); startsrc -s ikev2d without
// tmd is refused naming tmd (D2); `startsrc -s tmd; startsrc -s ikev2d`
// runs it on its own sockets, an alias added is served only after
// `refresh -s ikev2d` and no longer after it is removed and refreshed
// again (D3, D4), `refresh -g ike` is refused (D6). Then `startsrc -g ike`
// starts tmd, iked, isakmpd and ikev2d in that order, lssrc -g ike shows
// all four active, `refresh -s ikev2d` is refused naming refresh -g ike
// (D6), `refresh -g ike` succeeds. A GM host's ikev2d (group ike) registers
// with the KS's by G-IKEv2 through both hosts' iked (IKEv2 headers routed
// to ikev2d on 848) and its TEK reaches its tmd; a broken ikev2d.conf at a
// group refresh is refused with file:line, a renumbered group is refused
// naming the restart it needs, and the registration stays.
func TestIkev2dUnderSRC(t *testing.T) {
	nw := newNetwork(t, "gv2s")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v2KS := gikev2KS(strings.Replace(strings.Replace(ksConf, "identity number 89", "identity number 90", 1), "group SRC", "group V2", 1))
	v2GM := func(n string) string {
		return gikev2GM(strings.Replace(strings.Replace(fmt.Sprintf(gmConf, n, "10.236.0.1"), "identity number 89", "identity number 90", 1), "group SRC", "group V2", -1), "10.236.0.1")
	}
	ks := newV2Host(t, ctx, bin, "ks", nw.ksNS, ksConf, v2KS, "")
	gm1 := newV2Host(t, ctx, bin, "gm1", nw.gm1NS, "", v2GM("gm1"), "")

	// D5, D2.
	if msg := ks.refused("refresh", "-s", "ikev2d"); !strings.Contains(msg, "ikev2d is not active") || !strings.Contains(msg, "refresh does not start it") {
		t.Fatalf("refresh -s ikev2d while stopped: %q", msg)
	}
	if msg := ks.refused("startsrc", "-s", "ikev2d"); msg != "startsrc: ikev2d needs tmd, which is not active: start tmd first (startsrc -s tmd)" {
		t.Fatalf("startsrc -s ikev2d without tmd: %q", msg)
	}
	// startsrc -s tmd; startsrc -s ikev2d (seed 000).
	ks.mustSrc("startsrc", "-s", "tmd")
	ks.mustSrc("startsrc", "-s", "ikev2d")
	if pid, st := ks.status("ikev2d"); pid == "" || !strings.HasPrefix(st, "active") {
		t.Fatalf("ikev2d after startsrc -s: pid %q status %q", pid, st)
	}
	if ss := nw.ksNS.Run(t, "ss", "-lunp"); !strings.Contains(ss, "10.236.0.1:848") || !strings.Contains(ss, "groupvpn") {
		t.Fatalf("ikev2d does not own UDP 848 started alone:\n%s", ss)
	}
	if msg := ks.refused("refresh", "-g", "ike"); !strings.Contains(msg, "refresh -s ikev2d") {
		t.Fatalf("refresh -g ike of subsystems started with -s: %q", msg)
	}
	// D3, D4: the alias only after a refresh, gone after the next.
	nw.ksNS.Run(t, "ip", "addr", "add", alias+"/24", "dev", nw.ksIf)
	if l := ks.mustSrc("lssrc", "-l", "-s", "ikev2d"); listed(l, alias+":848") || !listed(l, "10.236.0.1:848") {
		t.Fatalf("lssrc -l -s ikev2d before the refresh:\n%s", l)
	}
	if out := ks.mustSrc("refresh", "-s", "ikev2d"); !strings.Contains(out, alias) {
		t.Fatalf("refresh -s ikev2d does not report the alias:\n%s", out)
	}
	if l := ks.mustSrc("lssrc", "-l", "-s", "ikev2d"); !listed(l, alias+":848") {
		t.Fatalf("lssrc -l -s ikev2d after the refresh:\n%s", l)
	}
	if ss := nw.ksNS.Run(t, "ss", "-lun"); !strings.Contains(ss, alias+":848") {
		t.Fatalf("ss -lun after the refresh:\n%s", ss)
	}
	nw.ksNS.Run(t, "ip", "addr", "del", alias+"/24", "dev", nw.ksIf)
	ks.mustSrc("refresh", "-s", "ikev2d")
	if ss := nw.ksNS.Run(t, "ss", "-lun"); strings.Contains(ss, alias+":") {
		t.Fatalf("ss -lun after the alias was removed and ikev2d refreshed:\n%s", ss)
	}
	ks.mustSrc("stopsrc", "-s", "ikev2d")
	ks.mustSrc("stopsrc", "-s", "tmd")

	// D1, D2: the group, in order; lssrc -g ike.
	out := ks.mustSrc("startsrc", "-g", "ike")
	order := []int{strings.Index(out, "The tmd Subsystem"), strings.Index(out, "The iked Subsystem"), strings.Index(out, "The isakmpd Subsystem"), strings.Index(out, "The ikev2d Subsystem")}
	if slices.Contains(order, -1) || !slices.IsSorted(order) {
		t.Fatalf("startsrc -g ike:\n%s", out)
	}
	lsG := ks.mustSrc("lssrc", "-g", "ike")
	for _, d := range []string{"tmd", "iked", "isakmpd", "ikev2d"} {
		if pid, st := ks.status(d); pid == "" || !strings.HasPrefix(st, "active") {
			t.Fatalf("lssrc -s %s after the group start: pid %q status %q\n%s", d, pid, st, lsG)
		}
	}
	if strings.Contains(lsG, "not installed") {
		t.Fatalf("lssrc -g ike:\n%s", lsG)
	}
	if msg := ks.refused("refresh", "-s", "ikev2d"); msg != "refresh: ikev2d was started with its group (startsrc -g ike): refresh it with refresh -g ike" {
		t.Fatalf("refresh -s ikev2d of a group started with -g: %q", msg)
	}
	ks.mustSrc("refresh", "-g", "ike")

	// A G-IKEv2 member through both brokers.
	gm1.mustSrc("startsrc", "-g", "ike")
	gm1.waitFor("G-IKEv2 registration through iked", 20*time.Second, gm1.v2Registered)
	gm1.waitFor("the TEK in gm1's tmd", 10*time.Second, func() bool { return len(gm1.teks()) > 0 })
	tekSPIs := spis(gm1.teks())
	if st := ks.cliV2("show crypto gdoi ks members"); !strings.Contains(st, "10.236.0.11") {
		t.Fatalf("the KS's ikev2d does not list gm1:\n%s", st)
	}
	// A broken file at a group refresh: refused with file:line, the
	// daemon and the registration stay.
	good, _ := os.ReadFile(filepath.Join(ks.dir, "ikev2d.conf"))
	ks.writeV2(strings.Replace(v2KS, "identity number 90", "identity number ninety", 1))
	out, err := ks.src("refresh", "-g", "ike")
	line := 1 + strings.Count(v2KS[:strings.Index(v2KS, "identity number 90")], "\n")
	if err == nil || !strings.Contains(out, fmt.Sprintf("ikev2d.conf:%d", line)) || !strings.Contains(out, "running configuration stays") {
		t.Fatalf("refresh -g ike with a broken ikev2d.conf: %v\n%s", err, out)
	}
	// A valid file renumbering the group needs a restart: refused, named.
	ks.writeV2(strings.Replace(v2KS, "identity number 90", "identity number 91", 1))
	if out, err := ks.src("refresh", "-g", "ike"); err == nil || !strings.Contains(out, "restart ikev2d") {
		t.Fatalf("refresh -g ike with a renumbered group: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(ks.dir, "ikev2d.conf"), good, 0o600)
	ks.mustSrc("refresh", "-g", "ike")
	if _, st := ks.status("ikev2d"); !strings.HasPrefix(st, "active") {
		t.Fatalf("ikev2d after a refused refresh: %q", st)
	}
	if !gm1.v2Registered() || !slices.Equal(spis(gm1.teks()), tekSPIs) {
		t.Fatalf("gm1 lost its registration or SAs: %v, was %v", spis(gm1.teks()), tekSPIs)
	}
}

// proves: G4 (issue 17): a KS and two GMs as ikev2d processes under
// srcmstr, each GM with tmd -tun: G-IKEv2 registrations install the TEKs
// into tmd and the hosts behind the GMs reach each other through ESP (the
// core sees ESP between the hosts' addresses, never the ping's plaintext
// marker); a policy replace (crypto gdoi ks rekey) and a removal (clear
// crypto gdoi ks members) reach both G-IKEv2 members: the rekey is applied,
// the removal makes them register again for ks's new TEK, and traffic
// flows under the new keys; the KS's ikev2d restarted keeps its keys and
// members (O4) and its next rekey is applied by both.
func TestIkev2dGroupTraffic(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireNetns(t)
	testnet.RequireTools(t, "ip", "ping", "ss")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, ksNS, gm1NS, gm2NS, h1, h2 := twoSiteNetns(t, "gv2t")
	ksC := strings.Replace(ksConf, "address 10.236.0.0 255.255.255.0", "address 10.236.0.0 255.255.0.0", 1)
	ks := newV2Host(t, ctx, bin, "ks", ksNS, "", gikev2KS(ksC), "")
	gm1 := newV2Host(t, ctx, bin, "gm1", gm1NS, "", gikev2GM(fmt.Sprintf(gmConf, "gm1", "10.236.0.1"), "10.236.0.1"), "-tun gvtun -local 10.61.1.0/24 -src 10.61.1.1 -group SRC")
	gm2 := newV2Host(t, ctx, bin, "gm2", gm2NS, "", gikev2GM(fmt.Sprintf(gmConf, "gm2", "10.236.0.1"), "10.236.0.1"), "-tun gvtun -local 10.61.2.0/24 -src 10.61.2.1 -group SRC")
	for _, h := range []*host{ks, gm1, gm2} {
		h.mustSrc("startsrc", "-g", "ike")
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("G-IKEv2 registration", 20*time.Second, g.v2Registered)
		g.waitFor("the TEK in tmd", 10*time.Second, func() bool { return len(g.teks()) > 0 })
		g.waitFor("the protected route into the TUN", 10*time.Second, func() bool {
			out, _ := g.ns.Command("ip", "route", "show", "table", "1001").CombinedOutput()
			return strings.Contains(string(out), "10.61.0.0/16 dev gvtun")
		})
	}
	if a, b := spis(gm1.teks()), spis(gm2.teks()); !slices.Equal(a, b) {
		t.Fatalf("the GMs hold different TEKs: %v, %v", a, b)
	}
	a1, a2 := netip.MustParseAddr("10.61.1.2"), netip.MustParseAddr("10.61.2.2")
	marker := []byte("GIKEV2-SECRET-01")
	ping := func(what string) {
		t.Helper()
		capt := testnet.StartCapture(t, core, 0)
		h1.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), a2.String())
		h2.Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), a1.String())
		time.Sleep(200 * time.Millisecond)
		nESP := 0
		site := netip.MustParsePrefix("10.61.0.0/16")
		for _, p := range stopCapture(capt) {
			if bytes.Contains(p.Raw, marker) {
				t.Errorf("%s: the core saw the plaintext marker: %v -> %v", what, p.Src, p.Dst)
			}
			if p.Proto == unix.IPPROTO_ESP && site.Contains(p.Src) && site.Contains(p.Dst) {
				nESP++
			}
		}
		if nESP < 12 {
			t.Fatalf("%s: the core saw %d ESP packets between the hosts; want at least 12", what, nESP)
		}
		t.Logf("%s: %d ESP packets between the hosts, no plaintext", what, nESP)
	}
	ping("after registration")

	// Policy replace: the GSA_REKEY reaches both members.
	before := spis(gm1.teks())
	if out := ks.cliV2("crypto gdoi ks rekey"); !strings.Contains(out, "Rekey with policy-replace sent for group") {
		t.Fatalf("crypto gdoi ks rekey:\n%s", out)
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("the rekey applied", 15*time.Second, func() bool { return g.v2Field("Rekeys applied") == "1" })
		g.waitFor("the new TEK in tmd", 10*time.Second, func() bool { return len(spis(g.teks())) > len(before) || !slices.Equal(spis(g.teks()), before) })
	}
	ping("after the rekey")

	// Removal: both members excluded, both register again.
	regs := gm1.v2Field("Succeeded registration")
	if out := ks.cliV2("clear crypto gdoi ks members now"); !strings.Contains(out, "Sending GM-Removal message to group") {
		t.Fatalf("clear crypto gdoi ks members now:\n%s", out)
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("re-registration after the removal", 20*time.Second, func() bool {
			return g.v2Registered() && g.v2Field("Succeeded registration") != regs
		})
	}
	gm1.waitFor("the same TEKs on both GMs", 10*time.Second, func() bool { return slices.Equal(spis(gm1.teks()), spis(gm2.teks())) })
	ping("after the removal")

	// Persistence (O4): the KS's ikev2d restarted (stopsrc -s, startsrc
	// -s: it joins the running group) keeps keys and members; its next
	// GSA_REKEY is accepted by both members, traffic flows.
	ks.mustSrc("stopsrc", "-s", "ikev2d")
	ks.waitFor("ikev2d stopped", 15*time.Second, func() bool { _, st := ks.status("ikev2d"); return st == "stopped" })
	ks.mustSrc("startsrc", "-s", "ikev2d")
	ks.waitFor("ikev2d back", 15*time.Second, func() bool { return strings.Contains(ks.cliV2("show crypto gdoi ks members"), "10.236.1.2") })
	rekeys := map[*host]string{gm1: gm1.v2Field("Rekeys applied"), gm2: gm2.v2Field("Rekeys applied")}
	if out := ks.cliV2("crypto gdoi ks rekey"); !strings.Contains(out, "Rekey with policy-replace sent for group") {
		t.Fatalf("crypto gdoi ks rekey after the restart:\n%s", out)
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("the restarted KS's rekey applied", 15*time.Second, func() bool { return g.v2Field("Rekeys applied") != rekeys[g] })
	}
	ping("after the KS's restart and rekey")
}

// proves: T1, G4 (issue 17: a G-IKEv2 group rekeyed by multicast: the KS's
// ikev2d sends the GSA_REKEY once to 239.192.8.8:848 through iked (the
// group's multicast options set on iked's socket), both members' ikev2d
// joined the KEK policy's destination at registration and apply it)
func TestIkev2dMulticastRekey(t *testing.T) {
	nw := newNetwork(t, "gv2m")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ks := newV2Host(t, ctx, bin, "ks", nw.ksNS, "", gikev2KS(mcastKSConf), "")
	gm1 := newV2Host(t, ctx, bin, "gm1", nw.gm1NS, "", gikev2GM(fmt.Sprintf(gmConf, "gm1", "10.236.0.1"), "10.236.0.1"), "")
	gm2 := newV2Host(t, ctx, bin, "gm2", nw.gm2NS, "", gikev2GM(fmt.Sprintf(gmConf, "gm2", "10.236.0.1"), "10.236.0.1"), "")
	for _, h := range []*host{ks, gm1, gm2} {
		h.mustSrc("startsrc", "-g", "ike")
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("G-IKEv2 registration", 20*time.Second, g.v2Registered)
		g.waitFor("the multicast join", 5*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(g.dir, "ikev2d.log"))
			return strings.Contains(string(b), "joined the multicast rekey group") && strings.Contains(string(b), "239.192.8.8:848")
		})
	}
	if out := ks.cliV2("crypto gdoi ks rekey"); !strings.Contains(out, "Rekey with policy-replace sent for group") {
		t.Fatalf("crypto gdoi ks rekey:\n%s", out)
	}
	for _, g := range []*host{gm1, gm2} {
		g.waitFor("the multicast rekey applied", 15*time.Second, func() bool { return g.v2Field("Rekeys applied") == "1" })
	}
	b, _ := os.ReadFile(filepath.Join(ks.dir, "ikev2d.log"))
	if !regexp.MustCompile(`G-IKEv2 rekey sent.* to=1`).Match(b) {
		t.Fatalf("the KS did not send one multicast GSA_REKEY:\n%s", b)
	}
}
