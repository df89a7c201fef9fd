package gikev2

import (
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
	"github.com/groupvpn/groupvpn/internal/ikev2"
)

// proves: G2 (issue 17: GSA_INBAND_REKEY of RFC 9838 §2.4.2 over the
// unicast IKE SA kept after registration, stepped over internal/ikev2:
// GCKS (initiator of the exchange) HDR, SK{GSA, KD, [N]} -->, GM <-- HDR,
// SK{}; the GM installs ks's keys unwrapped with the IKE SA's GSK_w; then
// a GM leaving with GSA_REGISTRATION HDR, SK{IDg, N(REGISTRATION_FAILED)}
// gets HDR, SK{})
func TestInbandRekeyAndLeave(t *testing.T) {
	srv := keyServer(t, nil)
	gcks := NewGCKS(srv, nil)
	m := NewMember(MemberConfig{Name: "G", ID: groupID})
	_, gmSA, ksSA, gmEP, ksEP := register(t, srv, gcks, m)
	now := t0.Add(50 * time.Minute)
	if _, err := srv.Rekey("G", now); err != nil {
		t.Fatal(err)
	}
	g, err := FromKS(srv, "G", now)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := g.Inband(kwkOf(t, ksSA), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ksEP.Request(ksSA, wire.ExchangeGSAInbandRekey, ps, now)
	if err != nil {
		t.Fatal(err)
	}
	var got *Update
	var answered bool
	for len(out.Send) > 0 {
		var next ikev2.Output
		for _, p := range out.Send {
			if p.To == gmAddr {
				o := gmEP.Handle(ksAddr, p.Data, now)
				next.Send = append(next.Send, o.Send...)
				if req, ok := findEvent[ikev2.Request](o.Events, gmSA); ok {
					if req.Exchange != wire.ExchangeGSAInbandRekey {
						t.Fatalf("GM got %s", req.Exchange)
					}
					if got, err = m.Inband(req.Payloads, kwkOf(t, gmSA), now); err != nil {
						t.Fatal(err)
					}
					o2, err := gmEP.Respond(gmSA, nil, now)
					if err != nil {
						t.Fatal(err)
					}
					next.Send = append(next.Send, o2.Send...)
				}
			} else {
				o := ksEP.Handle(gmAddr, p.Data, now)
				next.Send = append(next.Send, o.Send...)
				if r, ok := findEvent[ikev2.Response](o.Events, ksSA); ok && r.Exchange == wire.ExchangeGSAInbandRekey && len(r.Payloads) == 0 {
					answered = true
				}
			}
		}
		out = next
	}
	if got == nil || !answered {
		t.Fatalf("inband rekey: update %v, answered %v", got, answered)
	}
	want := tekKeys(t, srv)
	for _, tk := range got.TEKs {
		if string(tk.EncKey) != string(want[tk.SPI]) {
			t.Fatalf("TEK %x keys differ from ks's", tk.SPI)
		}
	}
	// Leaving: GSA_REGISTRATION with IDg and REGISTRATION_FAILED.
	leave := m.Leave()
	r, err := ParseRequest(leave)
	if err != nil || r.Leave != wire.NotifyRegistrationFailed {
		t.Fatalf("leave request %+v %v", r, err)
	}
	resp, err := gcks.Register(ksPeer(), r, kwkOf(t, ksSA), now)
	if err != nil || len(resp) != 0 {
		t.Fatalf("leave answered %v %v (want HDR, SK{})", resp, err)
	}
	if _, ok := m.RekeySPI(); ok {
		t.Fatal("a GM that left keeps its Rekey SA")
	}
}
