package ikev2d

import (
	"context"
	"net/netip"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// proves: G2 (issue 17: a member of two groups of one key server: each
// group's GSA_AUTH carries its own IDg (Endpoint.InitiateWith) and gets its
// own group's keys; with one IDg for the endpoint the second group was
// given the first one's GSA and refused it)
func TestRouterTwoGroups(t *testing.T) {
	ctx := context.Background()
	g2, g3 := ksGroup(t), ksGroup(t)
	g3.Name, g3.ID = "G3", 91
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{g2, g3}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	dp := sadb.NewMemory()
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs()}, {Name: "G3", ID: 91, Servers: kr.Addrs()}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.12:0")}, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	run(t, gr)
	waitFor(t, "both groups registered", func() bool {
		var ok bool
		gr.Do(ctx, func() { ok = gr.Members()[0].Registered && gr.Members()[1].Registered })
		return ok && len(tekSPIs(dp, "G2")) == 1 && len(tekSPIs(dp, "G3")) == 1
	})
	var st []MemberStatus
	gr.Do(ctx, func() { st = gr.Members() })
	for _, s := range st {
		if s.Failures != 0 {
			t.Fatalf("%s: %+v", s.Group, s)
		}
	}
}

// proves: G2 (issue 17: member leave: a stopping member sends
// GSA_REGISTRATION with IDg and N(REGISTRATION_FAILED) over its IKE SA,
// and the key server counts it (show crypto ikev2 statistics members_left))
func TestRouterMemberLeaves(t *testing.T) {
	ctx := context.Background()
	kr, err := New(Config{Creds: psk(), KS: []ks.GroupConfig{ksGroup(t)}}, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, kr)
	gr, err := New(Config{Creds: psk(), GM: []GMGroup{{Name: "G2", ID: 90, Servers: kr.Addrs()}}},
		Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.13:0")}})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { gr.Run(gctx); close(done) }()
	waitFor(t, "registration", func() bool {
		var ok bool
		gr.Do(ctx, func() { ok = gr.Members()[0].Registered })
		return ok
	})
	stop()
	<-done
	waitFor(t, "the leave at the KS", func() bool {
		var n uint64
		kr.Do(ctx, func() { n = kr.ks.Left })
		return n == 1
	})
}
