package node

import (
	"bytes"
	"testing"
	"time"

	"net/netip"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: N1, S1 (issue 18 review of 0f8c085: the loop hands datagrams
// to the node in its read buffers, so no part of a datagram may outlive
// its handling) — each datagram is overwritten in full right after it is
// handled, before the turn's answers leave; every main-mode and pull
// message is sent twice and both copies get the same answer (the
// retransmission detection kept nothing of the overwritten bytes), and a
// second GROUPKEY-PULL runs over the same phase-1 SA. A KS that kept the
// raw message (instead of its digest) to recognise a retransmission
// fails at the first message.
func TestNoDatagramBytesOutliveTheirHandling(t *testing.T) {
	r := newKSRegistrar(t)
	r.deliver = func(from netip.AddrPort, data []byte) {
		buf := bytes.Clone(data)
		r.kn.datagram(datagram{sock: r.s, from: from, data: buf})
		for i := range buf {
			buf[i] ^= 0x5a
		}
	}
	for g := range 3 {
		now := time.Now()
		gmAP := netip.AddrPortFrom(r.next, 848)
		r.next = r.next.Next()
		ep, err := ike.NewEndpoint(r.gmCfg, gmAP, ike.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, out, err := ep.Initiate(r.s.local, now)
		if err != nil {
			t.Fatal(err)
		}
		var gmSA *ike.SA
		for i := range 3 {
			msg := out.Send[0].Data
			rep, again := r.toKS(gmAP, msg), r.toKS(gmAP, msg)
			if len(rep) != 1 || len(again) != 1 || !bytes.Equal(rep[0], again[0]) {
				t.Fatalf("gm %d MM%d: %d/%d answers", g, 2*i+1, len(rep), len(again))
			}
			out = ep.Handle(r.s.local, rep[0], now)
			for _, ev := range out.Events {
				if _, ok := ev.Event.(ike.Established); ok {
					gmSA = ev.SA
				}
			}
		}
		if gmSA == nil {
			t.Fatalf("gm %d: phase 1 not established", g)
		}
		for reg := range 2 { // a second pull over the same SA
			pull, m, err := gdoi.NewPull(gmSA, isakmp.GroupID(1234), 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				rep, again := r.toKS(gmAP, m), r.toKS(gmAP, m)
				if len(rep) != 1 || len(again) != 1 || !bytes.Equal(rep[0], again[0]) {
					t.Fatalf("gm %d registration %d pull message %d: %d/%d answers", g, reg, 2*i+1, len(rep), len(again))
				}
				msg, err := isakmp.ParseMessage(rep[0])
				if err != nil {
					t.Fatal(err)
				}
				var res *gdoi.Result
				if m, res, err = pull.Handle(msg); err != nil || (i == 1) != (res != nil) {
					t.Fatalf("gm %d registration %d pull message %d: %v", g, reg, 2*i+2, err)
				}
			}
			gmSA.ForgetMessageID(pull.MessageID())
		}
	}
}
