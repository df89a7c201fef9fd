package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// heapPerMember registers n members (a GCM group: one sender ID each;
// the delivery's early rekeys carried out) and returns the live heap they
// added per member.
func heapPerMember(t testing.TB, n int) float64 {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ten := netip.MustParsePrefix("10.0.0.0/8")
	s := New(Options{})
	if err := s.AddGroup(GroupConfig{Name: "M", ID: 3, Address: netip.MustParseAddr("192.0.2.1"), SigningKey: key,
		TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour, Selectors: []Selector{{Src: ten, Dst: ten}}}}}, now); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	clock := now
	for i := range n {
		clock = clock.Add(time.Millisecond)
		if !s.NextRekey("M").After(clock) {
			if _, err := s.Rekey("M", clock); err != nil {
				t.Fatal(err)
			}
		}
		a := memberAddr(i)
		// PSK members with an address identity, as the loadgen's.
		if _, _, err := s.Keys(Peer{Addr: netip.AddrPortFrom(a, 848), Identity: a.String(), Version: version.Current}, isakmp.GroupID(3), 1, clock); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC() // the second: what the first left unswept
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// The KS's record of a member was a *Member in a map (its own allocation,
// with a string for its identity and a slice for its sender IDs). It is a
// value in the group's list now, found through an index by address, its
// identity kept only when it is not the address, its first sender ID
// inline, its counters 32-bit and its times Unix nanoseconds: the heap ks
// keeps per member with 100,000 (a GCM group, the group's keys and sender
// ID sets included) stays under 200 B.
// proves: issue 18 (KS memory per member: the ks member record)
func TestKSHeapPerMember(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 members: skipped with -short, runs in make test")
	}
	per := heapPerMember(t, 100_000)
	t.Logf("ks heap per member with 100,000 members: %.0f B", per)
	if per > 200 {
		t.Errorf("ks keeps %.0f B of heap per member, want at most 200", per)
	}
}

// BenchmarkKSHeapPerMember reports the heap ks keeps per member with
// 100,000 members.
func BenchmarkKSHeapPerMember(b *testing.B) {
	for range b.N {
		b.ReportMetric(heapPerMember(b, 100_000), "B/member")
	}
}
