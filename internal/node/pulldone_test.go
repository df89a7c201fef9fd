package node

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: S2 and S6 (issue 18, review: nothing unauthenticated removes the
// state a genuine retransmission needs, nor writes unbounded logs) — 100
// datagrams with the cookies and Message ID of a GROUPKEY-PULL exchange the
// KS finished, from the member's address, whose bodies are not the
// member's message 3 again (nothing authenticates them: a done exchange
// checks no HASH(3) any more), are dropped and counted
// (pulls_after_done): no notification is sent, nothing is logged at Warn,
// pulls_refused stays 0, and the served exchange stays to answer the
// member's real retransmission. Before, each was refused with a protected
// notification and a Warn line, and the first deleted the exchange.
func TestForgedPullAfterDoneDropped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuf
	ksAddr := netip.MustParseAddr("127.0.0.1")
	kn := start(t, ctx, Options{Listen: []netip.AddrPort{netip.AddrPortFrom(ksAddr, 0)}, IKE: ikeCfg("k", version.Current),
		KS: []ks.GroupConfig{ksGroup(t, ksAddr)}, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	g := start(t, ctx, Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.15:0")},
		IKE: ikeCfg("k", version.Current), GM: []GMGroup{{Name: "GETVPN", ID: 1234, Servers: []netip.AddrPort{kn.Addrs()[0]}, SIDs: 1}}})
	waitFor(t, "registration", g, func() bool { return g.Members()[0].State == "registered" })

	const forged = 100
	var (
		key            serveKey
		found, kept    bool
		queued         int
		after, refused uint64
	)
	kn.Do(ctx, func() {
		for sa, e := range kn.serves.bySA {
			if e.first.s.sv.Done() {
				key, found = serveKey{sa, e.first.mid}, true
			}
		}
		if !found {
			return
		}
		icky, rcky := key.sa.Cookies()
		s := kn.socks[0]
		for range forged {
			body := make([]byte, 48)
			rand.Read(body)
			h := isakmp.Header{InitiatorCookie: icky, ResponderCookie: rcky, NextPayload: isakmp.PayloadHash,
				Exchange: isakmp.ExchangePull, Flags: isakmp.FlagEncryption, MessageID: key.mid, Length: uint32(isakmp.HeaderLen + len(body))}
			kn.datagram(datagram{sock: s, from: key.sa.Peer(), data: append(h.Append(nil), body...)})
		}
		queued = len(s.out.q)
		kept = kn.serves.get(key) != nil
		after = counter(kn.KSCounters(), "pulls_after_done")
		refused = counter(kn.KSCounters(), "pulls_refused")
	})
	if !found {
		t.Fatal("the KS keeps no finished exchange")
	}
	if queued != 0 || refused != 0 {
		t.Errorf("%d datagrams answered, %d pulls refused", queued, refused)
	}
	if !kept {
		t.Error("forged datagrams deleted the finished exchange")
	}
	if after != forged {
		t.Errorf("pulls_after_done %d, want %d", after, forged)
	}
	if n := strings.Count(logs.String(), "\n"); n != 0 {
		t.Errorf("%d lines logged at Warn or above:\n%s", n, logs.String())
	}
}
