package ike

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/version"
	"github.com/groupvpn/groupvpn/isakmp"
)

var (
	addrI = netip.MustParseAddrPort("127.0.0.1:500")
	addrR = netip.MustParseAddrPort("127.0.0.2:500")
	t0    = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
)

func pskFor(key string) func(netip.Addr) ([]byte, bool) {
	return func(netip.Addr) ([]byte, bool) { return []byte(key), true }
}

// pairNet shuttles datagrams between two endpoints in memory, optionally
// dropping some, and collects events.
type pairNet struct {
	t      *testing.T
	i, r   *Endpoint
	now    time.Time
	events map[*Endpoint][]SAEvent
	drop   func(from netip.AddrPort, n int, data []byte) bool // n counts datagrams
	sent   int
}

func newPair(t *testing.T, cfgI, cfgR *Config) *pairNet {
	t.Helper()
	ei, err := NewEndpoint(cfgI, addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	er, err := NewEndpoint(cfgR, addrR, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return &pairNet{t: t, i: ei, r: er, now: t0, events: map[*Endpoint][]SAEvent{}}
}

// run delivers out (sent by `from`) and everything it causes, advancing the
// fake clock through retransmission timers, until nothing is left.
func (p *pairNet) run(from *Endpoint, out Output) {
	type hop struct {
		from *Endpoint
		out  Output
	}
	queue := []hop{{from, out}}
	for rounds := 0; rounds < 200; rounds++ {
		for len(queue) > 0 {
			h := queue[0]
			queue = queue[1:]
			p.events[h.from] = append(p.events[h.from], h.out.Events...)
			to, src := p.r, p.i.sh.local
			if h.from == p.r {
				to, src = p.i, p.r.sh.local
			}
			for _, pk := range h.out.Send {
				p.sent++
				if p.drop != nil && p.drop(src, p.sent, pk.Data) {
					continue
				}
				queue = append(queue, hop{to, to.Handle(src, pk.Data, p.now)})
			}
		}
		// Advance to the next retransmission timer still pending before
		// either SA is established for long.
		next := earliest(p.i.NextTimer(), p.r.NextTimer())
		if next.IsZero() || next.Sub(p.now) > 10*time.Minute {
			return
		}
		p.now = next
		queue = append(queue, hop{p.i, p.i.Tick(p.now)}, hop{p.r, p.r.Tick(p.now)})
	}
	p.t.Fatal("exchange did not settle")
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case a.Before(b):
		return a
	}
	return b
}

func (p *pairNet) established(e *Endpoint) *Info {
	for _, ev := range p.events[e] {
		if est, ok := ev.Event.(Established); ok {
			return &est.Info
		}
	}
	return nil
}

func (p *pairNet) failure(e *Endpoint) error {
	for _, ev := range p.events[e] {
		if f, ok := ev.Event.(Failed); ok {
			return f.Err
		}
	}
	return nil
}

// notAuthenticated is the reason e reported for a message 5 that did not
// authenticate its peer, or nil.
func (p *pairNet) notAuthenticated(e *Endpoint) error {
	for _, ev := range p.events[e] {
		if f, ok := ev.Event.(PeerNotAuthenticated); ok {
			return f.Err
		}
	}
	return nil
}

func handshake(t *testing.T, cfgI, cfgR *Config) *pairNet {
	t.Helper()
	p := newPair(t, cfgI, cfgR)
	_, out, err := p.i.Initiate(addrR, p.now)
	if err != nil {
		t.Fatal(err)
	}
	p.run(p.i, out)
	return p
}

func authCreds(t *testing.T, a AuthMethod) Credentials {
	switch a {
	case AuthPSK:
		return Credentials{PSK: pskFor("correct horse battery staple")}
	case AuthRSA:
		return pki(t).creds("rsa")
	default:
		return pki(t).creds(a.String())
	}
}

// proves: groundwork (IKEv1 main mode) — initiator and responder complete
// main mode for every AES key length, hash, DH group and authentication
// method, agree on keys, and see each other's identity and version (V2).
func TestMainModeEverySuite(t *testing.T) {
	var suites []Suite
	for _, g := range []uint16{14, 15, 16, 19, 20, 21} {
		for i, h := range []HashAlg{SHA1, SHA256, SHA384, SHA512} {
			suites = append(suites, Suite{KeyBits: []int{128, 256, 192, 256}[i], Hash: h, Group: g, Auth: AuthPSK})
		}
	}
	for _, a := range []AuthMethod{AuthPSK, AuthRSA, AuthECDSA256, AuthECDSA384, AuthECDSA521} {
		for _, k := range []int{128, 192, 256} {
			suites = append(suites, Suite{KeyBits: k, Hash: SHA256, Group: 19, Auth: a, Lifetime: 8 * time.Hour})
		}
	}
	for _, s := range suites {
		t.Run(s.String(), func(t *testing.T) {
			creds := authCreds(t, s.Auth)
			cfgI := &Config{Suites: []Suite{s}, Creds: creds, Version: version.Base}
			if s.Group == 19 {
				cfgI.DOI = isakmp.DOIGDOI // RFC 6407 §2.1: GDOI registration's phase 1
			}
			cfgR := &Config{Suites: []Suite{s}, Creds: creds}
			p := handshake(t, cfgI, cfgR)
			ii, ir := p.established(p.i), p.established(p.r)
			if ii == nil || ir == nil {
				t.Fatalf("not established: initiator %v, responder %v", p.failure(p.i), p.failure(p.r))
			}
			si := p.i.Lookup(ii.ICookie, ii.RCookie)
			sr := p.r.Lookup(ir.ICookie, ir.RCookie)
			if !bytes.Equal(si.Keys().SKEYIDd, sr.Keys().SKEYIDd) || !bytes.Equal(si.Keys().Ka, sr.Keys().Ka) || len(si.Keys().Ka) != s.KeyBits/8 {
				t.Fatal("the two sides derived different keys")
			}
			if ir.PeerVersion != version.Base || ii.PeerVersion != version.Current {
				t.Fatalf("versions: responder saw %v, initiator saw %v", ir.PeerVersion, ii.PeerVersion)
			}
			if !ii.PeerDPD || !ir.PeerDPD {
				t.Fatal("DPD vendor ID not seen")
			}
			if s.Auth.signature() && (ir.PeerCert == nil || ir.PeerID.IDType != isakmp.IDDERASN1DN) {
				t.Fatalf("responder did not record the initiator's certificate identity: %v", ir.PeerID)
			}
			if s.Auth == AuthPSK && ir.PeerID.String() != "ID_IPV4_ADDR 127.0.0.1/32" {
				t.Fatalf("PSK peer identity %v", ir.PeerID)
			}
			if want := s.lifetime(); ii.Expires.Sub(ii.EstablishedAt) != want {
				t.Fatalf("lifetime %v, want %v", ii.Expires.Sub(ii.EstablishedAt), want)
			}
		})
	}
}

type logBuf struct{ bytes.Buffer }

func logger(b *logBuf) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// proves: groundwork (bad input) — a wrong PSK fails on both sides with a
// log line that names the peer and the reason.
func TestWrongPSKNamesPeerAndReason(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 14, Auth: AuthPSK}
	var logR logBuf
	cfgI := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("right")}}
	cfgR := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("wrong")}, Logger: logger(&logR)}
	p := handshake(t, cfgI, cfgR)
	if p.established(p.r) != nil || p.established(p.i) != nil {
		t.Fatal("established with mismatched keys")
	}
	// The responder reports why message 5 did not authenticate its peer,
	// and its SA, which waited for one that would, fails once message 4's
	// transmissions are over.
	err := p.notAuthenticated(p.r)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("responder's refusal %v, want ErrAuth", err)
	}
	if !errors.Is(p.failure(p.r), ErrTimeout) {
		t.Fatalf("responder failure %v, want ErrTimeout", p.failure(p.r))
	}
	line := logR.String()
	if !strings.Contains(line, "127.0.0.1") || !strings.Contains(line, "pre-shared key mismatch") {
		t.Fatalf("log does not name the peer and reason:\n%s", line)
	}
	if p.failure(p.i) == nil {
		t.Fatal("initiator did not give up")
	}
}

// proves: groundwork (bad input) — an untrusted certificate is refused with
// the subject and reason in the error.
func TestUntrustedCertificate(t *testing.T) {
	s := Suite{KeyBits: 256, Hash: SHA256, Group: 19, Auth: AuthECDSA256}
	other := newTestPKI(t, "some other CA")
	credsI := pki(t).creds("ecdsa-256")
	credsR := other.creds("ecdsa-256") // trusts only the other CA
	p := handshake(t, &Config{Suites: []Suite{s}, Creds: credsI}, &Config{Suites: []Suite{s}, Creds: credsR})
	err := p.notAuthenticated(p.r)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "untrusted certificate") || !strings.Contains(err.Error(), "gm-ecdsa-256.example") {
		t.Fatalf("responder failure: %v", err)
	}
	if p.established(p.i) != nil {
		t.Fatal("initiator established")
	}
}

// proves: groundwork — NO-PROPOSAL-CHOSEN reaches the initiator; the
// responder logs what was offered, keeps no SA and reports no event (no
// one knew of it: issue 11 item 2).
func TestNoProposalChosen(t *testing.T) {
	var logR logBuf
	p := handshake(t,
		&Config{Suites: []Suite{{KeyBits: 128, Hash: SHA1, Group: 14, Auth: AuthPSK}}, Creds: Credentials{PSK: pskFor("k")}},
		&Config{Suites: []Suite{{KeyBits: 256, Hash: SHA512, Group: 21, Auth: AuthPSK}}, Creds: Credentials{PSK: pskFor("k")}, Logger: logger(&logR)})
	if err := p.failure(p.i); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "NO-PROPOSAL-CHOSEN") {
		t.Fatalf("initiator failure: %v", err)
	}
	if !strings.Contains(logR.String(), "aes128-sha1-modp2048") {
		t.Fatalf("responder log should list what was offered: %s", logR.String())
	}
	if len(p.events[p.r]) != 0 || len(p.r.sas) != 0 || p.r.Stats.MM1Rejected != 1 || p.r.Stats.RefusalSent != 1 {
		t.Fatalf("responder: events %v, %d SAs, stats %+v", p.events[p.r], len(p.r.sas), p.r.Stats)
	}
}

// proves: groundwork (retransmission) — every lost message is recovered by
// retransmission, whichever it is.
func TestRetransmitRecoversEachLoss(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	for lost := 1; lost <= 6; lost++ {
		t.Run(fmt.Sprintf("message %d lost", lost), func(t *testing.T) {
			p := newPair(t, &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}},
				&Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}})
			p.drop = func(_ netip.AddrPort, n int, _ []byte) bool { return n == lost }
			_, out, _ := p.i.Initiate(addrR, p.now)
			p.run(p.i, out)
			if p.established(p.i) == nil || p.established(p.r) == nil {
				t.Fatalf("not established after losing message %d: %v / %v", lost, p.failure(p.i), p.failure(p.r))
			}
			if p.now.Sub(t0) < DefaultRetransmit.Initial {
				t.Fatal("no retransmission timer was used")
			}
		})
	}
}

// proves: groundwork (retransmission limit) — a silent peer is given up on
// after the configured tries, with backoff.
func TestRetransmitLimit(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	rt := Retransmit{Initial: time.Second, Max: 4 * time.Second, Tries: 4}
	p := newPair(t, &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}, Retransmit: rt},
		&Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}})
	var sends []time.Time
	p.drop = func(from netip.AddrPort, _ int, _ []byte) bool {
		if from == addrI {
			sends = append(sends, p.now)
		}
		return true
	}
	_, out, _ := p.i.Initiate(addrR, p.now)
	p.run(p.i, out)
	if err := p.failure(p.i); !errors.Is(err, ErrTimeout) {
		t.Fatalf("failure %v, want ErrTimeout", err)
	}
	var gaps []time.Duration
	for i := 1; i < len(sends); i++ {
		gaps = append(gaps, sends[i].Sub(sends[i-1]))
	}
	if fmt.Sprint(gaps) != "[1s 2s 4s]" {
		t.Fatalf("transmission gaps %v, want [1s 2s 4s]", gaps)
	}
}

// proves: groundwork (DoS) — a flood of message 1 from spoofed sources
// keeps the responder's table bounded, costs no DH, and a real peer still
// completes main mode during the flood.
func TestHalfOpenFlood(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	cfg := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}}
	resp, err := NewEndpoint(cfg, addrR, Limits{MaxHalfOpen: 100, MaxHalfOpenPerPeer: 4})
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := NewEndpoint(cfg, addrI, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, first, _ := attacker.Initiate(addrR, t0)
	mm1 := first.Send[0].Data
	flood := func(n int) {
		for i := 0; i < n; i++ {
			spoof := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 500)
			pkt := append([]byte{}, mm1...)
			pkt[0], pkt[1], pkt[2] = byte(i), byte(i>>8), byte(i>>16) // fresh initiator cookie
			resp.Handle(spoof, pkt, t0)
		}
	}
	flood(5000)
	if n := len(resp.sas); n > 100 {
		t.Fatalf("%d SAs held after the flood, limit 100", n)
	}
	if resp.Stats.HalfOpenEvicted < 4900 {
		t.Fatalf("evicted %d", resp.Stats.HalfOpenEvicted)
	}
	// A real initiator interleaved with continuing flood traffic.
	gm, _ := NewEndpoint(cfg, netip.MustParseAddrPort("192.0.2.7:500"), Limits{})
	_, out, _ := gm.Initiate(addrR, t0)
	var established bool
	for step := 0; step < 10 && len(out.Send) > 0; step++ {
		var next Output
		for _, pk := range out.Send {
			r := resp.Handle(netip.MustParseAddrPort("192.0.2.7:500"), pk.Data, t0)
			flood(50)
			for _, back := range r.Send {
				o := gm.Handle(addrR, back.Data, t0)
				next.Send = append(next.Send, o.Send...)
				for _, ev := range o.Events {
					if _, ok := ev.Event.(Established); ok {
						established = true
					}
				}
			}
		}
		out = next
	}
	if !established {
		t.Fatal("a real peer could not complete main mode during the flood")
	}
	// The per-peer limit keeps a single source that opens many to its
	// newest four, evicting its oldest (issue 11 item 5).
	for i := 0; i < 10; i++ {
		pkt := append([]byte{}, mm1...)
		pkt[0] = byte(200 + i)
		resp.Handle(netip.MustParseAddrPort("198.51.100.1:500"), pkt, t0)
	}
	if resp.Stats.HalfOpenPeerEvicted != 6 || resp.perPeer[netip.MustParseAddr("198.51.100.1")].Len() != 4 {
		t.Fatalf("per-peer evictions %d, want 6", resp.Stats.HalfOpenPeerEvicted)
	}
}

// proves: groundwork (bad input) — malformed, stale and duplicate datagrams
// are dropped and counted and never crash; duplicates are answered.
func TestDropsAndDuplicates(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	cfg := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}}
	p := newPair(t, cfg, cfg)
	// Main mode at one instant, within message 6's retransmission window.
	var fromI [][]byte
	_, out, _ := p.i.Initiate(addrR, p.now)
	for len(out.Send) == 1 {
		fromI = append(fromI, out.Send[0].Data)
		o := p.r.Handle(addrI, out.Send[0].Data, p.now)
		if len(o.Send) != 1 {
			break
		}
		out = p.i.Handle(addrR, o.Send[0].Data, p.now)
	}
	if len(p.r.SAs()) != 1 || len(p.i.SAs()) != 1 || len(fromI) != 3 {
		t.Fatalf("not established (%d messages from the initiator)", len(fromI))
	}
	p.r.Handle(addrI, []byte("garbage"), p.now)
	unknown := append([]byte{}, fromI[1]...)
	unknown[9] ^= 0xff // responder cookie of no SA
	p.r.Handle(addrI, unknown, p.now)
	if p.r.Stats.Malformed != 1 || p.r.Stats.UnknownSA != 1 {
		t.Fatalf("stats %+v", p.r.Stats)
	}
	// Message 5 again: the responder re-sends message 6 unchanged and
	// reports nothing new.
	sa := p.r.SAs()[0]
	mm6 := sa.hs.sent
	dup := p.r.Handle(addrI, fromI[2], p.now)
	if len(dup.Send) != 1 || !bytes.Equal(dup.Send[0].Data, mm6) || len(dup.Events) != 0 {
		t.Fatalf("duplicate message 5 answered with %d datagrams, %d events", len(dup.Send), len(dup.Events))
	}
	// A stale message 3 is dropped and counted, and the SA stays.
	p.r.Handle(addrI, fromI[1], p.now)
	if p.r.Stats.Dropped != 1 || sa.State() != StateEstablished {
		t.Fatalf("stale message 3: stats %+v, state %s", p.r.Stats, sa.State())
	}
	// Every truncation of message 5 is dropped without harm.
	for n := 0; n < len(fromI[2]); n++ {
		p.r.Handle(addrI, fromI[2][:n], p.now)
	}
	if sa.State() != StateEstablished {
		t.Fatal("truncated datagrams disturbed the SA")
	}
}

// proves: groundwork — phase-2 messages use per-message-ID IV chains both
// ways (GROUPKEY-PULL needs them), Informational Delete ends the peer's SA,
// and DPD is answered.
func TestPhase2InformationalAndDPD(t *testing.T) {
	s := Suite{KeyBits: 256, Hash: SHA384, Group: 20, Auth: AuthPSK}
	cfg := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}}
	p := handshake(t, cfg, cfg)
	si, sr := p.i.SAs()[0], p.r.SAs()[0]
	for mid := uint32(7); mid < 10; mid++ {
		for round := 0; round < 2; round++ {
			msg, err := si.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.Hash{Data: []byte{byte(mid)}}, &isakmp.Nonce{Data: bytes.Repeat([]byte{1}, 16)}})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := isakmp.ParseMessage(msg)
			ps, err := sr.DecryptPhase2(m)
			if err != nil || len(ps) != 2 || ps[0].(*isakmp.Hash).Data[0] != byte(mid) {
				t.Fatalf("mid %d round %d: %v %v", mid, round, ps, err)
			}
			back, _ := sr.EncryptPhase2(isakmp.ExchangePull, mid, []isakmp.Payload{&isakmp.SEQ{Number: mid}})
			m, _ = isakmp.ParseMessage(back)
			if ps, err := si.DecryptPhase2(m); err != nil || ps[0].(*isakmp.SEQ).Number != mid {
				t.Fatalf("reply mid %d: %v", mid, err)
			}
		}
	}
	r, err := si.DPD(p.now)
	if err != nil {
		t.Fatal(err)
	}
	ack := p.r.Handle(addrI, r.Send[0], p.now)
	if len(ack.Send) != 1 {
		t.Fatalf("R-U-THERE not acknowledged: %+v", ack)
	}
	if o := p.i.Handle(addrR, ack.Send[0].Data, p.now); len(o.Events) != 0 || p.i.Stats.Dropped != 0 {
		t.Fatalf("R-U-THERE-ACK not consumed: %+v %+v", o, p.i.Stats)
	}
	del, err := p.i.Delete(si, p.now)
	if err != nil {
		t.Fatal(err)
	}
	o := p.r.Handle(addrI, del.Send[0].Data, p.now)
	if len(o.Events) != 1 {
		t.Fatalf("delete: %+v", o)
	}
	if _, ok := o.Events[0].Event.(Deleted); !ok || len(p.r.SAs()) != 0 {
		t.Fatalf("responder kept the SA: %+v", o.Events)
	}
}

// proves: groundwork — INITIAL-CONTACT from a rebooted peer replaces its
// old SA on the responder, and an SA that reaches its lifetime expires.
func TestInitialContactAndExpiry(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK, Lifetime: time.Hour}
	cfg := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}}
	p := handshake(t, cfg, cfg)
	old := p.r.SAs()
	if len(old) != 1 {
		t.Fatalf("%d SAs", len(old))
	}
	// The "rebooted" initiator: a fresh endpoint at the same address.
	fresh, _ := NewEndpoint(cfg, addrI, Limits{})
	p.i = fresh
	_, out, _ := fresh.Initiate(addrR, p.now)
	p.run(fresh, out)
	now := p.r.SAs()
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("responder holds %d SAs after INITIAL-CONTACT (old one kept: %v)", len(now), len(now) > 0 && now[0] == old[0])
	}
	o := p.r.Tick(p.now.Add(time.Hour))
	if len(o.Events) != 1 {
		t.Fatalf("expiry events: %+v", o.Events)
	}
	if _, ok := o.Events[0].Event.(Expired); !ok || len(p.r.SAs()) != 0 {
		t.Fatalf("SA did not expire: %+v", o.Events[0].Event)
	}
}

// proves: groundwork (bad input) — an unknown payload type in main mode is
// refused with INVALID-PAYLOAD-TYPE.
func TestInvalidPayloadType(t *testing.T) {
	s := Suite{KeyBits: 128, Hash: SHA256, Group: 19, Auth: AuthPSK}
	cfg := &Config{Suites: []Suite{s}, Creds: Credentials{PSK: pskFor("k")}}
	ei, _ := NewEndpoint(cfg, addrI, Limits{})
	er, _ := NewEndpoint(cfg, addrR, Limits{})
	_, out, _ := ei.Initiate(addrR, t0)
	m, _ := isakmp.ParseMessage(out.Send[0].Data)
	m.Payloads = append(m.Payloads, &isakmp.RawPayload{PayloadType: 99, Body: []byte{1}})
	bad, _ := m.Marshal()
	o := er.Handle(addrI, bad, t0)
	if len(o.Send) != 1 {
		t.Fatalf("no notification sent: %+v", o)
	}
	n, _ := isakmp.ParseMessage(o.Send[0].Data)
	if nt := n.Payloads[0].(*isakmp.Notify).NotifyType; nt != isakmp.NotifyInvalidPayloadType {
		t.Fatalf("sent %s", nt)
	}
	back := ei.Handle(addrR, o.Send[0].Data, t0)
	if len(back.Events) != 1 {
		t.Fatalf("initiator did not give up: %+v", back)
	}
	if f, ok := back.Events[0].Event.(Failed); !ok || !strings.Contains(f.Err.Error(), "INVALID-PAYLOAD-TYPE") {
		t.Fatalf("initiator event %+v", back.Events[0].Event)
	}
}
