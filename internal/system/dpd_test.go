package system_test

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// dpdGMConf is a member of group SRC with two key servers in order and
// IOS's crypto isakmp keepalive 10 2 (on demand).
const dpdGMConf = `hostname gm1
crypto isakmp policy 10
 encryption aes 256
 hash sha256
 authentication pre-share
 group 14
crypto isakmp key src-secret address 10.236.0.0 255.255.255.0
crypto isakmp keepalive 10 2
crypto gdoi group SRC
 identity number 89
 server address ipv4 10.236.0.1
 server address ipv4 10.236.0.12
crypto map M 10 gdoi
 set group SRC
interface eth0
 crypto map M
end
`

// registeredWith is the key server the member's group is registered with,
// or "" while it is not registered.
func (h *host) registeredWith() string {
	out := h.cli("show crypto gdoi gm")
	if !strings.Contains(out, "Registration status   : Registered") {
		return ""
	}
	m := regexp.MustCompile(`Registered with       : (\S+)`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// killIsakmpd kills a host's isakmpd with SIGKILL: its phase-1 SAs vanish
// without a Delete, as with a crash or a power cut.
func killIsakmpd(t *testing.T, h *host) {
	t.Helper()
	pid, _ := h.status("isakmpd")
	if err := syscall.Kill(atoi(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// proves: S7 (issue 14 item 2: keepalive) — with real daemons over real
// UDP, a member configured with crypto isakmp keepalive 10 2 and two key
// servers finds the first one dead after its isakmpd is killed (no Delete:
// its SAs just vanish) and registers with the second within SECONDS +
// 5*RETRY of the kill (plus 4 s of margin: registration, polling through
// the CLI on a loaded machine), long before its
// re-registration; once the first KS is restarted and the second killed,
// it goes back to the first the same way.
func TestDPDMemberFailsOverToLiveKS(t *testing.T) {
	t.Parallel()
	nw := newNetwork(t, "gvdp")
	bin := testnet.Binary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ks1 := newHost(t, ctx, bin, "ks1", nw.ksNS, ksConf)
	ks1.mustSrc("startsrc", "-g", "ike")
	ks2 := newHost(t, ctx, bin, "ks2", nw.gm2NS, strings.NewReplacer("hostname ks\n", "hostname ks2\n", "address ipv4 10.236.0.1\n", "address ipv4 10.236.0.12\n").Replace(ksConf))
	ks2.mustSrc("startsrc", "-g", "ike")
	gm := newHost(t, ctx, bin, "gm1", nw.gm1NS, dpdGMConf)
	gm.mustSrc("startsrc", "-g", "ike")
	gm.waitFor("registering with ks1", 20*time.Second, func() bool { return gm.registeredWith() == "10.236.0.1" })
	if out := gm.cli("show crypto isakmp sa detail"); !strings.Contains(out, "DPD: on-demand, keepalive 10 s, retry 2 s;") {
		t.Fatalf("show crypto isakmp sa detail:\n%s", out)
	}
	if out := gm.cli("show running-config"); !strings.Contains(out, "\ncrypto isakmp keepalive 10\n") {
		t.Fatalf("show running-config:\n%s", out)
	}
	// The worst case: SECONDS after the last proof of life, which is at
	// most SECONDS before the kill, then 5 R-U-THEREs RETRY apart.
	bound := 10*time.Second + 5*2*time.Second + 4*time.Second
	failover := func(from *host, to string) time.Duration {
		t.Helper()
		killIsakmpd(t, from)
		start := time.Now()
		for gm.registeredWith() != to {
			if time.Since(start) > bound {
				t.Fatalf("not registered with %s %v after %s's isakmpd was killed:\n%s\n%s", to, time.Since(start).Round(time.Millisecond),
					from.name, gm.cli("show crypto gdoi gm"), gm.cli("show crypto isakmp sa detail"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		if took < 10*time.Second {
			t.Errorf("registered with %s %v after the kill: before any R-U-THERE could have gone unanswered", to, took)
		}
		return took
	}
	took := failover(ks1, "10.236.0.12")
	t.Logf("ks1 killed: registered with ks2 %v later (bound %v)", took.Round(time.Millisecond), bound)
	if out := gm.cli("show crypto isakmp statistics"); !regexp.MustCompile(`dpd_dead\s*:\s*1\b`).MatchString(out) {
		t.Errorf("show crypto isakmp statistics:\n%s", out)
	}

	ks1.mustSrc("stopsrc", "-s", "isakmpd")
	ks1.mustSrc("startsrc", "-g", "ike") // returns once isakmpd said ready: listening again
	took = failover(ks2, "10.236.0.1")
	t.Logf("ks2 killed: registered with the restarted ks1 %v later (bound %v)", took.Round(time.Millisecond), bound)
}
