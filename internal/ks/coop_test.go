package ks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// coopPair is two KSs of one group (same policy and rekey key), the first
// primary, the second secondary, both with redundancy.
func coopPair(t *testing.T) (pri, sec *Server) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	mk := func(self, other netip.Addr) *Server {
		s := New(Options{})
		err := s.AddGroup(GroupConfig{Name: "G", ID: 7, Address: self, SigningKey: key, Rekey: RekeyPolicy{Unicast: true},
			Redundancy: &Redundancy{Priority: 10, Peers: []netip.Addr{other}},
			TEKs: []TEKPolicy{{Transform: isakmp.ESPAESGCM16, KeyBits: 128, Lifetime: time.Hour,
				Selectors: []Selector{{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("10.0.0.0/8")}}}}}, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pri, sec = mk(a, b), mk(b, a)
	pri.TakeOver("G")
	return pri, sec
}

// proves: C1, T1 (issue 16: a secondary adopts the primary's KEK, TEKs and
// sequence number from its announcement; a KS that becomes primary goes
// on SeqMargin above what it adopted; only the primary's schedule runs)
func TestAdoptKeysAndTakeOver(t *testing.T) {
	pri, sec := coopPair(t)
	if sec.Primary("G") || !pri.Primary("G") {
		t.Fatal("roles")
	}
	if _, err := pri.Rekey("G", now); err != nil {
		t.Fatal(err)
	}
	sa, kd, seq, err := pri.Announce("G", now)
	if err != nil {
		t.Fatal(err)
	}
	if kp := kd.Packet(isakmp.KDKEK, sa.KEK.SPI[:]); kp == nil {
		t.Fatal("no KEK key packet")
	}
	changed, prev, err := sec.AdoptKeys("G", sa, kd, seq, now)
	if err != nil || !changed || prev.SPI == sa.KEK.SPI {
		t.Fatalf("adopt: changed %v err %v", changed, err)
	}
	p, s := pri.Snapshot(now)[0], sec.Snapshot(now)[0]
	if s.KEKSPI != p.KEKSPI || s.TEKs[0].SPI != p.TEKs[0].SPI || s.Seq != p.Seq || !s.Secondary {
		t.Fatalf("secondary %+v\nprimary %+v", s, p)
	}
	if again, _, _ := sec.AdoptKeys("G", sa, kd, seq, now); again {
		t.Fatal("the same keys adopted twice count as a change")
	}
	// The secondary registers GMs with the primary's keys and does not
	// refresh them into its own.
	if _, err := sec.Join(peer("10.1.1.1"), isakmp.GroupID(7), now.Add(59*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if sec.Snapshot(now)[0].TEKs[0].SPI != p.TEKs[0].SPI {
		t.Fatal("a secondary made keys of its own")
	}
	if !sec.NextRekey("G").IsZero() && sec.Primary("G") {
		t.Fatal("schedule")
	}
	sec.TakeOver("G")
	if got := sec.Seq("G"); got != p.Seq+SeqMargin {
		t.Fatalf("seq after take-over %d, want %d", got, p.Seq+SeqMargin)
	}
	if pu, err := sec.Rekey("G", now); err != nil || pu.Seq != p.Seq+SeqMargin+1 {
		t.Fatalf("first rekey of the new primary: %v %v", pu, err)
	}
}

// proves: C1 (issue 16: a primary whose policy differs — a TEK the
// secondary does not have configured — is not adopted, and nothing
// changes)
func TestAdoptKeysPolicyMismatch(t *testing.T) {
	pri, sec := coopPair(t)
	sa, kd, seq, _ := pri.Announce("G", now)
	sa.TEKs[0].Selector.Dst = isakmp.PrefixEndpoint(netip.MustParsePrefix("172.16.0.0/12"), 0)
	before := sec.Snapshot(now)[0]
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err == nil || !strings.Contains(err.Error(), "configure the same policy") {
		t.Fatalf("mismatch adopted: %v", err)
	}
	if after := sec.Snapshot(now)[0]; after.TEKs[0].SPI != before.TEKs[0].SPI || after.KEKSPI != before.KEKSPI {
		t.Fatal("a refused adoption changed the keys")
	}
}

// proves: C1 (issue 16: a primary that signs rekeys with another key —
// the KSs were not given the same rekey key — is not adopted: the GMs
// would reject every rekey this KS forwards)
func TestAdoptKeysOtherSigningKey(t *testing.T) {
	pri, _ := coopPair(t)
	_, other := coopPair(t)
	sa, kd, seq, _ := pri.Announce("G", now)
	if _, _, err := other.AdoptKeys("G", sa, kd, seq, now); err == nil || !strings.Contains(err.Error(), "same rekey key") {
		t.Fatalf("adopted under another rekey key: %v", err)
	}
}

// proves: C1 (issue 16: two cooperative KSs registering GMs under the same
// keys never hand out the same sender ID, RFC 6054)
func TestSenderIDsSplitBetweenKSs(t *testing.T) {
	pri, sec := coopPair(t)
	sa, kd, seq, _ := pri.Announce("G", now)
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]string{}
	for i, s := range []*Server{pri, sec} {
		for j := 0; j < 20; j++ {
			_, kd, err := s.Keys(peer(netip.AddrFrom4([4]byte{10, byte(i), 0, byte(j)}).String()), isakmp.GroupID(7), 1, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range kd.Packet(isakmp.KDSID, nil).Attributes[1:] {
				v, _ := a.Uint()
				if who, dup := seen[uint32(v)]; dup {
					t.Fatalf("sender ID %d handed out by KS %d and %s", v, i, who)
				}
				seen[uint32(v)] = "KS " + string(rune('0'+i))
			}
		}
	}
}

// proves: C1 (issue 16: the secondary forwards adopted keys to its GMs
// under the KEK they hold, with a number above every one it sent them)
func TestForwardUnderHeldKEK(t *testing.T) {
	pri, sec := coopPair(t)
	sa, kd, seq, _ := pri.Announce("G", now)
	sec.AdoptKeys("G", sa, kd, seq, now)
	if _, _, err := sec.Keys(peer("10.2.0.1"), isakmp.GroupID(7), 1, now); err != nil {
		t.Fatal(err)
	}
	held := sec.KEK("G")
	pri.ReplaceRekey("G", isakmp.ModeNow, now) // a new KEK
	sa, kd, seq, _ = pri.Announce("G", now)
	changed, prev, err := sec.AdoptKeys("G", sa, kd, seq, now)
	if err != nil || !changed || prev.SPI != held.SPI {
		t.Fatalf("adopt: %v %v", changed, err)
	}
	p, err := sec.Forward("G", prev, true, 0, now)
	if err != nil || p == nil || p.KEK.SPI != held.SPI || p.Seq != seq || len(p.Members) != 1 {
		t.Fatalf("forward %+v %v", p, err)
	}
	// A merge: the adopted number is not above what this KS sent.
	q, err := sec.Forward("G", sec.KEK("G"), false, 0, now)
	if err != nil || q.Seq != seq+1 {
		t.Fatalf("second forward %+v %v", q, err)
	}
}

// proves: C1 (issue 16: with multicast rekeys a secondary does not
// multicast the primary's keys again — the primary's rekey reached every
// GM — but does after a merge, for the GMs on its own KEK)
func TestAdoptMulticastForwardsOnlyOnMerge(t *testing.T) {
	pri, sec := coopPair(t)
	for _, s := range []*Server{pri, sec} {
		s.byName["G"].cfg.Rekey = RekeyPolicy{Multicast: netip.MustParseAddrPort("239.1.1.1:848")}
	}
	d := NewDelivery(sec, nil)
	sa, kd, seq, _ := pri.Announce("G", now)
	// The first adoption replaces keys of the secondary's own: forwarded.
	if res, _, err := d.Adopt("G", sa, kd, seq, false, now); err != nil || len(res.Send) != 1 {
		t.Fatalf("first adoption: %+v %v", res.Send, err)
	}
	pri.Rekey("G", now)
	sa, kd, seq, _ = pri.Announce("G", now)
	res, changed, err := d.Adopt("G", sa, kd, seq, false, now)
	if err != nil || !changed || len(res.Send) != 0 || len(res.Events) != 0 {
		t.Fatalf("multicast forward without a merge: changed %v sends %d err %v", changed, len(res.Send), err)
	}
	pri.ReplaceRekey("G", isakmp.ModeNow, now)
	sa, kd, seq, _ = pri.Announce("G", now)
	res, _, err = d.Adopt("G", sa, kd, seq, true, now)
	if err != nil || len(res.Send) != 1 || res.Send[0].To != netip.MustParseAddrPort("239.1.1.1:848") {
		t.Fatalf("merge: %+v %v", res.Send, err)
	}
}

// proves: C1/C3 (issue 16: a KS that served keys of its own before it
// heard any primary forwards the primary's keys to its GMs with an
// activation delay of 0 — they send with the primary's TEKs at once,
// which the primary's GMs hold — and a DTD that retires its own TEKs
// later, never at once: no Delete)
func TestAdoptOwnKeysForwardActivatesAtOnce(t *testing.T) {
	pri, sec := coopPair(t)
	if _, _, err := sec.Keys(peer("10.3.0.1"), isakmp.GroupID(7), 1, now); err != nil {
		t.Fatal(err)
	}
	held := sec.KEK("G")
	pub := sec.byName["G"].sig.pub
	d := NewDelivery(sec, nil)
	gap := func(res Result) (atd, dtd uint64, r *gdoi.Rekey) {
		t.Helper()
		if len(res.Send) != 1 {
			t.Fatalf("%d datagrams forwarded", len(res.Send))
		}
		pk, err := x509.ParsePKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		r, err = gdoi.OpenPush(res.Send[0].Data, held, pk, sec.byName["G"].sig.alg)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range r.SA.GAP.Attributes {
			v, _ := a.Uint()
			switch isakmp.GAPAttr(a.Type) {
			case isakmp.GAPActivationTimeDelay:
				atd = v
			case isakmp.GAPDeactivationTimeDelay:
				dtd = v
			}
		}
		return atd, dtd, r
	}
	sa, kd, seq, _ := pri.Announce("G", now)
	res, changed, err := d.Adopt("G", sa, kd, seq, false, now)
	if err != nil || !changed {
		t.Fatalf("adopt: %v %v", changed, err)
	}
	atd, dtd, r := gap(res)
	if atd != 0 || dtd != uint64(RekeyDTD/time.Second) || len(r.Deletes) != 0 || r.SA.TEKs[0].SPI != sa.TEKs[0].SPI {
		t.Fatalf("forward of the primary's keys over this KS's own: ATD %d DTD %d deletes %d", atd, dtd, len(r.Deletes))
	}
	// A later rekey of the primary, forwarded to GMs that hold its keys
	// already, keeps the usual activation delay.
	held = sec.KEK("G")
	pri.Rekey("G", now)
	sa, kd, seq, _ = pri.Announce("G", now)
	d2 := NewDelivery(sec, nil)
	res, _, err = d2.Adopt("G", sa, kd, seq, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if atd, _, _ := gap(res); atd != uint64(RekeyATD/time.Second) {
		t.Fatalf("forward of a primary's rekey: ATD %d, want %d", atd, RekeyATD/time.Second)
	}
}

// proves: C1, O4 (issue 16: a KS restarted from its store does not take
// its stored keys for the primary's: when it adopts the primary's, the
// GMs on the stored keys get them forwarded, with multicast too)
func TestRestoredOwnKeysStillForwarded(t *testing.T) {
	pri, sec := coopPair(t)
	for _, s := range []*Server{pri, sec} {
		s.byName["G"].cfg.Rekey = RekeyPolicy{Multicast: netip.MustParseAddrPort("239.1.1.1:848")}
	}
	if _, _, err := sec.Keys(peer("10.3.0.1"), isakmp.GroupID(7), 1, now); err != nil {
		t.Fatal(err)
	}
	st, _ := sec.State("G", now)
	sec2 := New(Options{})
	if err := sec2.AddGroup(sec.byName["G"].cfg, now); err != nil {
		t.Fatal(err)
	}
	if err := sec2.Restore(st, now); err != nil {
		t.Fatal(err)
	}
	sa, kd, seq, _ := pri.Announce("G", now)
	res, changed, err := NewDelivery(sec2, nil).Adopt("G", sa, kd, seq, false, now)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if len(res.Send) != 1 {
		t.Fatalf("GMs on the restarted KS's own keys not forwarded: %d sends", len(res.Send))
	}
}

// proves: C1 (issue 16: a secondary that cannot adopt the keys of the
// primary it follows refuses registrations with a notify, counted, so
// GMs fail over to a KS with the primary's keys, instead of serving a
// group of its own nobody reconciles; it registers again once it adopts,
// becomes primary or follows none)
func TestSecondaryWithUnadoptableKeysRefusesJoin(t *testing.T) {
	pri, sec := coopPair(t)
	sa, kd, seq, _ := pri.Announce("G", now)
	sa.TEKs[0].Selector.Dst = isakmp.PrefixEndpoint(netip.MustParsePrefix("172.16.0.0/12"), 0)
	if _, _, err := NewDelivery(sec, nil).Adopt("G", sa, kd, seq, false, now); err == nil {
		t.Fatal("mismatch adopted")
	}
	_, err := sec.Join(peer("10.3.0.1"), isakmp.GroupID(7), now)
	var r *gdoi.Refusal
	if !errors.As(err, &r) || r.Notify == 0 || sec.RefusedUnadoptable() != 1 {
		t.Fatalf("registration with a secondary that cannot adopt: %v (refused %d)", err, sec.RefusedUnadoptable())
	}
	sa, kd, seq, _ = pri.Announce("G", now)
	if _, _, err := sec.AdoptKeys("G", sa, kd, seq, now); err != nil {
		t.Fatal(err)
	}
	if _, err := sec.Join(peer("10.3.0.1"), isakmp.GroupID(7), now); err != nil {
		t.Fatalf("after adopting: %v", err)
	}
	sa.TEKs[0].Selector.Dst = isakmp.PrefixEndpoint(netip.MustParsePrefix("172.16.0.0/12"), 0)
	sec.AdoptKeys("G", sa, kd, seq, now)
	sec.FollowNone("G")
	if _, err := sec.Join(peer("10.3.0.1"), isakmp.GroupID(7), now); err != nil {
		t.Fatalf("following no primary: %v", err)
	}
}
