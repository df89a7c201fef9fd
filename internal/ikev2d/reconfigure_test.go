package ikev2d

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: D4, P1 (issue 17: a reread file applied to a running ikev2d: a
// group added is refused naming the restart it needs; the group's new TEK
// policy (lifetime) reaches the member with the next rekey, not before;
// the new pre-shared key admits a member holding it and refuses one
// holding the old one, while the registered member keeps its IKE SA)
func TestRouterReconfigure(t *testing.T) {
	ctx := context.Background()
	g := ksGroup(t)
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{g}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	member := func(addr string, key string) (*Router, sadb.Dataplane) {
		dp := sadb.NewMemory()
		creds := ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte(key), true }}
		gr, err := New(Config{Creds: creds, GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs(), Sender: true}}},
			Options{Listen: []netip.AddrPort{netip.MustParseAddrPort(addr)}, Dataplane: dp})
		if err != nil {
			t.Fatal(err)
		}
		run(t, gr)
		return gr, dp
	}
	status := func(r *Router) (s MemberStatus) { r.Do(ctx, func() { s = r.Members()[0] }); return }
	gm1, dp1 := member("127.0.0.7:0", "router secret")
	waitFor(t, "gm1 registration", func() bool { return status(gm1).Registered })

	added := g
	added.Name, added.ID = "G3", 91
	var rerr error
	kr.Do(ctx, func() { rerr = kr.Reconfigure(Config{Creds: psk(), KS: []ks.GroupConfig{g, added}}) })
	if rerr == nil || !strings.Contains(rerr.Error(), "restart ikev2d") {
		t.Fatalf("a group added: %v", rerr)
	}

	changed := g
	changed.TEKs = append([]ks.TEKPolicy(nil), g.TEKs...)
	changed.TEKs[0].Lifetime = 2 * time.Hour
	newKey := ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("new secret"), true }}
	kr.Do(ctx, func() { rerr = kr.Reconfigure(Config{Creds: newKey, KS: []ks.GroupConfig{changed}}) })
	if rerr != nil {
		t.Fatal(rerr)
	}
	longest := func(dp sadb.Dataplane) time.Duration {
		var d time.Duration
		for _, k := range dp.TEKs() {
			d = max(d, time.Until(k.Expires))
		}
		return d
	}
	if d := longest(dp1); d > time.Hour {
		t.Fatalf("the new policy reached the member before a rekey: %v", d)
	}
	kr.Do(ctx, func() { rerr = kr.Rekey("G2") })
	if rerr != nil {
		t.Fatal(rerr)
	}
	waitFor(t, "the new policy at gm1 with the rekey", func() bool { return longest(dp1) > 90*time.Minute })

	gmNew, _ := member("127.0.0.8:0", "new secret")
	gmOld, _ := member("127.0.0.9:0", "router secret")
	waitFor(t, "a member with the new key registering", func() bool { return status(gmNew).Registered })
	waitFor(t, "a member with the old key refused", func() bool { return status(gmOld).Failures > 0 })
	if status(gmOld).Registered || !status(gm1).Registered {
		t.Fatalf("old-key member %+v, gm1 %+v", status(gmOld), status(gm1))
	}
}
