package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/isakmp"
)

// startKS runs a key server (isakmpd's node, in this process) for group
// "G" (1234) with PSK "k" on addr, port 0; it returns its address.
func startKS(t *testing.T, ctx context.Context, addr netip.Addr) netip.AddrPort {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sel := []ks.Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}
	n, err := node.New(node.Options{Listen: []netip.AddrPort{netip.AddrPortFrom(addr, 0)},
		IKE: &ike.Config{Suites: []ike.Suite{{KeyBits: 256, Hash: ike.SHA256, Group: 19, Auth: ike.AuthPSK}},
			Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("k"), true }}},
		KS: []ks.GroupConfig{{Name: "G", ID: 1234, Address: addr, SigningKey: key, TEKs: []ks.TEKPolicy{
			{Transform: isakmp.ESPAESGCM16, KeyBits: 256, Lifetime: time.Hour, Selectors: sel}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	go n.Run(ctx)
	return n.Addrs()[0]
}

// register runs a generator of n members against a fresh KS until each
// registered once.
func register(t *testing.T, n, keysAhead int) *Generator {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ksAddr := startKS(t, ctx, netip.MustParseAddr("127.66.0.1"))
	g, err := New(ctx, Options{KS: ksAddr, Members: n, Base: netip.MustParseAddr("127.66.1.1"), Group: "G", GroupID: 1234,
		PSK: []byte("k"), Shards: 2, KeysAhead: keysAhead})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	end := time.Now().Add(20 * time.Second)
	for g.Stats.Registered.Load() < int64(n) && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := g.Stats.Registered.Load(); got != int64(n) {
		t.Fatalf("%d of %d members registered (%+v)", got, n, g.Snapshot())
	}
	return g
}

// proves: N1 (issue 18: the generator's CPU per registration is the key
// server's budget; its members' key pairs are made before the stage) —
// by default one main-mode key pair per member is made before the first
// registration begins (ReadyAt, ReadyCPU set), every first registration
// takes one of them (real main mode with a KS, none made in an exchange)
// and the pools are empty after; with KeysAhead -1 none is made ahead and
// each member makes its own in its exchange.
func TestKeyPairsMadeBeforeTheStage(t *testing.T) {
	const n = 12
	g := register(t, n, 0)
	s := g.Snapshot()
	if s.KeyPairsAhead != n || s.KeyPairsInline != 0 || s.ReadyAt == 0 || s.ReadyCPU <= 0 || s.ReadyAt > s.FirstAt {
		t.Fatalf("ahead %d, inline %d, ready at %d (CPU %d), first registration at %d", s.KeyPairsAhead, s.KeyPairsInline, s.ReadyAt, s.ReadyCPU, s.FirstAt)
	}
	for _, sh := range g.shards {
		if len(sh.keys.pairs) != 0 {
			t.Fatalf("shard %d kept %d key pairs", sh.id, len(sh.keys.pairs))
		}
	}
	g = register(t, n, -1)
	if s := g.Snapshot(); s.KeyPairsAhead != 0 || s.KeyPairsInline != n {
		t.Fatalf("KeysAhead -1: ahead %d, inline %d", s.KeyPairsAhead, s.KeyPairsInline)
	}
}

// proves: N1 (issue 18: key pairs made ahead are used once) — the pool
// hands each pair out once and forgets it; once empty, each pair is made
// at once (and counted), never one handed out before.
func TestKeyPoolHandsEachPairOnce(t *testing.T) {
	g, _ := ike.GroupByID(19)
	var inline atomic.Int64
	p := keyPool{group: g, inline: &inline}
	if err := p.fill(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	var seen [][]byte
	for i := range 5 {
		_, pub, err := p.take(g)
		if err != nil || len(pub) != g.PublicLen() {
			t.Fatalf("take %d: %d octets, %v", i, len(pub), err)
		}
		for _, s := range seen {
			if bytes.Equal(s, pub) {
				t.Fatalf("take %d: a key pair handed out twice", i)
			}
		}
		seen = append(seen, pub)
	}
	if inline.Load() != 2 || len(p.pairs) != 0 {
		t.Fatalf("inline %d, %d left", inline.Load(), len(p.pairs))
	}
	// Another group than the pool's: made at once.
	if err := p.fill(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	g14, _ := ike.GroupByID(14)
	if _, pub, err := p.take(g14); err != nil || len(pub) != g14.PublicLen() || len(p.pairs) != 1 || inline.Load() != 3 {
		t.Fatalf("group 14 from an ECP-256 pool: %d octets, %v, %d left", len(pub), err, len(p.pairs))
	}
}
