package system_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupvpn/groupvpn/internal/testnet"
)

// `sa receive-only` turned on at the KS and sent by `crypto gdoi ks rekey`
// (a policy-replace rekey): once the new, receive-only TEK's activation
// time delay (30 s) has passed, the GMs send the hosts' traffic in the
// clear and count it, although the old TEK they encrypted with is still
// held (its lifetime shortened, at least 90 s): receive-only is active
// right after the rekey, as the KS's POLICY_CHANGE says.
// proves: T3 (issue 12: receive-only, enabled by a rekey, sends clear)
func TestSitesReceiveOnlyAfterRekey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSites(t, ctx, "gvse", "esp-aes 128 esp-sha-hmac", "", "")
	s.hostNS[0].Run(t, "ping", "-c", "2", "-i", "0.2", "-W", "2", s.addr[1].String())
	if engineCounters(s.gm[0])["encaps"] < 2 {
		t.Fatal("gm1 did not encrypt before receive-only")
	}
	out, err := exec.Command(s.ks.bin, "cli", "-s", filepath.Join(s.ks.dir, "isakmpd.sock"), "-c", "conf t", "-c", "crypto gdoi group SRC",
		"-c", "server local", "-c", "sa receive-only", "-c", "end", "-c", "crypto gdoi ks rekey").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Rekey with policy-replace sent") {
		t.Fatalf("receive-only and rekey on the KS: %v\n%s", err, out)
	}
	var from time.Time
	for _, g := range s.gm[:2] {
		g.waitFor("the receive-only TEK", 15*time.Second, func() bool {
			for _, k := range g.teks() {
				if k.ReceiveOnly {
					if k.SendFrom.After(from) {
						from = k.SendFrom
					}
					return true
				}
			}
			return false
		})
	}
	time.Sleep(time.Until(from.Add(500 * time.Millisecond)))
	before1, before2 := engineCounters(s.gm[0]), engineCounters(s.gm[1])
	capt := testnet.StartCapture(t, s.core, 0)
	marker := []byte("RO-AFTER-REKEY!!")
	s.hostNS[0].Run(t, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", hex.EncodeToString(marker), s.addr[1].String())
	pkts := stopCapture(capt)
	defer logOnFailure(t, pkts)
	clear := 0
	for _, p := range pkts {
		if siteNet.Contains(p.Src) && siteNet.Contains(p.Dst) {
			if p.Proto == unix.IPPROTO_ESP {
				t.Errorf("ESP %v -> %v after receive-only was enabled by the rekey", p.Src, p.Dst)
			} else if bytes.Contains(p.Raw, marker) {
				clear++
			}
		}
	}
	if clear < 6 {
		t.Errorf("the core saw %d clear echoes with the marker; want 6", clear)
	}
	a1, a2 := counterDelta(engineCounters(s.gm[0]), before1), counterDelta(engineCounters(s.gm[1]), before2)
	if a1["encaps"] != 0 || a2["encaps"] != 0 || a1["receive_only_clear"] < 3 || a2["receive_only_clear"] < 3 {
		t.Errorf("after the receive-only rekey: gm1 encaps +%d receive_only_clear +%d, gm2 encaps +%d receive_only_clear +%d; want no encaps, 3 clear each",
			a1["encaps"], a1["receive_only_clear"], a2["encaps"], a2["receive_only_clear"])
	}
}
