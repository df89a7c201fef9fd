package node

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/netip"
	"testing"
	"time"
)

// proves: T1, O4 (issue 14 item 2: the rekey key can be replaced on a
// running KS without members rejecting rekeys, also across a restart
// before the announcing rekey) — two GMs registered over loopback UDP; the
// KS's rekey key is replaced (UpdateKSPolicy, as a reload does) and the KS
// is restarted from its bbolt store with the new key configured, before
// any rekey: the next rekey is still signed with the old key, kept in the
// store, so both GMs receive it, reject none and acknowledge it; the rekey
// after it is signed with the new key and received too.
func TestKeyReplacedThenRestartRekeyAccepted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newRestartLab(t, ctx, netip.MustParseAddr("127.0.0.172"), 2, 7)
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	grp := l.grp
	grp.SigningKey = newKey
	var uerr error
	if err := l.ks.Do(ctx, func() { uerr = l.ks.UpdateKSPolicy(grp) }); err != nil {
		t.Fatal(err)
	}
	if uerr != nil {
		t.Fatal(uerr)
	}
	l.pump(2*time.Second, func() bool { return false }) // periodic saves, if any
	l.grp = grp
	l.restart()

	for i, want := range []int{1, 2} {
		if err := l.ks.Rekey(ctx, "GETVPN"); err != nil {
			t.Fatal(err)
		}
		_, ok := l.pump(5*time.Second, func() bool {
			for _, g := range l.gms {
				if gmState(t, g).Rekeys.Received < want {
					return false
				}
			}
			return true
		})
		for _, g := range l.gms {
			if r := gmState(t, g).Rekeys; !ok || r.Received != want || r.Rejected != 0 {
				t.Fatalf("rekey %d after the key was replaced and the KS restarted: %+v", i+1, r)
			}
		}
	}
	// The GMs' ACKs reach the KS after the GMs count the rekey: wait for
	// them (under -race on a loaded machine, a moment later).
	l.pump(5*time.Second, func() bool {
		for _, m := range ksMembers(t, l.ks) {
			if m.AcksReceived < 2 {
				return false
			}
		}
		return true
	})
	for _, m := range ksMembers(t, l.ks) {
		if m.AcksReceived != 2 {
			t.Fatalf("member %s acknowledged %d rekeys, want 2", m.Address, m.AcksReceived)
		}
	}
}
