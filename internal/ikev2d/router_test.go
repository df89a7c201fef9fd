package ikev2d

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

func psk() ike.Credentials {
	return ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("router secret"), true }}
}

func ksGroup(t testing.TB) ks.GroupConfig {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ks.GroupConfig{Name: "G2", ID: 90, Address: netip.MustParseAddr("127.0.0.1"), SigningKey: key,
		TEKs: []ks.TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Replay: isakmp.ReplayCounter, ReplayWindow: 64,
			Selectors: []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}},
		Rekey: ks.RekeyPolicy{Unicast: true, Retransmit: 50 * time.Millisecond, Retransmits: 2}}
}

func run(t testing.TB, r *Router) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s never happened", what)
		}
	}
}

func tekSPIs(dp sadb.Dataplane, group string) []uint32 {
	var out []uint32
	for _, t := range dp.TEKs() {
		if t.Group == group {
			out = append(out, t.SPI)
		}
	}
	slices.Sort(out)
	return out
}

// proves: G2, G4 (issue 17: ikev2d's router over real UDP sockets: a GM
// router registers with a KS router by IKE_SA_INIT and GSA_AUTH (the keys
// in GSA_AUTH's response, wrapped under the IKE SA's GSK_w through
// ikev2.Config.OnAuthSA) and installs ks's TEKs; a rekey (crypto gdoi ks rekey)
// reaches it as a unicast GSA_REKEY, retransmitted bitwise identical as
// RekeyPolicy says; clear crypto gdoi ks members
// excludes it and it registers again for the new keys)
func TestRouterRegisterRekeyRemove(t *testing.T) {
	ctx := context.Background()
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	ksAddr := kr.Addrs()[0]
	dp := sadb.NewMemory()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: []netip.AddrPort{ksAddr}, Sender: true}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:0")}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	run(t, gr)
	registered := func() bool {
		var ok bool
		gr.Do(ctx, func() { ok = len(gr.Members()) == 1 && gr.Members()[0].Registered })
		return ok
	}
	waitFor(t, "GM registration", registered)
	ksTEKs := func() []uint32 {
		var out []uint32
		kr.Do(ctx, func() {
			st, _ := kr.Server().State("G2", time.Now())
			for _, k := range st.TEKs {
				out = append(out, k.SPI)
			}
		})
		slices.Sort(out)
		return out
	}
	// One exchange (RFC 9838 §2.3.1): the keys came in GSA_AUTH's
	// response, no GSA_REGISTRATION followed.
	var regs int
	kr.Do(ctx, func() {
		st, _ := kr.Server().State("G2", time.Now())
		for _, m := range st.Members {
			regs += m.Registrations
		}
	})
	if regs != 1 {
		t.Fatalf("the KS answered %d registrations; want 1 (GSA_AUTH alone)", regs)
	}
	first := ksTEKs()
	if got := tekSPIs(dp, "G2"); !slices.Equal(got, first) {
		t.Fatalf("GM TEKs %v, KS %v", got, first)
	}
	// Rekey.
	var rerr error
	kr.Do(ctx, func() { rerr = kr.Replace("G2", false) })
	if rerr != nil {
		t.Fatal(rerr)
	}
	second := ksTEKs()
	waitFor(t, "rekey at the GM", func() bool { return slices.Contains(tekSPIs(dp, "G2"), second[0]) })
	var st MemberStatus
	gr.Do(ctx, func() { st = gr.Members()[0] })
	if st.Rekeys != 1 {
		t.Fatalf("rekeys applied %d: %+v", st.Rekeys, st)
	}
	// The GSA_REKEY went out twice more, bitwise identical: the member
	// counts them as retransmissions, not replays, and applies nothing.
	waitFor(t, "two retransmissions at the GM", func() bool {
		gr.Do(ctx, func() { st = gr.Members()[0] })
		return st.Stats.Resent == 2
	})
	if st.Rekeys != 1 || st.Stats.Replayed != 0 {
		t.Fatalf("after the retransmissions: %+v", st)
	}
	// S5: both sides show them (show crypto ikev2 statistics).
	var ksStats, gmStats string
	kr.Do(ctx, func() { ksStats = kr.showStats() })
	gr.Do(ctx, func() { gmStats = gr.showStats() })
	if !regexp.MustCompile(`rekeys_resent +2\n`).MatchString(ksStats) || !regexp.MustCompile(`(?m)^  resent +2$`).MatchString(gmStats) {
		t.Fatalf("statistics:\n%s\n%s", ksStats, gmStats)
	}
	// Removal: excluded, registers again, gets the new keys.
	kr.Do(ctx, func() { rerr = kr.Remove("G2", false) })
	if rerr != nil {
		t.Fatal(rerr)
	}
	third := ksTEKs()
	if slices.Equal(third, second) {
		t.Fatal("removal made no new keys")
	}
	waitFor(t, "re-registration after the removal", func() bool {
		var n uint64
		gr.Do(ctx, func() { n = gr.Members()[0].Registrations })
		return n >= 2 && slices.Contains(tekSPIs(dp, "G2"), third[0])
	})
}
