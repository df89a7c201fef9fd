package gikev2

import (
	"bytes"
	"testing"
	"time"

	wire "github.com/groupvpn/groupvpn/ikev2"
)

// fuzzMember is a member registered to a group whose GCKS made seeds.
func fuzzMember(f *testing.F) (*Member, *Group, KWK, [][]byte) {
	srv := keyServer(f, nil)
	g, err := FromKS(srv, "G", t0)
	if err != nil {
		f.Fatal(err)
	}
	kwk := KWK{Alg: DefaultKWA, Key: bytes.Repeat([]byte{5}, 32)}
	ps, err := g.Response(Registration{Request: Request{Group: groupID, Sender: true}, KWK: kwk, SenderIDs: []uint32{3}}, t0)
	if err != nil {
		f.Fatal(err)
	}
	m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
	if _, err := m.Registered(ps, kwk, t0); err != nil {
		f.Fatal(err)
	}
	r, err := NewRekeyer(g, 0, nil)
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	p, err := r.Rekey(g, RekeyOptions{Deletes: []*wire.Delete{{Protocol: wire.ProtoESP, SPISize: 4, SPIs: [][]byte{{1, 2, 3, 4}}}}}, t0)
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, p.Data)
	if p, err = r.Remove(true); err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, p.Data)
	return m, g, kwk, seeds
}

// FuzzMemberRekey feeds GSA_REKEY datagrams to a registered member.
// proves: G2 (issue 17: a GSA_REKEY from the network never panics the GM;
// nothing that does not verify under the Rekey SA changes it, and every
// datagram is accepted or counted once)
func FuzzMemberRekey(f *testing.F) {
	m0, g, kwk, seeds := fuzzMember(f)
	for _, s := range seeds {
		f.Add(s)
	}
	spi, _ := m0.RekeySPI()
	reg, err := g.Response(Registration{Request: Request{Group: groupID, Sender: true}, KWK: kwk, SenderIDs: []uint32{3}}, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		// A fresh member each time: what one input changes does not
		// leak into the next.
		m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
		if _, err := m.Registered(reg, kwk, t0); err != nil {
			t.Fatal(err)
		}
		before := m.Stats
		u, err := m.Rekey(pkt, t0)
		after := m.Stats
		total := func(s Stats) uint64 {
			return s.Accepted + s.Malformed + s.UnknownSA + s.Integrity + s.Replayed + s.Resent + s.Signature + s.KeyWrap + s.Policy + s.Refused + s.WrongGroup
		}
		if total(after) != total(before)+1 {
			t.Fatalf("counted %d times", total(after)-total(before))
		}
		if err != nil {
			if u != nil {
				t.Fatal("an update with an error")
			}
			if s, ok := m.RekeySPI(); !ok || s != spi {
				t.Fatal("a refused datagram changed the Rekey SA")
			}
		}
	})
}

// FuzzRegistered feeds inner payload chains (as the SA layer would decrypt
// them) to a member's registration.
// proves: G2 (issue 17: a GSA_AUTH / GSA_REGISTRATION / GSA_INBAND_REKEY
// payload chain never panics the GM; a refused one installs nothing)
func FuzzRegistered(f *testing.F) {
	_, g, kwk, _ := fuzzMember(f)
	ps, _ := g.Response(Registration{Request: Request{Group: groupID}, KWK: kwk}, t0)
	raw, err := wire.AppendPayloads(nil, ps)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw, false)
	in, _ := g.Inband(kwk, nil, t0)
	raw, _ = wire.AppendPayloads(nil, in)
	f.Add(raw, true)
	f.Fuzz(func(t *testing.T, b []byte, inband bool) {
		ps, err := wire.ParseInner(wire.PayloadGSA, b)
		if err != nil {
			return
		}
		m := NewMember(MemberConfig{Name: "G", ID: groupID, Sender: true})
		var u *Update
		if inband {
			u, err = m.Inband(ps, kwk, t0)
		} else {
			u, err = m.Registered(ps, kwk, t0)
		}
		if err != nil {
			if _, ok := m.RekeySPI(); ok || u != nil {
				t.Fatal("a refused registration installed something")
			}
			return
		}
		for _, tk := range u.TEKs {
			if tk.Expires.Before(t0) || tk.Expires.After(t0.Add(1<<32*time.Second)) {
				t.Fatalf("TEK expiry %v", tk.Expires)
			}
		}
	})
}

// FuzzParseRequest feeds GM requests to the GCKS's parser.
// proves: G2 (issue 17: a registration request never panics the GCKS; an
// accepted one names a group and asks for at most MaxSenderIDs Sender-IDs)
func FuzzParseRequest(f *testing.F) {
	for _, r := range []Request{{Group: 7}, {Group: 1234, Sender: true, SenderIDs: 4, SAg: SupportedSAg()}, {Group: 1, Leave: wire.NotifyRegistrationFailed}} {
		b, _ := wire.AppendPayloads(nil, r.Payloads())
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := wire.ParseInner(wire.PayloadIDg, b)
		if err != nil {
			return
		}
		r, err := ParseRequest(ps)
		if err != nil {
			if len(Refusal(err)) != 1 {
				t.Fatal("refusal without a notification")
			}
			return
		}
		if r.SenderIDs > MaxSenderIDs {
			t.Fatalf("%d Sender-IDs", r.SenderIDs)
		}
		again, err := ParseRequest(r.Payloads())
		if err != nil || again.Group != r.Group || again.Sender != r.Sender {
			t.Fatalf("request does not round-trip: %+v %v", again, err)
		}
	})
}
