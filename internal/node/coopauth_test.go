package node

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// ksKeys is KS i's group rekey sequence number and KEK SPI.
func (l *coopLab) ksKeys(i int) (uint32, [isakmp.KEKSPILen]byte) {
	var seq uint32
	var spi [isakmp.KEKSPILen]byte
	if err := l.ks[i].Do(l.ctx, func() {
		seq = l.ks[i].ks.Seq("GETVPN")
		for _, g := range l.ks[i].ks.SnapshotOf(time.Now(), false) {
			spi = g.KEKSPI
		}
	}); err != nil {
		l.t.Fatal(err)
	}
	return seq, spi
}

// proves: C1 (issue 16, review finding 3: a peer KS is authenticated as a
// KS, not recognised by its address): KS 0 authenticates its peer by
// certificate subject (peer address ipv4 A identity ks1). A GM holding a
// certificate of the same CA, at the stopped peer's address, runs a KS
// that announces Primary with priority 255: KS 0 stays primary, its rekey
// sequence number and KEK are unchanged, and ann_peer_not_authorized
// counts the refusal. Then the real peer (certificate ks1) is heard. The
// same with pre-shared keys: a peer covered only by the key members hold
// (PeerAuth.PSK false: a wildcard key) is refused.
func TestCOOPGMCredentialsCannotActAsPeerKS(t *testing.T) {
	for _, mode := range []string{"certificate", "wildcard psk"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			third := map[string]string{"certificate": "127.0.0.121", "wildcard psk": "127.0.0.123"}[mode]
			second := netip.MustParseAddr(third).Next().String()
			l := prepareCoopLab(t, ctx, []string{third, second}, nil, coopTimers)
			pki := newPKI(t)
			suite := ike.Suite{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthECDSA256}
			cn := []string{"ks0", "gm-1"} // KS 1's address is held by a GM
			if mode == "certificate" {
				l.ikeFor = func(i int) *ike.Config {
					der, key := pki.issue(t, cn[i])
					return &ike.Config{Suites: []ike.Suite{suite}, Version: version.Current, Creds: ike.Credentials{Chain: [][]byte{der}, Key: key, Roots: pki.pool}}
				}
				l.authFor = func(i int, peer netip.Addr) ks.PeerAuth { return ks.PeerAuth{Identity: "ks" + string(rune('0'+1-i))} }
			} else {
				// The lab's one key stands for crypto isakmp key K address 0.0.0.0.
				l.authFor = func(int, netip.Addr) ks.PeerAuth { return ks.PeerAuth{} }
			}
			l.startKS(0, 10)
			l.waitRoles("KS 0 alone becomes primary", coop.Primary)
			seq, kek := l.ksKeys(0)

			l.startKS(1, 255) // the GM's KS: Primary 255 once its election wait is over
			waitFor(t, "the GM's SA refused as a KS-KS SA", l.ks[0], func() bool {
				return counter(l.ks[0].COOPCounters(), "ann_peer_not_authorized") > 0
			})
			// Give the impostor its election wait and a few announcement periods.
			time.Sleep(coopTimers.ElectionWait + 4*coopTimers.Period)
			if st := l.status(0); st.Role != coop.Primary || st.Primary != l.addrs[0] {
				t.Fatalf("the GM at a peer's address changed KS 0's role: %+v", st)
			}
			if s, k := l.ksKeys(0); s != seq || k != kek {
				t.Fatalf("KS 0's keys changed: seq %d -> %d, KEK %x -> %x", seq, s, kek, k)
			}
			var accepted uint64 // COOPCounters reads the loop's state: inside Do (CI's race detector caught it outside)
			l.ks[0].Do(ctx, func() { accepted = counter(l.ks[0].COOPCounters(), "ann_accepted") })
			if accepted != 0 {
				t.Fatalf("%d announcements of the GM accepted", accepted)
			}
			if mode != "certificate" {
				return
			}
			// The real peer, with its certificate, is heard.
			l.kill(1)
			cn[1] = "ks1"
			l.startKS(1, 5)
			waitFor(t, "the real peer KS heard", l.ks[0], func() bool {
				return counter(l.ks[0].COOPCounters(), "ann_accepted") > 0
			})
			if !strings.Contains(l.logs[0].String(), "not authenticated as that key server") {
				t.Fatalf("no refusal logged:\n%s", l.logs[0].String())
			}
		})
	}
}
