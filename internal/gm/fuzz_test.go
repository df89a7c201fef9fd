package gm

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S2, S5 (issue 15: hostile rekeys at the member role) — whatever
// datagram arrives under the member's KEK, from whatever source: no
// panic; nothing is sent anywhere but to the key server it registered with
// (an ACK); the keys change only with a rekey accepted (counted as
// received). The seeds are a real rekey, a policy-replace rekey and their
// damaged copies.
func FuzzMemberPush(f *testing.F) {
	w := registered(f)
	k := w.kss[0]
	w.runFor(time.Minute)
	for _, mode := range []byte{0, isakmp.ModeShorten} {
		p, err := k.srv.Rekey(group, w.now)
		if mode != 0 {
			p, err = k.srv.ReplaceRekey(group, mode, w.now)
		}
		if err != nil {
			f.Fatal(err)
		}
		k.rekeys = append(k.rekeys, p)
		f.Add(p.Data)
		bad := append([]byte(nil), p.Data...)
		bad[len(bad)/2] ^= 0x80
		f.Add(bad)
		f.Add(p.Data[:isakmp.HeaderLen])
	}
	forged := netip.AddrPortFrom(k.addr.Addr(), 4500) // not where the member registered
	f.Fuzz(func(t *testing.T, data []byte) {
		before, teks, keks := w.status(), w.dp.TEKs(), w.dp.KEKs()
		var res Result
		if spi, ok := PushSPI(data); ok && w.m.HoldsKEK(spi) {
			res = w.m.Push(Push{From: forged, To: w.gmAddr, Data: data, Local: w.gmAddr.Addr()}, w.now)
		}
		for _, s := range res.Send {
			if s.To != k.addr {
				t.Fatalf("sent %d octets to %s", len(s.Data), s.To)
			}
		}
		after := w.status()
		if after.Rekeys.Received == before.Rekeys.Received && (!reflect.DeepEqual(teks, w.dp.TEKs()) || !reflect.DeepEqual(keks, w.dp.KEKs())) {
			t.Fatal("the keys changed without a rekey accepted")
		}
		// At most a sender-ID note, GM_RECV_REKEY, the policy-replace
		// note and the TEKs held: nothing a push says multiplies them.
		if res.Connect.IsValid() || res.Suspect != nil || len(res.Events) > 4 {
			t.Fatalf("a push asked for %+v", res)
		}
	})
}
